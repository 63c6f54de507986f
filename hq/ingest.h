#pragma once
/// \file
/// The ingest loop of `storewatch hq`: takes every store's event batches and
/// status messages off the broker, stores them in the HqStore, and answers
/// each batch that moves a store's contiguous seq with the store's retained
/// `ack`, published only after the commit. Everything runs on the thread of
/// the io_context the transport was created on.

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "config/clock.h"
#include "config/config.h"
#include "hq/hq_store.h"
#include "sync/transport.h"
#include "sync/wire.h"

namespace storewatch::hq {

/// Counters since start, for logs and tests.
struct IngestStats {
  bool connected = false;
  bool subscribed = false;      ///< the subscriptions of this connection are in place
  std::int64_t batches = 0;     ///< event batches committed
  std::int64_t inserted = 0;    ///< events stored for the first time
  std::int64_t duplicates = 0;  ///< events HQ already had
  std::int64_t dropped = 0;     ///< messages dropped: malformed, wrong store, or not stored
  std::int64_t acks_published = 0;
  std::string last_error;
};

class Ingest final : public sync::TransportListener {
 public:
  /// `store`, `transport` and `clock` must outlive the Ingest.
  Ingest(const config::HqConfig& config, HqStore& store, sync::Transport& transport,
         const Clock& clock);
  ~Ingest() override;
  Ingest(const Ingest&) = delete;
  Ingest& operator=(const Ingest&) = delete;

  /// Connects; subscribes and re-publishes the acks on every (re)connect.
  void start();

  /// Disconnects within `grace`. No message is handled after it returns.
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
  void publish_ack(const std::string& store, std::int64_t acked_seq);
  void republish_acks();
  void drop(const sync::Message& message, const std::string& why);

  const wire::Topics topics_;
  const std::string share_group_;
  HqStore& store_;
  sync::Transport& transport_;
  const Clock& clock_;
  /// Shared with the transport's callbacks, which may run after the Ingest
  /// is gone (the failure of a publish made while disconnected is posted).
  struct Shared {
    IngestStats stats;
    bool stopping = false;
  };
  std::shared_ptr<Shared> shared_ = std::make_shared<Shared>();
};

}  // namespace storewatch::hq
