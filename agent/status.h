#pragma once
/// \file
/// The `status --json` document (DESIGN §7), built either live by the
/// daemon from memory or, with the daemon down, from the database.

#include <nlohmann/json.hpp>

#include <vector>

#include "agent/engine.h"
#include "agent/scheduler.h"
#include "agent/store.h"
#include "base/clock.h"
#include "config/config.h"
#include "sync/client_cert.h"
#include "sync/publisher.h"

namespace storewatch::agent {

/// One probe's entry of the document. `pending` is true for a probe not
/// checked yet since the daemon started or its check level was reset (its
/// `message` and `last_check` are then those of an earlier check), and
/// `next_check` says when its next scheduled check is due (RFC 3339; null
/// while a check runs, or when no daemon runs).
nlohmann::json probe_json(const ProbeView& p, std::optional<WallTime> next_check = std::nullopt);

/// A probe's result as `probe run NAME --json` prints it (DESIGN §7), also
/// the `result` of an HQ `probe_run` command.
nlohmann::json probe_result_json(const config::ProbeConfig& p, const probes::ProbeResult& r);

/// The scheduler's lateness figures, `agent.schedule` of the live document:
/// {"checks", "skipped", "queued", "window", "late_p50_ms", "late_p99_ms",
/// "late_max_ms"} (milliseconds with microsecond precision).
nlohmann::json schedule_json(const ScheduleStats& s);

/// The `sync` object of `status --json`, also what `sync status --json`
/// prints (docs/SYNC.md has the shape), from the running publisher.
nlohmann::json sync_json(const config::Config& config, const sync::PublisherStats& s, WallTime now);

/// The same object from the database alone, for when no daemon answers:
/// `daemon_running` false and null for what only the daemon knows.
Result<nlohmann::json> sync_json_from_store(const config::Config& config, Store& store,
                                            WallTime now);

/// The `client_cert` member of the `sync` object: null without cert_file,
/// else {"file", "subject", "not_after", "days_left", "warn_days",
/// "warning", "error"} of `info` (the certificate in use), or of `error`
/// when it could not be read.
nlohmann::json client_cert_json(const config::SyncConfig& sync,
                                const std::optional<sync::CertInfo>& info, const std::string& error,
                                WallTime now);

/// From the database, for when no daemon answers: probe levels as last
/// persisted, `sync.connected` false, `agent.running` false.
Result<nlohmann::json> status_from_store(const config::Config& config, Store& store);

}  // namespace storewatch::agent
