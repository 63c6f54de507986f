#pragma once
/// \file
/// HQ's own SQLite database: every event of every store exactly once, each
/// incident's latest state, and per store the acknowledged seq and the last
/// status. Several `storewatch hq` workers may share one file (a shared MQTT
/// subscription splits a store's messages between them), so dedup and
/// contiguity are decided inside one write transaction, never from memory.

#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "base/clock.h"
#include "base/result.h"
#include "db/sqlite.h"
#include "hq/ingest_store.h"
#include "sync/wire.h"

namespace storewatch::hq {

/// One incident for `hq report`: its latest snapshot and whether a human
/// (actor `cli:` or `hq:`) acknowledged it.
struct ReportIncident {
  std::string store;
  nlohmann::json snapshot;
  bool human_ack = false;
  /// Of a reopened incident: its `resolved` and `reopened` events in seq
  /// order, each {"type","at","body"} (the body as stored), for the spans
  /// it was up in between.
  std::vector<nlohmann::json> reopen_events;
};

/// The SQLite backend of IngestStore, and the read side of `hq stores`,
/// `hq incidents` and `hq report`. Each worker opens its own connection.
class HqStore final : public IngestStore {
 public:
  /// Opens the database. read_write creates the file and its directory, sets
  /// WAL and `synchronous=FULL`, and migrates the schema. read_only (the
  /// `hq stores` / `hq incidents` views) neither creates nor migrates; a
  /// missing file, a corrupt one, or a schema this build does not match is an
  /// Error that says what to do.
  static Result<HqStore> open(const std::filesystem::path& path, db::Database::Mode mode);

  HqStore(HqStore&&) noexcept;
  HqStore& operator=(HqStore&&) noexcept;
  ~HqStore() override;

  /// Names the worker in every event it stores (`events.worker`), so an
  /// operator can see how a shared subscription split the load.
  void set_worker(std::string worker);

  // IngestStore
  using IngestStore::ingest;
  Result<std::vector<Ingested>> ingest(std::span<const wire::Batch> batches,
                                       WallTime received) override;
  Result<StatusRecorded> record_status(const wire::StoreStatus& status, WallTime received) override;
  void set_limits(const IngestLimits& limits) override;
  Result<std::vector<std::pair<std::string, std::int64_t>>> acked_seqs() override;
  Result<std::int64_t> acked_seq(const std::string& store) override;
  Result<std::vector<ResyncDue>> claim_resyncs(WallTime now, Millis after) override;

  /// `hq stores --json`: `[{"store","online","acked_seq","open_incidents",
  /// "last_seen","session","version","queued","gap_from","resyncs",
  /// "refused","refused_at"}]` sorted by store. `online` is false for a store
  /// never heard from on its status topic; `last_seen`, `session`, `version`
  /// and `queued` are null when unknown; `gap_from` is the first missing seq
  /// while seqs above `acked_seq` are stored (else null); `resyncs` counts
  /// the resync commands HQ sent the store; `refused` counts what HQ refused
  /// to believe of it: `{"seq_jump","conflict","session_jump"}`, and
  /// `refused_at` is the last such refusal (null when none).
  Result<nlohmann::json> stores_json();

  /// `hq incidents --json`: each incident's latest snapshot exactly as its
  /// event carried it in `incident_state`, with `"store"` added; resolved and
  /// closed ones too unless `open_only`. Sorted by `t_detect` (the time HQ
  /// first saw the incident when it has none), then uid.
  Result<nlohmann::json> incidents_json(const std::optional<std::string>& store, bool open_only);

  /// Every incident detected in [since, until] (by `t_detect`), for `hq report`.
  Result<std::vector<ReportIncident>> report_incidents(WallTime since, WallTime until);

  const std::filesystem::path& path() const;

 private:
  struct Impl;
  explicit HqStore(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace storewatch::hq
