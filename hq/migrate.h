#pragma once
/// \file
/// `storewatch hq migrate`: copies a SQLite HQ database into PostgreSQL
/// (docs/HQ.md "Moving from SQLite to PostgreSQL"), so that afterwards
/// `hq stores` and `hq incidents` say the same on both.
///
/// Idempotent: events are keyed by (store, seq) and one already there is
/// not copied again; an incident keeps the state of its higher seq; a
/// store's `acked_seq` and `max_seq` never go backwards, its counters are
/// the higher of the two, and its status is the newer session's. A run cut
/// short is finished by running it again. Meant for HQ stopped on both
/// sides: what a worker writes meanwhile is not copied.

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>

#include "base/result.h"
#include "config/config.h"

namespace storewatch::hq {

/// What a migration found and copied.
struct Migrated {
  std::int64_t stores = 0;            ///< stores in the SQLite file
  std::int64_t stores_copied = 0;     ///< of them, created or changed in PostgreSQL
  std::int64_t events = 0;            ///< events in the SQLite file
  std::int64_t events_copied = 0;     ///< of them, not in PostgreSQL before
  std::int64_t incidents = 0;         ///< incidents in the SQLite file
  std::int64_t incidents_copied = 0;  ///< of them, created or moved to a higher seq
  std::chrono::milliseconds took{0};
};

/// Where a migration stands: `done` of `total` events read and copied (or
/// found there already).
using MigrateProgress = std::function<void(std::int64_t done, std::int64_t total)>;

/// Copies the SQLite HQ database `from` into the PostgreSQL database of
/// `to` (`to.postgresql`, with `to.database_password_file`), creating or
/// migrating its schema first. `progress` is called after each chunk of
/// events (and once at the start).
Result<Migrated> migrate_to_postgresql(const std::filesystem::path& from,
                                       const config::HqConfig& to, const MigrateProgress& progress);

/// The closing line: "copied 1,000 events (0 were there already), ...".
std::string describe(const Migrated& migrated);

}  // namespace storewatch::hq
