#pragma once
/// \file
/// `storewatch hq report`: MTTD, MTTA, MTTR and the auto-heal rate of every
/// store HQ knows, and of the fleet, from the incident snapshots the stores
/// sent. The figures are those of the agent's `storewatch report`
/// (docs/METRICS.md), computed by the same code (incident/metrics.h); the
/// shape is in docs/HQ.md.

#include <nlohmann/json.hpp>

#include <optional>
#include <string>
#include <vector>

#include "base/clock.h"
#include "base/duration.h"
#include "base/result.h"
#include "hq/hq_database.h"
#include "incident/metrics.h"

namespace storewatch::hq {

struct StoreReport {
  std::string store;
  Report report;
};

struct FleetReport {
  /// Every incident of the stores below together.
  Report fleet;
  /// One per store HQ knows (or only the one asked for), sorted by store;
  /// a store with no incident in the window has zero counts.
  std::vector<StoreReport> stores;

  /// `{"since","until","fleet":{…},"stores":[{"store":S,…}]}`, each report
  /// object in the shape of `storewatch report --json`.
  nlohmann::json to_json() const;
  /// The fleet report, then one line per store.
  std::string render(bool colour) const;
};

/// A snapshot as HQ stores it (`incident_state`), as the report needs it.
ReportRow report_row(const nlohmann::json& snapshot, bool human_ack);

/// The report of the incidents detected in [now − since, now]; `store` limits
/// it to one store (an Error when HQ has never heard of it).
Result<FleetReport> build_fleet_report(HqDatabase& store, WallTime now, Millis since,
                                       const std::optional<std::string>& only_store);

}  // namespace storewatch::hq
