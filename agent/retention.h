#pragma once
/// \file
/// Retention and the database size cap (DESIGN §5): prunes closed history
/// that HQ has acknowledged, oldest first, and never an event HQ has not.
///
/// Runs on the StoreWriter's connection (the one writer), between its
/// batches, a bounded amount of work per call; the caller runs it
/// periodically and raises the critical "storage" incident when a run says
/// the database is stuck over its cap.
///
/// What may go: a *closed* incident none of whose events is above
/// `hq_acked_seq`, with all its events. Only whole incidents go, so an open
/// incident's timeline is never cut; that leaves holes in `events.seq`
/// below `hq_acked_seq` where an old incident's events interleaved with a
/// newer one's. Those holes are harmless: the publisher reads `seq >
/// hq_acked_seq`, and an ack lower than one already seen is ignored, so
/// nothing below it is ever sent again. Above `hq_acked_seq` nothing is
/// deleted, so the unsynced range stays contiguous.

#include <chrono>
#include <cstdint>

#include "agent/store.h"
#include "base/clock.h"
#include "base/duration.h"
#include "base/result.h"

namespace storewatch::agent {

struct PrunePolicy {
  /// Closed incidents go this long after t_closed ([agent] retention).
  Millis retention = std::chrono::hours(24 * 30);
  /// The cap on the bytes the database holds ([agent] max_db_bytes); see
  /// PruneResult::used_bytes for what is measured.
  std::int64_t max_db_bytes = std::int64_t{256} * 1024 * 1024;
  /// Over the cap, shed history down to this fraction of it, so shedding
  /// does not run again at the next few events.
  double low_water = 0.9;
  /// Rows (events and incidents) deleted per transaction.
  std::int64_t chunk_rows = 1000;
  /// Rows deleted per run, all chunks together: bounds how long the writer
  /// is kept from committing the engine's changes.
  std::int64_t max_rows_per_run = 5000;
  /// Free pages given back to the filesystem per run (incremental vacuum).
  std::int64_t max_vacuum_pages = 1024;
};

struct PruneResult {
  /// Removed because closed longer than `retention`.
  std::int64_t expired_incidents = 0;
  std::int64_t expired_events = 0;
  /// Removed, oldest closed first, because the database was over its cap.
  std::int64_t shed_incidents = 0;
  std::int64_t shed_events = 0;
  /// Bytes the database holds after the run: (page_count − freelist_count)
  /// × page_size. Free pages are reused before the file grows, so this is
  /// what pruning can lower and what the cap is checked against.
  std::int64_t used_bytes = 0;
  /// Size of the database file and its WAL on disk after the run (at least
  /// used_bytes, more while free pages are kept in the file).
  std::int64_t file_bytes = 0;
  std::int64_t cap_bytes = 0;
  /// Pages the incremental vacuum gave back to the filesystem.
  std::int64_t pages_vacuumed = 0;
  /// used_bytes > cap_bytes after the run.
  bool over_cap = false;
  /// The run stopped at max_rows_per_run with more to prune; run again soon.
  bool more = false;

  /// Over the cap with nothing synced and closed left to shed: only
  /// unsynced events and open incidents remain, which are never dropped. The
  /// caller raises the critical "storage" incident on this.
  bool stuck_over_cap() const { return over_cap && !more; }
};

class Pruner {
 public:
  explicit Pruner(PrunePolicy policy) : policy_(policy) {}

  /// One bounded run on the writer's connection (no transaction open).
  Result<PruneResult> run(Store& store, WallTime now);

  /// Whether shedding for the cap is under way: it starts above the cap and
  /// goes on (across runs) until below low_water × cap.
  bool shedding() const { return shedding_; }

 private:
  PrunePolicy policy_;
  bool shedding_ = false;
};

}  // namespace storewatch::agent
