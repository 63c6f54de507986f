#pragma once
/// \file
/// What HQ's ingest needs from its storage, behind an interface so a backend
/// other than the embedded SQLite one (hq/hq_store.h), PostgreSQL for a large
/// fleet, can follow without touching the ingest loop (hq/ingest.h).
///
/// The contract every backend keeps, whatever it is built on: several ingest
/// workers may write at once (a shared MQTT subscription hands consecutive
/// messages of one store to different workers), so every decision — dedup by
/// (store, seq), the highest contiguous seq (`acked_seq`), the gap state — is
/// taken inside the backend's commit, from what is stored, never from what
/// one worker saw or the order it saw it in. `acked_seq` only rises.

#include <chrono>
#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "base/clock.h"
#include "base/duration.h"
#include "base/result.h"
#include "sync/wire.h"

namespace storewatch::hq {

/// What one commit changed for one store.
struct Ingested {
  std::string store;
  /// The store's highest contiguous seq stored at HQ, after the commit.
  std::int64_t acked_seq = 0;
  /// Whether the commit raised `acked_seq` (a new ack is due).
  bool acked_changed = false;
  /// Events stored for the first time.
  int inserted = 0;
  /// Events HQ already had (a re-send after a lost ack or a reconnect).
  int duplicates = 0;
  /// Duplicates whose event uid differs from the stored one: the store reused
  /// seqs, which happens when its database was replaced. They are not stored.
  int conflicts = 0;
  /// Seqs above `acked_seq` are stored: something below them is missing.
  bool gap = false;
  /// Events refused because their seq is more than `max_seq_jump` above
  /// `acked_seq` as it was before the commit; not stored, counted in the
  /// store's `refused_seq_jump`. `refused_seq` is the first of them.
  int refused = 0;
  std::int64_t refused_seq = 0;
  /// The store had no row before this commit (it was created by it).
  bool new_store = false;
  /// The store has a row after the commit (false: everything it sent was
  /// refused and HQ knew nothing of it before, so nothing was written).
  bool known = true;
};

/// What HQ refuses to believe, whoever sent it (DESIGN §8, docs/HQ.md
/// "Refused messages").
struct IngestLimits {
  /// An event whose seq is more than this above the store's `acked_seq` is
  /// refused.
  std::int64_t max_seq_jump = 100'000;
  /// A status whose `session` is more than this above the highest recorded
  /// for the store (0 when none) is refused.
  std::int64_t max_session_jump = 1'000'000;
};

/// What record_status did with a status.
struct StatusRecorded {
  enum class Outcome {
    recorded,      ///< the store's status now
    stale,         ///< older than the one recorded: ignored
    session_jump,  ///< refused: `session` jumps more than max_session_jump
  };
  Outcome outcome = Outcome::recorded;
  /// The highest session recorded for the store before (0 when none).
  std::int64_t session_before = 0;
  /// The store had no row before (it was created by this status).
  bool new_store = false;
};

/// A store whose gap has persisted long enough: ask it to re-send from
/// `from_seq` (its `acked_seq` + 1).
struct ResyncDue {
  std::string store;
  std::int64_t from_seq = 0;
};

class IngestStore {
 public:
  virtual ~IngestStore() = default;

  /// Stores the batches in ONE commit (one fsync for the group): each event
  /// once by (store, seq), each incident's state from its highest seq, each
  /// store's `acked_seq` raised to the highest seq below which nothing is
  /// missing, and its gap state updated. Nothing is visible unless
  /// everything is. One result per store, in the order of first appearance.
  /// An event more than `max_seq_jump` above the store's `acked_seq` is
  /// refused (counted, not stored); a store is created only by an event
  /// stored, and its `last_seen` moves only when an event was stored or was
  /// a true duplicate.
  virtual Result<std::vector<Ingested>> ingest(std::span<const wire::Batch> batches,
                                               WallTime received) = 0;

  /// Records a birth or last-will `status`. One from an older session than
  /// the one stored is ignored (a will retained from an earlier connection
  /// must not mark a store offline that has reconnected since). Within one
  /// session offline is final: the birth comes before the will, so a birth
  /// that a slower worker records after the will changes nothing.
  /// `last_seen` never goes backwards.
  /// A status whose session jumps more than `max_session_jump` above the
  /// highest recorded is refused: not recorded, counted in the store's
  /// `refused_session_jump` (when HQ knows the store).
  virtual Result<StatusRecorded> record_status(const wire::StoreStatus& status,
                                               WallTime received) = 0;

  /// The limits ingest() and record_status() enforce.
  virtual void set_limits(const IngestLimits& limits) = 0;

  /// Every store's acked seq, sorted by store (to re-publish retained acks).
  virtual Result<std::vector<std::pair<std::string, std::int64_t>>> acked_seqs() = 0;

  /// One store's acked seq as committed now (0 when unknown).
  virtual Result<std::int64_t> acked_seq(const std::string& store) = 0;

  /// The stores whose gap above `acked_seq` has persisted for `after`, and
  /// that were not asked to resync for that gap within `after`. Claimed in
  /// one commit: of several workers asking at once, one gets each store.
  virtual Result<std::vector<ResyncDue>> claim_resyncs(WallTime now, Millis after) = 0;

  /// Convenience: one batch in its own commit.
  Result<Ingested> ingest(const wire::Batch& batch, WallTime received) {
    auto r = ingest(std::span<const wire::Batch>(&batch, 1), received);
    if (!r) return r.error();
    if (r->empty()) return Ingested{batch.store};
    return std::move(r->front());
  }
};

}  // namespace storewatch::hq
