#pragma once
/// \file
/// What the notifier needs from the agent's store (the `notifications` table,
/// DESIGN §5); the agent implements it. Calls come from the io_context thread.
/// Times are wall-clock milliseconds since the Unix epoch: the outbox survives
/// restarts, so its due times must too.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "base/result.h"

namespace storewatch::sync {

/// A notice to queue, carried with the incident change that caused it and
/// written in the same transaction as its event.
struct NoticeRow {
  std::string channel;  ///< the [[notify]] name
  std::string kind;     ///< opened|escalated|acknowledged|flapping_started|…|resolved
  std::string body;     ///< JSON: {"store":…, "incident":{…}, "event":{…}}
  /// Queue it only if this channel has a notice of the incident's opening
  /// (a resolution nobody heard the start of is noise).
  bool only_if_opening_notified = false;
  /// The channel's group_wait: the notice is first due this long after it
  /// is queued (its next_try_ms), so a group can gather behind it.
  std::int64_t wait_ms = 0;
};

/// A queued notice as stored.
struct Notice {
  std::int64_t id = 0;
  std::string channel;
  std::string kind;
  std::string incident_uid;
  std::string event_uid;
  std::string body;
  int attempts = 0;
  std::int64_t created_ms = 0;
  std::int64_t next_try_ms = 0;
};

enum class NoticeState { queued, sent, dropped };

/// What a delivery attempt changed.
struct NoticeUpdate {
  std::int64_t id = 0;
  NoticeState state = NoticeState::queued;
  int attempts = 0;
  std::int64_t next_try_ms = 0;
  std::string last_error;  ///< never holds a secret (URL, password)
  std::int64_t at_ms = 0;
};

class NotifyOutbox {
 public:
  virtual ~NotifyOutbox() = default;
  /// The oldest queued notice of each channel, if due at `now_ms`; oldest
  /// first, at most `limit`. A channel's notices go out in queue order.
  virtual Result<std::vector<Notice>> due(std::int64_t now_ms, int limit) = 0;
  /// The queued notices of one channel in queue order (due or not), at most
  /// `limit`: what a group is formed from when the channel's oldest is due.
  virtual Result<std::vector<Notice>> queued(const std::string& channel, int limit) = 0;
  /// When the channel's messages sent after `since_ms` went out (one time per
  /// message: a group's notices share theirs), oldest first: the rate_limit
  /// window, carried across restarts.
  virtual Result<std::vector<std::int64_t>> sent_since(const std::string& channel,
                                                       std::int64_t since_ms) = 0;
  /// The earliest next_try_ms of the notices `due` would return, if any.
  virtual Result<std::optional<std::int64_t>> next_due() = 0;
  /// Records an attempt durably (the write may complete later).
  virtual void update(NoticeUpdate u) = 0;
  /// The notice expired undelivered: record an event on its incident saying so.
  virtual void dropped(const Notice& n, const std::string& why) = 0;
};

}  // namespace storewatch::sync
