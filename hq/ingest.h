#pragma once
/// \file
/// The ingest loop of `storewatch hq`: takes every store's event batches and
/// status messages off the broker, stores them through an IngestStore, and
/// answers each commit that moves a store's contiguous seq with the store's
/// retained `ack`, published only after the commit. Batches that arrive
/// together are committed together (one transaction, one fsync). A gap that
/// persists gets the store a `resync` command. Everything runs on the thread
/// of the io_context the transport was created on.

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/clock.h"
#include "config/config.h"
#include "hq/ingest_store.h"
#include "sync/transport.h"
#include "sync/wire.h"

namespace storewatch::hq {

/// Counters since start, for logs and tests.
struct IngestStats {
  bool connected = false;
  bool subscribed = false;      ///< the subscriptions of this connection are in place
  std::int64_t batches = 0;     ///< event batches (messages) committed
  std::int64_t commits = 0;     ///< transactions that committed them
  std::int64_t inserted = 0;    ///< events stored for the first time
  std::int64_t duplicates = 0;  ///< events HQ already had
  std::int64_t dropped = 0;     ///< messages dropped: malformed, wrong store, or not stored
  std::int64_t acks_published = 0;
  std::int64_t resyncs_requested = 0;  ///< `resync` commands published
  /// Refused (docs/HQ.md, "Refused messages"): events more than
  /// max_seq_jump ahead, events reusing a stored seq with another uid,
  /// statuses whose session jumps more than max_session_jump, and messages
  /// of stores not enrolled.
  std::int64_t refused_seq_jump = 0;
  std::int64_t conflicts = 0;
  std::int64_t refused_session_jump = 0;
  std::int64_t refused_unenrolled = 0;
  std::string last_error;
  WallTime last_error_at{};         ///< when last_error was set (the epoch: never)
  std::int64_t failed_commits = 0;  ///< commits that failed: nothing of them was acked
  WallTime last_commit{};           ///< the last commit that succeeded (the epoch: none yet)
  /// Since when the database has been out of reach (the epoch: it is not).
  WallTime database_down_since{};
};

/// The `resync` command HQ sends a store with a persisting gap:
/// `{"v":1,"id":ID,"op":"resync","from_seq":N,"by":"hq:gap"}`.
std::string encode_resync(const std::string& id, std::int64_t from_seq);

/// What HQ publishes on `P/stores/S/cmd` for `command` (its JSON text):
/// signed (sync::sign_command, valid for sync::kCommandLifetime from `now`)
/// with the store's own key, `command_keys_dir/S.key`, when that file
/// exists, else with `command_key_file` when set; else the command as it is.
/// An Error when the key to use cannot be read or is not a key.
Result<std::string> command_payload(const config::HqConfig& config, const std::string& store,
                                    const std::string& command, WallTime now);

class Ingest final : public sync::TransportListener {
 public:
  /// Most batches committed in one transaction.
  static constexpr std::size_t kMaxGroup = 256;
  /// Most payload bytes committed in one transaction: a group of 256 full
  /// 64 KB batches would hold 16 MB of payloads and their decoded events,
  /// while fsyncs are already well shared at a few MB.
  static constexpr std::size_t kMaxGroupBytes = 2 * 1024 * 1024;
  /// Most messages the transport takes off the connection ahead of the
  /// ingest (sync::MqttOptions::max_unhandled): with at most a group
  /// pending besides, a worker holds a bounded amount however deep the
  /// broker's queue for it is.
  static constexpr std::size_t kMaxUnhandled = 32;

  /// `store`, `transport` and `clock` must outlive the Ingest; `executor` is
  /// the one of the transport's io_context (for the gap timer). Gives
  /// `store` the limits of `config` (max_seq_jump, max_session_jump).
  Ingest(const config::HqConfig& config, IngestStore& store, sync::Transport& transport,
         const Clock& clock, boost::asio::any_io_executor executor);
  ~Ingest() override;
  Ingest(const Ingest&) = delete;
  Ingest& operator=(const Ingest&) = delete;

  /// Connects; subscribes and re-publishes the acks on every (re)connect.
  void start();

  /// Commits what was received and not yet stored, then disconnects within
  /// `grace`. No message is handled after it returns.
  void stop(std::chrono::milliseconds grace);

  IngestStats stats() const;

  /// The subscription filters used on connect: events (shared when a share
  /// group is configured) and status (never shared: a shared subscription
  /// gets no retained messages, and the retained status is the only news of
  /// a store that went offline while HQ was down).
  std::vector<std::string> subscriptions() const;

  // sync::TransportListener
  void on_connected() override;
  void on_disconnected(const std::string& reason) override;
  void on_message(const sync::Message& message) override;

 private:
  void on_events(const sync::Message& message, const std::string& store);
  void on_status(const sync::Message& message, const std::string& store);
  /// Commits the pending batches, at most kMaxGroup per transaction.
  void flush(std::size_t max_groups);
  /// Publishes `acked_seq` as the store's ack unless a higher one was;
  /// past kAckWindow acks in flight it waits in ack_retry_.
  void publish_ack(const std::string& store, std::int64_t acked_seq);
  void send_ack(const std::string& store, std::int64_t acked_seq);
  void recheck_ack(const std::string& store, std::int64_t published);
  /// Publishes again up to `n` of the acks in ack_retry_, stopping at the
  /// first the transport refuses again.
  void retry_acks(std::size_t n);
  void arm_ack_timer();
  void republish_acks();
  void arm_gap_timer();
  void check_gaps();
  void drop(const std::string& topic, const std::string& why);
  /// A database call failed: when the database is out of reach, says so
  /// once and then every 30 s, counting `batches` not stored, and returns
  /// true; false for any other failure (the caller logs it).
  bool database_unreachable(const Error& e, WallTime now, std::int64_t batches);
  /// A database call succeeded: after an outage, says so once.
  void database_reached(WallTime now);
  /// Whether this is the first time `store` is refused for `kind` here
  /// (each is logged once at warn; later ones only counted). Bounded: past
  /// kMaxWarned stores it says so once and then returns false.
  bool first_refusal(const std::string& store, std::string_view kind);
  /// True when `store` is not enrolled: its `what` ("events", "status") is
  /// refused, counted, and logged at warn the first time.
  bool refused_unenrolled(const std::string& store, std::string_view what);
  /// How a store HQ takes in got there, for the log: "enroll = \"auto\"" or
  /// "listed in [hq] stores".
  std::string_view enrolled_as() const;
  std::string new_command_id();

  /// Stores and kinds of refusal remembered for first_refusal, at most.
  static constexpr std::size_t kMaxWarned = 10'000;

  const config::HqConfig config_;
  const wire::Topics topics_;
  const std::string share_group_;
  const Millis resync_after_;
  IngestStore& store_;
  sync::Transport& transport_;
  const Clock& clock_;
  boost::asio::steady_timer gap_timer_;
  bool gap_timer_armed_ = false;
  /// Publishes again the acks the transport refused, soon after (the
  /// retries of retry_acks), backing off while it keeps refusing.
  boost::asio::steady_timer ack_timer_;
  bool ack_timer_armed_ = false;
  /// Acks handed to the transport and not yet completed, at most kAckWindow.
  std::size_t acks_in_flight_ = 0;
  static constexpr std::size_t kAckWindow = 8;
  static constexpr Millis kAckRetryFirst{10};
  static constexpr Millis kAckRetryMax{500};
  Millis ack_retry_wait_ = kAckRetryFirst;
  /// Event messages waiting for the next commit, as they came: decoded
  /// only when their group is stored, so a backlog waits as its compact
  /// text, not as JSON trees several times its size.
  struct Pending {
    std::string topic;
    std::string store;
    std::string payload;
  };
  std::deque<Pending> pending_;
  std::size_t pending_bytes_ = 0;
  bool flush_posted_ = false;
  /// Per store, the highest ack this worker published on this connection:
  /// it never publishes a lower one after it.
  std::map<std::string, std::int64_t> published_;
  /// Stores whose newest ack waits: past the window of acks in flight, or
  /// refused by the transport. Each goes out as earlier acks complete, or
  /// by the ack timer.
  std::set<std::string> ack_retry_;
  /// (store, kind) already refused and logged once.
  std::set<std::pair<std::string, std::string>> warned_;
  bool warned_full_ = false;
  /// While the database is out of reach: batches not stored since the last
  /// log line about it, and when that was.
  std::int64_t down_batches_ = 0;
  std::int64_t down_batches_total_ = 0;
  WallTime down_logged_{};
  std::mt19937_64 rng_{std::random_device{}()};
  /// Shared with the transport's callbacks, which may run after the Ingest
  /// is gone (the failure of a publish made while disconnected is posted).
  struct Shared {
    IngestStats stats;
    bool stopping = false;
  };
  std::shared_ptr<Shared> shared_ = std::make_shared<Shared>();
};

}  // namespace storewatch::hq
