#include "agent/control_server.h"

#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <boost/asio/read_until.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/write.hpp>

#include <fmt/format.h>

#include <cerrno>
#include <cstring>

#include "base/log.h"

namespace storewatch::agent {

namespace asio = boost::asio;
using local = asio::local::stream_protocol;
using nlohmann::json;

namespace {

constexpr auto kClientTimeout = std::chrono::seconds(10);
// Waits before accepting again when the process is out of descriptors.
constexpr std::chrono::milliseconds kFirstAcceptBackoff{50};
constexpr std::chrono::milliseconds kMaxAcceptBackoff{2000};

std::string user_name(unsigned uid) {
  passwd pw{};
  passwd* result = nullptr;
  char buf[1024];
  if (::getpwuid_r(uid, &pw, buf, sizeof buf, &result) == 0 && result != nullptr) {
    return pw.pw_name;
  }
  return std::to_string(uid);
}

// A socket file nobody accepts on was left by a crash.
bool socket_is_live(const std::filesystem::path& path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
  bool live = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return live;
}

}  // namespace

/// One client connection: read a line, answer it, repeat until the client
/// closes, sends too much, or idles past the timeout.
class ControlServer::Session : public std::enable_shared_from_this<Session> {
 public:
  Session(ControlServer& server, local::socket socket)
      : server_(server),
        alive_(server.alive_),
        sessions_(server.sessions_),
        socket_(std::move(socket)),
        timer_(socket_.get_executor()),
        buffer_(kMaxControlRequest + 1) {
    ucred cred{};
    socklen_t len = sizeof cred;
    if (::getsockopt(socket_.native_handle(), SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0) {
      peer_.pid = cred.pid;
      peer_.uid = cred.uid;
      peer_.user = user_name(cred.uid);
    }
  }
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;
  ~Session() {
    if (!counted_) return;
    --sessions_->open;
    if (auto it = sessions_->by_uid.find(peer_.uid); it != sessions_->by_uid.end()) {
      if (--it->second == 0) sessions_->by_uid.erase(it);
    }
  }

  /// Serves the client, or tells it there are too many connections and
  /// closes; false in that case.
  bool start() {
    auto mine = sessions_->by_uid.find(peer_.uid);
    const std::size_t theirs = mine == sessions_->by_uid.end() ? 0 : mine->second;
    if (sessions_->open >= kMaxControlSessions || theirs >= kMaxControlSessionsPerUser) {
      reply(json{{"v", kControlVersion},
                 {"ok", false},
                 {"error", fmt::format("too many control connections ({} open, {} of them {}'s; "
                                       "at most {}, {} per user): try again in a moment",
                                       sessions_->open, theirs, peer_.user, kMaxControlSessions,
                                       kMaxControlSessionsPerUser)}},
            /*then_close=*/true);
      return false;
    }
    ++sessions_->open;
    ++sessions_->by_uid[peer_.uid];
    counted_ = true;
    read();
    return true;
  }

 private:
  // A client gets kClientTimeout for each read and each write; one that
  // hangs is closed, it never holds the loop.
  void arm_deadline() {
    timer_.expires_after(kClientTimeout);
    timer_.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
      if (!ec) {
        boost::system::error_code ignored;
        self->socket_.close(ignored);
      }
    });
  }

  void read() {
    arm_deadline();
    asio::async_read_until(
        socket_, buffer_, '\n',
        [self = shared_from_this()](const boost::system::error_code& ec, std::size_t n) {
          self->timer_.cancel();
          if (!*self->alive_) return;
          if (ec == asio::error::not_found) {
            self->reply(json{{"v", kControlVersion},
                             {"ok", false},
                             {"error", fmt::format("request over {} bytes", kMaxControlRequest)}},
                        /*then_close=*/true);
            return;
          }
          if (ec) return;  // closed, timed out
          std::string line(
              asio::buffers_begin(self->buffer_.data()),
              asio::buffers_begin(self->buffer_.data()) + static_cast<std::ptrdiff_t>(n));
          self->buffer_.consume(n);
          json response = self->server_.dispatch(line, self->peer_);
          self->reply(std::move(response), false);
        });
  }

  void reply(json response, bool then_close) {
    out_ = response.dump() + "\n";
    arm_deadline();
    asio::async_write(
        socket_, asio::buffer(out_),
        [self = shared_from_this(), then_close](const boost::system::error_code& ec, std::size_t) {
          self->timer_.cancel();
          if (ec || then_close || !*self->alive_) return;
          self->read();
        });
  }

  ControlServer& server_;
  std::shared_ptr<bool> alive_;
  std::shared_ptr<Sessions> sessions_;
  bool counted_ = false;
  local::socket socket_;
  asio::steady_timer timer_;
  asio::streambuf buffer_;
  std::string out_;
  Peer peer_;
};

Result<std::unique_ptr<ControlServer>> ControlServer::open(asio::io_context& io,
                                                           const std::filesystem::path& path) {
  std::error_code ec;
  if (path.native().size() >= sizeof(sockaddr_un::sun_path)) {
    return Error{fmt::format("control socket path {} is too long (max {} bytes)", path.string(),
                             sizeof(sockaddr_un::sun_path) - 1)};
  }
  if (path.has_parent_path()) {
    std::filesystem::create_directories(path.parent_path(), ec);
    if (ec) {
      return Error{fmt::format("cannot create directory {} for the control socket: {}",
                               path.parent_path().string(), ec.message())};
    }
  }
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      return Error{
          fmt::format("{} exists and is not a socket; refusing to replace it", path.string())};
    }
    if (socket_is_live(path)) {
      return Error{fmt::format("another storewatch daemon answers on {}", path.string())};
    }
    if (::unlink(path.c_str()) != 0) {
      return Error{fmt::format("cannot remove stale control socket {}: {}", path.string(),
                               std::strerror(errno))};
    }
    log::info("control: removed stale socket {} left by an earlier run", path.string());
  }
  auto server = std::unique_ptr<ControlServer>(new ControlServer(io, path));
  boost::system::error_code bec;
  server->acceptor_.open(local(), bec);
  if (!bec) server->acceptor_.bind(local::endpoint(path.string()), bec);
  if (!bec) server->acceptor_.listen(asio::socket_base::max_listen_connections, bec);
  if (bec) {
    return Error{
        fmt::format("cannot listen on control socket {}: {}", path.string(), bec.message())};
  }
  gid_t gid = static_cast<gid_t>(-1);
  group gr{};
  group* result = nullptr;
  char buf[1024];
  if (::getgrnam_r("storewatch", &gr, buf, sizeof buf, &result) == 0 && result != nullptr) {
    gid = gr.gr_gid;
  }
  if (gid != static_cast<gid_t>(-1) && ::chown(path.c_str(), static_cast<uid_t>(-1), gid) != 0) {
    log::warn("control: cannot give {} to group storewatch: {}", path.string(),
              std::strerror(errno));
  }
  if (::chmod(path.c_str(), 0660) != 0) {
    log::warn("control: cannot chmod {}: {}", path.string(), std::strerror(errno));
  }
  return server;
}

ControlServer::ControlServer(asio::io_context& io, std::filesystem::path path)
    : path_(std::move(path)), acceptor_(io), retry_(io) {}

ControlServer::~ControlServer() {
  stop();
}

void ControlServer::handle(const std::string& op, Handler handler) {
  handlers_[op] = std::move(handler);
}

void ControlServer::start() {
  accept();
}

void ControlServer::stop() {
  if (!acceptor_.is_open()) return;
  *alive_ = false;
  retry_.cancel();
  boost::system::error_code ec;
  acceptor_.close(ec);
  ::unlink(path_.c_str());
}

void ControlServer::accept() {
  acceptor_.async_accept(
      [this, alive = alive_](const boost::system::error_code& ec, local::socket socket) {
        if (!*alive || ec == asio::error::operation_aborted) return;
        if (ec == asio::error::no_descriptors || ec.value() == ENFILE || ec.value() == ENOBUFS ||
            ec.value() == ENOMEM) {
          accept_later();
          return;
        }
        if (accept_backoff_.count() > 0) {
          log::info(
              "control: accepting connections again ({} refused while out of "
              "descriptors or over the limit)",
              refused_);
          accept_backoff_ = std::chrono::milliseconds(0);
        }
        if (!ec && !std::make_shared<Session>(*this, std::move(socket))->start()) {
          if (refused_++ % 100 == 0) {
            log::warn("control: too many connections ({} open); refusing more ({} so far)",
                      sessions_->open, refused_);
          }
        }
        accept();
      });
}

void ControlServer::accept_later() {
  if (accept_backoff_.count() == 0) {
    log::error(
        "control: out of file descriptors ({} control connections open); accepting again "
        "shortly",
        sessions_->open);
    accept_backoff_ = kFirstAcceptBackoff;
  } else {
    accept_backoff_ = std::min(accept_backoff_ * 2, kMaxAcceptBackoff);
  }
  retry_.expires_after(accept_backoff_);
  retry_.async_wait([this, alive = alive_](const boost::system::error_code& ec) {
    if (ec || !*alive) return;
    accept();
  });
}

Result<ControlRequest> parse_control_request(std::string_view line) {
  // nlohmann's parser takes a NUL byte for the end of the input: JSON text
  // never holds one, and what follows it would otherwise pass unread.
  if (line.find('\0') != std::string_view::npos) return Error{"request is not a JSON object"};
  json request = json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (request.is_discarded() || !request.is_object()) return Error{"request is not a JSON object"};
  auto v = request.find("v");
  // Compared as 64 bits: 2^32 + 1 must not pass as 1.
  if (v == request.end() || !v->is_number_integer() || v->get<std::int64_t>() != kControlVersion) {
    return Error{
        fmt::format("unsupported protocol version (this daemon speaks {})", kControlVersion)};
  }
  auto op = request.find("op");
  if (op == request.end() || !op->is_string()) return Error{"request has no string \"op\""};
  std::string name = op->get<std::string>();
  return ControlRequest{std::move(request), std::move(name)};
}

json ControlServer::dispatch(const std::string& line, const Peer& peer) {
  auto fail = [](std::string why) {
    return json{{"v", kControlVersion}, {"ok", false}, {"error", std::move(why)}};
  };
  auto parsed = parse_control_request(line);
  if (!parsed) return fail(parsed.error().message);
  auto it = handlers_.find(parsed->op);
  if (it == handlers_.end()) return fail("unknown op \"" + parsed->op + "\"");
  try {
    json response = it->second(parsed->request, peer);
    if (!response.contains("ok")) response["ok"] = true;
    response["v"] = kControlVersion;
    return response;
  } catch (const std::exception& e) {
    return fail(std::string("internal error: ") + e.what());
  }
}

const char* to_string(DaemonState state) {
  switch (state) {
    case DaemonState::running: return "running";
    case DaemonState::not_running: return "not_running";
    case DaemonState::not_answering: return "not_answering";
    case DaemonState::permission_denied: return "permission_denied";
  }
  return "not_running";
}

DaemonCall call_daemon(const std::filesystem::path& path, const json& request,
                       std::chrono::milliseconds timeout) {
  DaemonCall call;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) {
    call.error = std::strerror(errno);
    return call;
  }
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    const int e = errno;
    call.connect_errno = e;
    call.error = fmt::format("no daemon at {}: {}", path.string(), std::strerror(e));
    if (e == EACCES || e == EPERM) {
      call.state = DaemonState::permission_denied;
      call.error = fmt::format("may not connect to {}: {}", path.string(), std::strerror(e));
    } else if (e == EAGAIN) {
      // A Unix socket whose backlog is full: a daemon that stopped accepting.
      call.state = DaemonState::not_answering;
      call.error = fmt::format("the daemon at {} accepts no more connections", path.string());
    }
    return call;
  }
  // Who listens: a daemon that is hung still has its pid on the socket.
  ucred cred{};
  socklen_t len = sizeof cred;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0) call.pid = cred.pid;
  call.state = DaemonState::not_answering;
  auto left = [&] {
    return std::chrono::duration_cast<std::chrono::milliseconds>(deadline -
                                                                 std::chrono::steady_clock::now());
  };
  const auto no_answer = [&] {
    call.error =
        fmt::format("the daemon at {} did not answer within {} ms", path.string(), timeout.count());
    return call;
  };
  const std::string out = request.dump() + "\n";
  for (std::size_t sent = 0; sent < out.size();) {
    ssize_t n = ::send(fd, out.data() + sent, out.size() - sent, MSG_NOSIGNAL);
    if (n >= 0) {
      sent += static_cast<std::size_t>(n);
      continue;
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN) {
      call.error = fmt::format("sending to {}: {}", path.string(), std::strerror(errno));
      return call;
    }
    if (left().count() <= 0) return no_answer();
    pollfd p{fd, POLLOUT, 0};
    if (::poll(&p, 1, static_cast<int>(left().count())) < 0 && errno != EINTR) {
      call.error = std::strerror(errno);
      return call;
    }
  }
  std::string in;
  char buf[4096];
  while (in.find('\n') == std::string::npos) {
    if (left().count() <= 0) return no_answer();
    pollfd p{fd, POLLIN, 0};
    const int r = ::poll(&p, 1, static_cast<int>(left().count()));
    if (r < 0 && errno != EINTR) {
      call.error = std::strerror(errno);
      return call;
    }
    if (r <= 0) continue;
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    if (n <= 0) {
      call.error =
          fmt::format("the daemon at {} closed the connection without answering", path.string());
      return call;
    }
    in.append(buf, static_cast<std::size_t>(n));
    if (in.size() > 16 * 1024 * 1024) {
      call.error = "daemon answer too large";
      return call;
    }
  }
  json response = json::parse(in.substr(0, in.find('\n')), nullptr, false);
  if (response.is_discarded()) {
    call.error = "daemon answered with something that is not JSON";
    return call;
  }
  call.state = DaemonState::running;
  call.response = std::move(response);
  return call;
}

Result<json> control_request(const std::filesystem::path& path, const json& request,
                             std::chrono::milliseconds timeout, int* connect_errno) {
  DaemonCall call = call_daemon(path, request, timeout);
  if (connect_errno != nullptr) *connect_errno = call.connect_errno;
  if (call.state != DaemonState::running) return Error{call.error};
  return std::move(call.response);
}

}  // namespace storewatch::agent
