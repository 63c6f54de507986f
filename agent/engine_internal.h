#pragma once
/// \file
/// What the files that define Engine (engine.cpp, engine_actions.cpp,
/// engine_healing.cpp, engine_silences.cpp) share and nobody else uses: the
/// condition of a probe's own incident, the slack on a re-run's answer, and
/// how a duration is written in an event.

#include <chrono>
#include <string>

#include "base/duration.h"

namespace storewatch::agent::engine_internal {

// The condition a probe's incident is about: the probe fails.
inline constexpr const char* kConditionDown = "down";
// Slack on top of a probe's timeout before a re-run counts as unanswered.
inline constexpr auto kAnswerSlack = std::chrono::seconds(5);

inline std::string describe(Millis d) {
  return format_duration(d);
}

}  // namespace storewatch::agent::engine_internal
