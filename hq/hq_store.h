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

#include "config/clock.h"
#include "config/result.h"
#include "db/sqlite.h"
#include "sync/wire.h"

namespace storewatch::hq {

/// What one batch changed.
struct Ingested {
  /// The store's highest contiguous seq stored at HQ, after the batch.
  std::int64_t acked_seq = 0;
  /// Whether the batch raised `acked_seq` (a new ack is due).
  bool acked_changed = false;
  /// Events stored for the first time.
  int inserted = 0;
  /// Events HQ already had (a re-send after a lost ack or a reconnect).
  int duplicates = 0;
  /// Duplicates whose event uid differs from the stored one: the store reused
  /// seqs, which happens when its database was replaced. They are not stored.
  int conflicts = 0;
};

class HqStore {
 public:
  /// Opens the database. read_write creates the file and its directory, sets
  /// WAL and `synchronous=FULL`, and migrates the schema. read_only (the
  /// `hq stores` / `hq incidents` views) neither creates nor migrates; a
  /// missing file, a corrupt one, or a schema this build does not match is an
  /// Error that says what to do.
  static Result<HqStore> open(const std::filesystem::path& path, db::Database::Mode mode);

  HqStore(HqStore&&) noexcept;
  HqStore& operator=(HqStore&&) noexcept;
  ~HqStore();

  /// Stores a batch in one transaction: each event once by (store, seq), each
  /// incident's state from its highest seq seen (events may come out of order
  /// or twice), and the store's `acked_seq` raised to the highest seq below
  /// which nothing is missing. Nothing is visible unless everything is.
  Result<Ingested> ingest(const wire::Batch& batch, WallTime received);

  /// Records a birth or last-will message. A status from an older session than
  /// the one stored is ignored: a will retained from an earlier connection must
  /// not mark a store offline that has reconnected since. `last_seen` never
  /// goes backwards.
  Status record_status(const wire::StoreStatus& status, WallTime received);

  /// `hq stores --json`: `[{"store","online","acked_seq","open_incidents",
  /// "last_seen","session","version","queued"}]` sorted by store. `online` is
  /// false for a store never heard from on its status topic; `last_seen`,
  /// `session`, `version` and `queued` are null when unknown.
  Result<nlohmann::json> stores_json();

  /// `hq incidents --json`: each incident's latest snapshot exactly as its
  /// event carried it in `incident_state`, with `"store"` added; resolved and
  /// closed ones too unless `open_only`. Sorted by `t_detect` (the time HQ
  /// first saw the incident when it has none), then uid.
  Result<nlohmann::json> incidents_json(const std::optional<std::string>& store, bool open_only);

  /// Every store's acked seq, sorted by store (to re-publish retained acks).
  Result<std::vector<std::pair<std::string, std::int64_t>>> acked_seqs();

  const std::filesystem::path& path() const;

 private:
  struct Impl;
  explicit HqStore(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace storewatch::hq
