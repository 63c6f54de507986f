#pragma once
/// \file
/// HQ's PostgreSQL backend: the same contract as the SQLite one
/// (hq/hq_store.h, hq/ingest_store.h) for a fleet that outgrows one machine —
/// ingest workers on several hosts, each with its own connection, sharing
/// one database.
///
/// How the contract holds across hosts: every commit takes a transaction
/// advisory lock per store it touches (in one order, so two workers never
/// deadlock), and inside it decides dedup by (store, seq) from what is
/// stored, walks `acked_seq` up, and updates the gap state. `events` is
/// partitioned by the month HQ received each event (retention drops whole
/// months); each month's partition has a unique index on (store, seq), and
/// the lock makes (store, seq) unique across months. A commit that fails
/// acknowledges nothing; a lost connection is re-opened on the next call,
/// with backoff.

#include <chrono>
#include <memory>
#include <string>

#include "hq/hq_database.h"

namespace storewatch::db::pg {
class Connection;
}

namespace storewatch::hq {

class PgHqStore final : public HqDatabase {
 public:
  /// Connects to `config.postgresql`. read_write migrates the schema (one
  /// worker at a time) and creates this month's and next month's
  /// partitions; read_only refuses a schema older or newer than this build.
  /// A database that holds tables but not storewatch's is refused.
  static Result<std::unique_ptr<PgHqStore>> open(const config::HqConfig& config, HqOpen mode,
                                                 const std::string& application_name);

  ~PgHqStore() override;
  PgHqStore(const PgHqStore&) = delete;
  PgHqStore& operator=(const PgHqStore&) = delete;

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
  std::string name() const override;
  Result<Pruned> prune(WallTime now, Millis retention) override;

  /// The schema version this build writes.
  static int schema_version();

 private:
  struct Impl;
  explicit PgHqStore(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

/// Creates the month partitions of `events` (events_YYYYMM, each with its
/// unique (store, seq) index) that hold received times from `from_ms` to
/// `to_ms`, those missing, in one transaction on `db` (`hq migrate`, which
/// copies events received in months long gone).
Status ensure_event_partitions(db::pg::Connection& db, std::int64_t from_ms, std::int64_t to_ms);

}  // namespace storewatch::hq
