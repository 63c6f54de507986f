#pragma once
/// \file
/// HQ's database, whichever engine holds it: the embedded SQLite file
/// (hq/hq_store.h; the demo, a chain of tens of stores, a lab) or PostgreSQL
/// (hq/pg_store.h; hundreds to thousands of stores, ingest workers on
/// several hosts). Both keep the IngestStore contract and give `hq stores`,
/// `hq incidents` and `hq report` the same answers in the same shapes.

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/clock.h"
#include "base/result.h"
#include "config/config.h"
#include "hq/ingest_store.h"

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

/// One ingest worker as it last recorded itself: `hq workers`, and the
/// health line of `hq stores`. Each `hq run` writes its own every few
/// seconds while it can reach the database; one that stopped writing is
/// silent (gone, or cut off from the database).
struct WorkerHealth {
  std::string worker;  ///< its client id
  std::string host;
  std::int64_t pid = 0;
  WallTime started{};
  WallTime heartbeat{};    ///< when it last wrote this row
  WallTime last_commit{};  ///< its last commit of events (the epoch: none yet)
  std::int64_t batches = 0;
  std::int64_t inserted = 0;
  bool broker_connected = false;
  std::string last_error;    ///< empty: none since it started
  WallTime last_error_at{};  ///< the epoch: none
};

/// A worker counts as silent when its heartbeat is older than this.
inline constexpr std::chrono::seconds kWorkerSilentAfter{20};

/// What one HqDatabase::prune removed.
struct Pruned {
  /// Events removed (on PostgreSQL, the rows the dropped partitions held).
  std::int64_t events = 0;
  /// Closed incidents removed.
  std::int64_t incidents = 0;
  /// PostgreSQL: the month partitions of `events` dropped (events_YYYYMM).
  std::vector<std::string> partitions;
  /// Not all that is due went in this call (each call's work is bounded, so
  /// ingest waits for it only briefly): call again soon.
  bool more = false;

  bool empty() const { return events == 0 && incidents == 0 && partitions.empty(); }
};

/// "12,345 events and 3 closed incidents (partition events_202410 dropped)",
/// for the log line of a prune that removed something.
std::string describe(const Pruned& pruned);

/// `n` with its thousands grouped by commas: "1,000,000".
std::string grouped(std::int64_t n);

class HqDatabase : public IngestStore {
 public:
  /// Names the worker in every event it stores (`events.worker`), so an
  /// operator can see how a shared subscription split the load.
  virtual void set_worker(std::string worker) = 0;

  /// `hq stores --json`: `[{"store","online","acked_seq","open_incidents",
  /// "last_seen","session","version","queued","gap_from","resyncs",
  /// "refused","refused_at"}]` sorted by store. `online` is false for a store
  /// never heard from on its status topic; `last_seen`, `session`, `version`
  /// and `queued` are null when unknown; `gap_from` is the first missing seq
  /// while seqs above `acked_seq` are stored (else null); `resyncs` counts
  /// the resync commands HQ sent the store; `refused` counts what HQ refused
  /// to believe of it: `{"seq_jump","conflict","session_jump"}`, and
  /// `refused_at` is the last such refusal (null when none).
  virtual Result<nlohmann::json> stores_json() = 0;

  /// `hq incidents --json`: each incident's latest snapshot exactly as its
  /// event carried it in `incident_state`, with `"store"` added; resolved and
  /// closed ones too unless `open_only`. Sorted by `t_detect` (the time HQ
  /// first saw the incident when it has none), then uid.
  virtual Result<nlohmann::json> incidents_json(const std::optional<std::string>& store,
                                                bool open_only) = 0;

  /// Every incident detected in [since, until] (by `t_detect`), for `hq report`.
  virtual Result<std::vector<ReportIncident>> report_incidents(WallTime since, WallTime until) = 0;

  /// Writes (replaces) the worker's row.
  virtual Status record_worker(const WorkerHealth& worker) = 0;

  /// Every worker that recorded itself, by name.
  virtual Result<std::vector<WorkerHealth>> workers() = 0;

  /// The database for logs and messages: the SQLite path, or the
  /// PostgreSQL server and database (nothing secret).
  virtual std::string name() const = 0;

  /// Retention (docs/HQ.md "Retention"): removes the events received before
  /// `now - retention`, and each closed incident whose newest event is one
  /// of them. SQLite deletes rows in bounded chunks; PostgreSQL drops whole
  /// month partitions of `events`, those whose range ends by then (so an
  /// event stays up to a month longer there). Every store's `acked_seq`
  /// stays: a re-send of a pruned event at or below it is a duplicate,
  /// never stored again. Bounded work per call: `more` says call again.
  virtual Result<Pruned> prune(WallTime now, Millis retention) = 0;
};

/// How open_hq_database opens the database.
enum class HqOpen {
  /// `hq run`: creates what is missing and migrates the schema.
  read_write,
  /// The views (`hq stores`, `hq incidents`, `hq report`): neither creates
  /// nor migrates; a schema older or newer than this build is an Error.
  read_only,
};

/// Opens `[hq] database` of `config`: the SQLite file, or the PostgreSQL
/// database when it is a postgresql:// URI. `application_name` names the
/// connection on PostgreSQL (pg_stat_activity).
Result<std::unique_ptr<HqDatabase>> open_hq_database(const config::HqConfig& config, HqOpen mode,
                                                     const std::string& application_name);

}  // namespace storewatch::hq
