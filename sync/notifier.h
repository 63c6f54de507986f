#pragma once
/// \file
/// The notifier (issue 8): sends the `notifications` outbox through each
/// [[notify]] channel with libcurl on the loop (os/curl_multi.h), one
/// transfer per channel at a time, in queue order. A failed attempt is
/// retried after 5 s doubling to 10 min, or the receiver's Retry-After when
/// longer; every attempt is recorded in the outbox (attempts, next try, last
/// error), so a restart resumes where it left off. A notice still undelivered
/// after the channel's notify_ttl, or refused for good (HTTP 4xx other than
/// 408/429), is dropped and the incident gets an event saying so. Secrets
/// (URLs, keys, passwords) never reach logs, events or the outbox.
///
/// Grouping: a channel with a group_wait (not webhooks) queues each notice
/// due group_wait after it happened. When the channel's oldest queued notice
/// is due, the notices queued behind it join it in one message (see
/// group_members) — so the first of a burst waits group_wait and the others
/// ride along. The group is formed from the outbox each time, never kept in
/// memory: after a restart the queued notices whose time has come form it.
/// A group is one message: one attempt, one rate_limit slot; on failure every
/// member is retried together (and notices queued meanwhile may join).
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
#include <string_view>
#include <vector>

#include "config/config.h"
#include "sync/notify_outbox.h"
#include "sync/notify_payload.h"

namespace storewatch::sync {

/// Wall-clock milliseconds since the epoch.
std::int64_t wall_ms();

/// Sends one notice (or a group of them, as one message) through one channel
/// now and reports how it went; the building block of the notifier and of
/// `storewatch notify test`. `done` runs once on the loop. Returns a cancel
/// function.
std::function<void()> send_notice(boost::asio::io_context& io, const config::NotifyConfig& channel,
                                  const ChannelSecrets& secrets,
                                  const std::vector<nlohmann::json>& notices,
                                  std::function<void(Outcome)> done);

/// At most this many notices in one message (Slack's 50 blocks; readable).
inline constexpr std::size_t kMaxGroup = 20;

/// Which notices group together: "problem" (opened, escalated,
/// flapping_started), "recovery" (resolved, flapping_stopped), else the kind
/// itself (acknowledged groups with acknowledgements).
std::string_view group_class(std::string_view kind);

/// The group led by `queued[0]` (a channel's oldest queued notice, due now):
/// indexes into `queued`, in queue order, the first being 0. A later notice
/// joins when it is of the head's group_class, was queued by `now_ms`, is
/// younger than `ttl_ms`, is not in `skip` (sent or dropped already), and no
/// earlier notice of its incident was left out — a notice never overtakes
/// one of its own incident. At most kMaxGroup members.
std::vector<std::size_t> group_members(const std::vector<Notice>& queued, std::int64_t now_ms,
                                       std::int64_t ttl_ms, const std::set<std::int64_t>& skip);

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
  void attempt(Channel& c, const Notice& head, std::int64_t now);
  void finished(Channel& c, const std::vector<Notice>& group, const Outcome& o);
  void drop(const Notice& n, const std::string& why);

  boost::asio::io_context& io_;
  NotifyOutbox& outbox_;
  std::map<std::string, Channel> channels_;
  /// Sent or dropped, their update perhaps not committed yet: never twice.
  /// id -> channel; forgotten once a read of the outbox shows it not queued
  /// (older than the channel's oldest queued notice, or absent from its queue).
  std::map<std::int64_t, std::string> done_;
  boost::asio::steady_timer timer_;
  std::int64_t timer_at_ms_ = 0;
  bool pass_posted_ = false;
  bool stopped_ = true;
  Stats stats_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace storewatch::sync
