#pragma once
/// \file
/// The notifier (issue 8): sends the `notifications` outbox through each
/// [[notify]] channel with libcurl on the loop (probes/curl_multi.h), one
/// transfer per channel at a time, in queue order. A failed attempt is
/// retried after 5 s doubling to 10 min, or the receiver's Retry-After when
/// longer; every attempt is recorded in the outbox (attempts, next try, last
/// error), so a restart resumes where it left off. A notice still undelivered
/// after the channel's notify_ttl, or refused for good (HTTP 4xx other than
/// 408/429), is dropped and the incident gets an event saying so. Secrets
/// (URLs, keys, passwords) never reach logs, events or the outbox.
///
/// Single-threaded: everything runs on the io_context's thread.

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>

#include "config/config.h"
#include "sync/notify_outbox.h"
#include "sync/notify_payload.h"

namespace storewatch::sync {

/// Wall-clock milliseconds since the epoch.
std::int64_t wall_ms();

/// Sends one notice through one channel now and reports how it went; the
/// building block of the notifier and of `storewatch notify test`.
/// `done` runs once on the loop. Returns a cancel function.
std::function<void()> send_notice(boost::asio::io_context& io, const config::NotifyConfig& channel,
                                  const ChannelSecrets& secrets, const nlohmann::json& notice,
                                  std::function<void(Outcome)> done);

class Notifier {
 public:
  struct Stats {
    std::uint64_t sent = 0;
    std::uint64_t failed_attempts = 0;
    std::uint64_t dropped = 0;
    std::string last_error;  ///< "channel: error", no secret
  };

  /// Reads every channel's secrets now; a channel whose secrets cannot be
  /// read keeps its notices queued and retries (the file may appear).
  Notifier(boost::asio::io_context& io, const config::Config& config, NotifyOutbox& outbox);
  ~Notifier();
  Notifier(const Notifier&) = delete;
  Notifier& operator=(const Notifier&) = delete;

  void start();
  /// Something may have been queued (after a commit): look soon.
  void kick();
  /// Cancels transfers in flight (their notices stay queued and are sent
  /// again after a restart) and stops.
  void stop();

  const Stats& stats() const { return stats_; }

 private:
  struct Channel {
    const config::NotifyConfig* config = nullptr;
    std::optional<ChannelSecrets> secrets;
    std::string secret_error;
    bool busy = false;
    std::int64_t blocked_until_ms = 0;  ///< after a failure, until its retry
    std::deque<std::int64_t> sent_ms;   ///< within the last hour, for rate_limit
    std::function<void()> cancel;
  };

  void pass();
  void arm(std::int64_t wake_ms);
  void attempt(Channel& c, const Notice& n);
  void finished(Channel& c, const Notice& n, const Outcome& o);
  void drop(const Notice& n, const std::string& why);

  boost::asio::io_context& io_;
  const config::Config& config_;
  NotifyOutbox& outbox_;
  std::map<std::string, Channel> channels_;
  /// Sent or dropped, their update perhaps not committed yet: never twice.
  std::set<std::int64_t> done_;
  boost::asio::steady_timer timer_;
  std::int64_t timer_at_ms_ = 0;
  bool pass_posted_ = false;
  bool stopped_ = true;
  Stats stats_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace storewatch::sync
