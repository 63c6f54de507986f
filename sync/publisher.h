#pragma once
/// \file
/// Drains the outbox to HQ: events above `hq_acked_seq` in seq order, in
/// batches (up to batch_max_events or 64 KB) with a window of batches
/// published but not yet PUBACKed. A PUBACKed batch stays in the outbox until
/// HQ's retained `ack` covers it; after a reconnect, or when HQ's ack is
/// overdue, everything above the ack is sent again (HQ drops duplicates).
/// Publishes the retained birth/last-will `status`.

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "base/clock.h"
#include "config/config.h"
#include "sync/outbox.h"
#include "sync/transport.h"

namespace storewatch::sync {

/// A snapshot of the publisher for `status` and `sync status`.
struct PublisherStats {
  bool connected = false;
  std::int64_t hq_acked_seq = 0;
  std::int64_t sent_seq = 0;  ///< highest seq published on this connection
  std::int64_t session = 0;
  std::string last_error;
  /// When the current connection came up (connected) or the last one went
  /// down / the publisher started (not connected).
  std::optional<WallTime> since;
  std::optional<WallTime> last_puback;  ///< the broker's last PUBACK of an event batch
  std::optional<WallTime> last_ack;     ///< HQ's last ack that raised hq_acked_seq
  std::optional<WallTime> last_error_at;
  /// Connection attempts that failed since the last successful connect.
  std::int64_t reconnect_attempts = 0;
  std::int64_t connects = 0;                 ///< successful connects since start
  int inflight_batches = 0;                  ///< published, not yet PUBACKed
  std::int64_t queued = 0;                   ///< events above hq_acked_seq
  std::optional<WallTime> oldest_queued_at;  ///< `at` of the oldest of them
};

/// "sha256:<hex>" of the bytes of `files` in order (each file's length is
/// hashed before its bytes); "sha256:unreadable" when one cannot be read.
std::string config_digest(const std::vector<std::filesystem::path>& files);

class Publisher final : public TransportListener {
 public:
  Publisher(boost::asio::io_context& io, const config::Config& config, Outbox& outbox,
            Transport& transport);

  /// Connects and starts draining.
  void start();

  /// New events were committed: send them if the window allows.
  void notify();

  /// Publishes the offline status, waits for its PUBACK (at most `grace`),
  /// disconnects, then calls `then`.
  void stop(std::chrono::milliseconds grace, std::function<void()> then);

  PublisherStats stats() const;

  /// A config reload changed the config's files: the status message carries
  /// the new hash from now on, and is published again at once when connected.
  void set_config_hash(std::string hash);

  /// Records a sync problem found outside the publisher (a TLS reload that
  /// was refused) as `last_error`.
  void note_error(std::string error);

  // --- HQ commands (sync/commands.h, agent/hq_commands.h) -------------------

  /// Where the payloads of `P/stores/S/cmd` go; set before start(). With a
  /// handler the publisher subscribes to that topic on every connect.
  void on_command(std::function<void(const std::string& payload)> handler);

  /// Publishes a command's answer on `P/stores/S/cmd/result`. Offline, or
  /// with kMaxAnswersInFlight answers not yet PUBACKed, it is dropped (HQ
  /// asks again; an applied command is answered from its kept answer).
  void answer_command(std::string payload);
  static constexpr int kMaxAnswersInFlight = 256;

  /// HQ asks for every stored event from `from_seq` again: whatever was sent
  /// at or above it is sent again (events pruned by retention are absent).
  void resync(std::int64_t from_seq);

  // TransportListener
  std::optional<Message> will_for_next_connect() override;
  void on_connected() override;
  void on_disconnected(const std::string& reason) override;
  void on_message(const Message& message) override;

 private:
  void drain();
  void on_ack(std::int64_t seq);
  void arm_ack_timer();
  void on_publish_failed(std::int64_t first, std::int64_t last, const std::string& why);
  std::string status_payload(bool online, const std::string& reason = "");
  void set_error(std::string error);

  const std::string store_;
  const config::SyncConfig sync_;
  const wire::Topics topics_;
  Outbox& outbox_;
  Transport& transport_;
  boost::asio::steady_timer ack_timer_;
  boost::asio::steady_timer stop_timer_;

  std::int64_t acked_ = 0;
  std::int64_t sent_ = 0;
  std::int64_t session_ = 0;
  int inflight_ = 0;
  bool stopping_ = false;
  bool ack_timer_armed_ = false;
  std::string last_error_;
  std::function<void(const std::string&)> command_handler_;
  int answers_in_flight_ = 0;

  std::string config_hash_;
  SystemClock clock_;
  bool connected_ = false;
  std::optional<WallTime> since_;
  std::optional<WallTime> last_puback_;
  std::optional<WallTime> last_ack_;
  std::optional<WallTime> last_error_at_;
  std::int64_t failed_attempts_ = 0;
  std::int64_t connects_ = 0;
  int overdue_rounds_ = 0;  ///< ack timeouts in a row without progress
};

}  // namespace storewatch::sync
