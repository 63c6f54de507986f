#pragma once
/// \file
/// One libcurl multi handle per io_context, driven by the loop: curl tells
/// us which sockets to watch (CURLMOPT_SOCKETFUNCTION) and when to wake it
/// (CURLMOPT_TIMERFUNCTION); Asio waits on those sockets without owning them
/// and on one steady_timer. No thread per transfer, no polling loop. Every
/// libcurl user on the loop (http probes, http remediations, notifications)
/// adds its easy handles here, so 1,000 probes share one multi handle and one
/// timer. It lives beside config/ as its own library (storewatch_curl), below
/// probes and sync alike, so that sync need not depend on probes (DESIGN §3).
///
/// Single-threaded: use it only from the thread that runs the io_context.

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/execution_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>

#include <curl/curl.h>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

namespace storewatch::os {

/// The options every storewatch request shares (http probes, http
/// remediations): the URL, http and https only, an error buffer, no signals,
/// no connection reuse, `timeout` for the connect and for the whole transfer,
/// our user agent, never a proxy from the environment (devices are reached
/// directly), and the body handed to `write`(`data`). A resolver thread still
/// running when a transfer is cancelled is left to finish on its own. false
/// when libcurl refuses one of them.
bool set_request_options(CURL* easy, const std::string& url, std::chrono::milliseconds timeout,
                         char* error_buffer, curl_write_callback write, void* data);

class CurlMulti final : public boost::asio::execution_context::service {
 public:
  /// Called once when a transfer ends, on the loop, with curl's result. The
  /// easy handle has already been removed from the multi handle; the caller
  /// still owns it (read its CURLINFO, then curl_easy_cleanup it).
  using Completion = std::function<void(CURLcode)>;

  static boost::asio::execution_context::id id;

  /// The multi handle of the io_context behind `executor` (created on first
  /// use, destroyed with the io_context).
  static CurlMulti& of(const boost::asio::any_io_executor& executor);

  explicit CurlMulti(boost::asio::execution_context& context);
  ~CurlMulti() override;
  CurlMulti(const CurlMulti&) = delete;
  CurlMulti& operator=(const CurlMulti&) = delete;

  /// Starts the transfer `easy` (configured, not in any multi handle).
  /// `done` runs once when it ends, unless remove() comes first. Returns
  /// false if curl refuses the handle; `done` is then never called.
  bool add(CURL* easy, Completion done);

  /// Stops the transfer and forgets its completion, which is not called. The
  /// caller still owns `easy`. A handle that is not in the multi is ignored.
  void remove(CURL* easy);

  /// Transfers added and not yet finished or removed.
  std::size_t active() const { return transfers_.size(); }

 private:
  struct Socket;

  void shutdown() override;

  static int on_socket(CURL* easy, curl_socket_t s, int what, void* self, void* socketp);
  static int on_timer(CURLM* multi, long timeout_ms, void* self);
  void watch(curl_socket_t s, int what);
  void arm(const std::shared_ptr<Socket>& socket);
  void action(curl_socket_t s, int events);
  void finish_done_transfers();

  boost::asio::any_io_executor executor_;
  CURLM* multi_ = nullptr;
  std::optional<boost::asio::steady_timer> timer_;
  std::map<curl_socket_t, std::shared_ptr<Socket>> sockets_;
  std::map<CURL*, Completion> transfers_;
  bool shut_down_ = false;
};

}  // namespace storewatch::os
