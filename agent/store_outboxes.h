#pragma once
/// \file
/// sync/'s two views of the agent's database: the events the publisher
/// sends to HQ (sync/outbox.h) and the notices the notifier delivers
/// (sync/notify_outbox.h). Both read through the loop's connection and
/// write through the store writer, the database's one writer.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "agent/engine.h"
#include "agent/store.h"
#include "agent/store_writer.h"
#include "sync/notify_outbox.h"
#include "sync/outbox.h"

namespace storewatch::agent {

/// The publisher's outbox: events above HQ's ack, the session number.
class StoreOutbox final : public sync::Outbox {
 public:
  /// `session`: the last session number stored (the next connect takes one
  /// more).
  StoreOutbox(Store& reader, StoreWriter& writer, std::int64_t session)
      : reader_(reader), writer_(writer), session_(session) {}

  Result<std::vector<wire::Event>> events_after(std::int64_t after, int limit) override;
  std::int64_t max_seq() override;
  std::int64_t hq_acked_seq() override;
  void record_hq_acked_seq(std::int64_t seq) override;
  std::int64_t next_session() override;
  std::map<std::string, std::int64_t> open_by_severity() override;
  std::int64_t queued() override;

 private:
  Store& reader_;
  StoreWriter& writer_;
  std::int64_t session_;
};

/// The notifier's outbox; a notice it drops is a note on its incident.
class StoreNotifyOutbox final : public sync::NotifyOutbox {
 public:
  StoreNotifyOutbox(Store& reader, StoreWriter& writer, Engine& engine)
      : reader_(reader), writer_(writer), engine_(engine) {}

  Result<std::vector<sync::Notice>> due(std::int64_t now_ms, int limit) override;
  Result<std::vector<sync::Notice>> queued(const std::string& channel, int limit) override;
  Result<std::vector<std::int64_t>> sent_since(const std::string& channel,
                                               std::int64_t since_ms) override;
  Result<std::optional<std::int64_t>> next_due() override;
  void update(sync::NoticeUpdate u) override;
  void dropped(const sync::Notice& n, const std::string& why) override;

 private:
  Store& reader_;
  StoreWriter& writer_;
  Engine& engine_;
};

}  // namespace storewatch::agent
