#pragma once
/// \file
/// A ChangeSink that keeps what the engine hands it, and plays the database
/// for the engine's `stored` hook.

#include <limits>
#include <optional>
#include <vector>

#include "agent/store_writer.h"

namespace storewatch::test {

class RecordingSink final : public agent::ChangeSink {
 public:
  void submit(agent::Change change) override { changes.push_back(std::move(change)); }
  /// Every change handed over counts as one, as the store writer counts.
  std::uint64_t ticket() const override { return changes.size(); }

  std::vector<agent::IncidentChange> incident_changes() const {
    std::vector<agent::IncidentChange> out;
    for (const auto& c : changes) {
      if (const auto* ic = std::get_if<agent::IncidentChange>(&c)) out.push_back(*ic);
    }
    return out;
  }

  /// The incident `uid` as the database holds it once the first `n`
  /// changes are committed (all of them by default): its newest row.
  std::optional<Incident> stored(const std::string& uid,
                                 std::size_t n = std::numeric_limits<std::size_t>::max()) const {
    std::optional<Incident> out;
    for (std::size_t i = 0; i < changes.size() && i < n; ++i) {
      if (const auto* ic = std::get_if<agent::IncidentChange>(&changes[i]);
          ic != nullptr && ic->incident.uid == uid) {
        out = ic->incident;
      }
    }
    return out;
  }

  std::vector<agent::Change> changes;
};

}  // namespace storewatch::test
