#pragma once
/// \file
/// `storewatch report`: the incident metrics (incident/metrics.h) of the
/// incidents in the agent's database (DESIGN §4 "Metrics").

#include <cstddef>

#include "agent/store.h"
#include "base/clock.h"
#include "base/duration.h"
#include "base/result.h"
#include "incident/metrics.h"

namespace storewatch::agent {

/// The report of the incidents detected in [now − since, now].
Result<Report> build_report(Store& store, WallTime now, Millis since,
                            std::size_t top = kReportTopProbes);

}  // namespace storewatch::agent
