#pragma once
/// \file
/// The daemon's control socket: a Unix stream socket speaking one JSON object
/// per line each way (`{"v":1,"op":"status"}` → `{"v":1,"ok":true,…}`).
/// Requests are size-capped and time-limited, so a client that sends garbage
/// or hangs cannot stall the daemon. A stale socket left by a crash is
/// replaced at start; a live one (another daemon) is an error.

#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/steady_timer.hpp>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "base/result.h"

namespace storewatch::agent {

inline constexpr int kControlVersion = 1;
inline constexpr std::size_t kMaxControlRequest = 64 * 1024;
/// Control connections open at once, in all and per user: one more is
/// answered "too many connections" and closed, so connections held open
/// cannot use up the daemon's file descriptors (probes need them).
inline constexpr std::size_t kMaxControlSessions = 64;
inline constexpr std::size_t kMaxControlSessionsPerUser = 16;

/// Who is on the other end, from SO_PEERCRED.
struct Peer {
  int pid = 0;
  unsigned uid = 0;
  std::string user;  ///< login name, or the uid as text
};

/// One request line as the control socket takes it: a JSON object of
/// protocol version kControlVersion with a string "op".
struct ControlRequest {
  nlohmann::json request;
  std::string op;
};

/// Parses one request line (without or with its '\n') the way the server
/// does before it picks a handler; an Error says why the server refuses it.
/// Pure (no socket, no handlers), so it can be fuzzed.
Result<ControlRequest> parse_control_request(std::string_view line);

class ControlServer {
 public:
  /// Answers one request; returns the response object ("ok" is added when
  /// missing). Runs on the loop.
  using Handler = std::function<nlohmann::json(const nlohmann::json& request, const Peer& peer)>;

  /// Binds the socket (mode 0660, group `storewatch` where it exists),
  /// removing a stale one.
  static Result<std::unique_ptr<ControlServer>> open(boost::asio::io_context& io,
                                                     const std::filesystem::path& path);
  ~ControlServer();

  void handle(const std::string& op, Handler handler);
  void start();
  /// Closes the socket, drops clients and removes the socket file.
  void stop();

 private:
  class Session;
  /// Open sessions, shared with them (a session may outlive the server).
  struct Sessions {
    std::size_t open = 0;
    std::map<unsigned, std::size_t> by_uid;
  };
  ControlServer(boost::asio::io_context& io, std::filesystem::path path);
  void accept();
  /// After an accept that failed for want of descriptors: try again later,
  /// not at once (a loop that spins on EMFILE takes a core).
  void accept_later();
  nlohmann::json dispatch(const std::string& line, const Peer& peer);

  std::filesystem::path path_;
  boost::asio::local::stream_protocol::acceptor acceptor_;
  std::map<std::string, Handler> handlers_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  std::shared_ptr<Sessions> sessions_ = std::make_shared<Sessions>();
  boost::asio::steady_timer retry_;
  std::chrono::milliseconds accept_backoff_{0};
  std::uint64_t refused_ = 0;
};

/// Why a daemon did or did not answer at its control socket: what `status`,
/// `sync status`, the changes and `doctor` tell the user. The names are the
/// `daemon.state` of `status --json`.
enum class DaemonState {
  running,            ///< it answered (its answer may still be a refusal)
  not_running,        ///< no socket, or nothing listens on it (ECONNREFUSED)
  not_answering,      ///< it took the connection but did not answer in time: hung
  permission_denied,  ///< the caller may not use the socket (EACCES, EPERM)
};
/// "running", "not_running", "not_answering", "permission_denied".
const char* to_string(DaemonState state);

/// One request to the daemon, and why it did or did not answer.
struct DaemonCall {
  DaemonState state = DaemonState::not_running;
  /// The daemon's pid when known: the socket's peer (SO_PEERCRED) once
  /// connected, so a hung daemon is named too; 0 when not known.
  int pid = 0;
  /// errno of the connect, 0 when it connected.
  int connect_errno = 0;
  /// Why it did not answer, for a human ("no daemon at …: No such file or
  /// directory"); empty when it answered.
  std::string error;
  /// Its answer when `state` is running.
  nlohmann::json response;
};

/// Sends one request to the daemon at `path` and waits at most `timeout`
/// for its answer; the connect itself never waits (a full backlog is a
/// daemon not answering).
DaemonCall call_daemon(const std::filesystem::path& path, const nlohmann::json& request,
                       std::chrono::milliseconds timeout);

/// Sends one request to a daemon and returns its response; an Error when no
/// daemon answers at `path` within `timeout`. When the connect itself fails,
/// `connect_errno` (if given) receives its errno: ENOENT or ECONNREFUSED mean
/// no daemon runs, EACCES that the caller may not use the socket.
Result<nlohmann::json> control_request(const std::filesystem::path& path,
                                       const nlohmann::json& request,
                                       std::chrono::milliseconds timeout = std::chrono::seconds(5),
                                       int* connect_errno = nullptr);

}  // namespace storewatch::agent
