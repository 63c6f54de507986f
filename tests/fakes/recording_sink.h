#pragma once
/// \file
/// A ChangeSink that keeps what the engine hands it.

#include <vector>

#include "agent/store_writer.h"

namespace storewatch::test {

class RecordingSink final : public agent::ChangeSink {
 public:
  void submit(agent::Change change) override { changes.push_back(std::move(change)); }

  std::vector<agent::IncidentChange> incident_changes() const {
    std::vector<agent::IncidentChange> out;
    for (const auto& c : changes) {
      if (const auto* ic = std::get_if<agent::IncidentChange>(&c)) out.push_back(*ic);
    }
    return out;
  }

  std::vector<agent::Change> changes;
};

}  // namespace storewatch::test
