#include "os/curl_multi.h"

#include <algorithm>

#include <boost/asio/execution/context.hpp>
#include <boost/asio/execution/outstanding_work.hpp>
#include <boost/asio/prefer.hpp>
#include <boost/asio/query.hpp>

#include <mutex>
#include <stdexcept>
#include <utility>

namespace storewatch::os {

bool set_request_options(CURL* e, const std::string& url, std::chrono::milliseconds timeout,
                         char* error_buffer, curl_write_callback write, void* data) {
  const long timeout_ms = std::max<long>(1, static_cast<long>(timeout.count()));
  bool ok = curl_easy_setopt(e, CURLOPT_URL, url.c_str()) == CURLE_OK;
  ok = ok && curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https") == CURLE_OK;
  ok = ok && curl_easy_setopt(e, CURLOPT_ERRORBUFFER, error_buffer) == CURLE_OK;
  ok = ok && curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L) == CURLE_OK;
  curl_easy_setopt(e, CURLOPT_QUICK_EXIT, 1L);  // older libcurl lacks it: not an error
  ok = ok && curl_easy_setopt(e, CURLOPT_FORBID_REUSE, 1L) == CURLE_OK;
  ok = ok && curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, timeout_ms) == CURLE_OK;
  ok = ok && curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms) == CURLE_OK;
  ok = ok && curl_easy_setopt(e, CURLOPT_USERAGENT, "storewatch") == CURLE_OK;
  ok = ok && curl_easy_setopt(e, CURLOPT_PROXY, "") == CURLE_OK;
  ok = ok && curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write) == CURLE_OK;
  ok = ok && curl_easy_setopt(e, CURLOPT_WRITEDATA, data) == CURLE_OK;
  return ok;
}

namespace asio = boost::asio;

boost::asio::execution_context::id CurlMulti::id;

/// A socket curl asked us to watch. curl owns the descriptor: the
/// stream_descriptor only registers it with the reactor and is released,
/// never closed.
struct CurlMulti::Socket {
  Socket(const asio::any_io_executor& ex, curl_socket_t fd) : descriptor(ex), fd(fd) {
    // A descriptor the reactor refuses is never ready; curl's own timeout
    // then ends the transfer.
    boost::system::error_code ignored;
    descriptor.assign(fd, ignored);
  }
  asio::posix::stream_descriptor descriptor;
  curl_socket_t fd;
  int what = CURL_POLL_NONE;  ///< what curl wants now
  bool reading = false;       ///< a read wait is pending
  bool writing = false;       ///< a write wait is pending
  bool removed = false;       ///< curl is done with it; late waits do nothing

  void release() {
    removed = true;
    // Cancels pending waits and deregisters the descriptor without closing it.
    if (descriptor.is_open()) descriptor.release();
  }
};

CurlMulti& CurlMulti::of(const asio::any_io_executor& executor) {
  auto& multi = asio::use_service<CurlMulti>(asio::query(executor, asio::execution::context));
  if (!multi.timer_ && !multi.shut_down_) {
    // The first user's executor serves all; untracked, so the long-lived
    // timer does not keep io_context::run() from returning by itself.
    multi.executor_ = asio::prefer(executor, asio::execution::outstanding_work.untracked);
    multi.timer_.emplace(multi.executor_);
  }
  return multi;
}

CurlMulti::CurlMulti(asio::execution_context& context) : asio::execution_context::service(context) {
  static std::once_flag global_init;
  std::call_once(global_init, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  multi_ = curl_multi_init();
  if (multi_ == nullptr) throw std::runtime_error("curl_multi_init failed");
  curl_multi_setopt(multi_, CURLMOPT_SOCKETFUNCTION, &CurlMulti::on_socket);
  curl_multi_setopt(multi_, CURLMOPT_SOCKETDATA, this);
  curl_multi_setopt(multi_, CURLMOPT_TIMERFUNCTION, &CurlMulti::on_timer);
  curl_multi_setopt(multi_, CURLMOPT_TIMERDATA, this);
}

CurlMulti::~CurlMulti() {
  shutdown();
}

void CurlMulti::shutdown() {
  if (shut_down_) return;
  shut_down_ = true;
  // The owners' completions (and what they hold) go without being called;
  // their easy handles leave the multi first.
  for (auto& [easy, done] : transfers_) curl_multi_remove_handle(multi_, easy);
  auto transfers = std::move(transfers_);
  transfers_.clear();
  transfers.clear();
  for (auto& [fd, socket] : sockets_) socket->release();
  sockets_.clear();
  timer_.reset();
  // on_socket/on_timer see shut_down_ and do nothing while curl closes its
  // cached connections.
  curl_multi_cleanup(multi_);
  multi_ = nullptr;
}

bool CurlMulti::add(CURL* easy, Completion done) {
  if (shut_down_ || easy == nullptr) return false;
  if (curl_multi_add_handle(multi_, easy) != CURLM_OK) return false;
  // curl asks for a timeout through on_timer, whose wait starts the transfer.
  transfers_[easy] = std::move(done);
  return true;
}

void CurlMulti::remove(CURL* easy) {
  auto it = transfers_.find(easy);
  if (it == transfers_.end()) return;
  curl_multi_remove_handle(multi_, easy);
  // Destroy the completion after the map no longer refers to it: it may
  // own the easy handle's state.
  Completion dropped = std::move(it->second);
  transfers_.erase(it);
}

int CurlMulti::on_socket(CURL*, curl_socket_t s, int what, void* self, void*) {
  auto* multi = static_cast<CurlMulti*>(self);
  if (!multi->shut_down_) multi->watch(s, what);
  return 0;
}

int CurlMulti::on_timer(CURLM*, long timeout_ms, void* self) {
  auto* multi = static_cast<CurlMulti*>(self);
  if (multi->shut_down_ || !multi->timer_) return 0;
  if (timeout_ms < 0) {
    multi->timer_->cancel();
    return 0;
  }
  // Never call back into curl from its own callback: even a zero timeout
  // goes through the loop.
  multi->timer_->expires_after(std::chrono::milliseconds(timeout_ms));
  multi->timer_->async_wait([multi](const boost::system::error_code& ec) {
    if (!ec) multi->action(CURL_SOCKET_TIMEOUT, 0);
  });
  return 0;
}

void CurlMulti::watch(curl_socket_t s, int what) {
  auto it = sockets_.find(s);
  if (what == CURL_POLL_REMOVE) {
    if (it != sockets_.end()) {
      it->second->release();
      sockets_.erase(it);
    }
    return;
  }
  if (it == sockets_.end()) {
    it = sockets_.emplace(s, std::make_shared<Socket>(executor_, s)).first;
  }
  it->second->what = what;
  arm(it->second);
}

void CurlMulti::arm(const std::shared_ptr<Socket>& socket) {
  using Wait = asio::posix::stream_descriptor::wait_type;
  if ((socket->what & CURL_POLL_IN) != 0 && !socket->reading) {
    socket->reading = true;
    socket->descriptor.async_wait(Wait::wait_read,
                                  [this, socket](const boost::system::error_code& ec) {
                                    socket->reading = false;
                                    if (ec || socket->removed) return;
                                    action(socket->fd, CURL_CSELECT_IN);
                                    if (!socket->removed) arm(socket);
                                  });
  }
  if ((socket->what & CURL_POLL_OUT) != 0 && !socket->writing) {
    socket->writing = true;
    socket->descriptor.async_wait(Wait::wait_write,
                                  [this, socket](const boost::system::error_code& ec) {
                                    socket->writing = false;
                                    if (ec || socket->removed) return;
                                    action(socket->fd, CURL_CSELECT_OUT);
                                    if (!socket->removed) arm(socket);
                                  });
  }
}

void CurlMulti::action(curl_socket_t s, int events) {
  if (shut_down_) return;
  int running = 0;
  curl_multi_socket_action(multi_, s, events, &running);
  finish_done_transfers();
}

void CurlMulti::finish_done_transfers() {
  int queued = 0;
  while (CURLMsg* msg = curl_multi_info_read(multi_, &queued)) {
    if (msg->msg != CURLMSG_DONE) continue;
    // msg dies with curl_multi_remove_handle: copy what we need first.
    CURL* easy = msg->easy_handle;
    const CURLcode result = msg->data.result;
    auto it = transfers_.find(easy);
    curl_multi_remove_handle(multi_, easy);
    if (it == transfers_.end()) continue;
    Completion done = std::move(it->second);
    transfers_.erase(it);
    // May add or remove other transfers; nothing here is inside a curl call.
    done(result);
    if (shut_down_) return;
  }
}

}  // namespace storewatch::os
