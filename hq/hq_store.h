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
#include "hq/hq_database.h"
#include "sync/wire.h"

namespace storewatch::hq {

/// The SQLite backend of HqDatabase. Each worker opens its own connection.
class HqStore final : public HqDatabase {
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

  void set_worker(std::string worker) override;

  // IngestStore
  using IngestStore::ingest;
  Result<std::vector<Ingested>> ingest(std::span<const wire::Batch> batches,
                                       WallTime received) override;
  Result<StatusRecorded> record_status(const wire::StoreStatus& status, WallTime received) override;
  void set_limits(const IngestLimits& limits) override;
  Result<std::vector<std::pair<std::string, std::int64_t>>> acked_seqs() override;
  Result<std::int64_t> acked_seq(const std::string& store) override;
  Result<std::vector<ResyncDue>> claim_resyncs(WallTime now, Millis after) override;

  // HqDatabase
  Result<nlohmann::json> stores_json() override;
  Result<nlohmann::json> incidents_json(const std::optional<std::string>& store,
                                        bool open_only) override;
  Result<std::vector<ReportIncident>> report_incidents(WallTime since, WallTime until) override;
  Status record_worker(const WorkerHealth& worker) override;
  Result<std::vector<WorkerHealth>> workers() override;
  std::string name() const override { return path().string(); }
  Result<Pruned> prune(WallTime now, Millis retention) override;

  const std::filesystem::path& path() const;

 private:
  struct Impl;
  explicit HqStore(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace storewatch::hq
