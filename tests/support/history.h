#pragma once
/// \file
/// Incident history for tests of what reads the agent's database (report,
/// retention): every row goes through agent::Store::commit, so the schema,
/// the columns and the events are exactly the ones the engine writes.
/// Header-only; a test using it links storewatch_agent.

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <string>

#include "agent/store.h"

namespace storewatch::test {

/// An open incident of `probe` (dedup key "s:PROBE:down").
inline Incident incident(const std::string& uid, const std::string& probe,
                         std::optional<WallTime> t_fault, std::optional<WallTime> t_detect) {
  Incident i;
  i.uid = uid;
  i.probe = probe;
  i.dedup_key = "s:" + probe + ":down:" + uid;  // unique: tests keep several open per probe
  i.condition = "down";
  i.severity = config::Severity::high;
  i.priority = "P2";
  i.t_fault = t_fault;
  i.t_detect = t_detect;
  i.summary = probe + " is down";
  return i;
}

/// Commits the incident as it now is with one event; returns the event's seq.
inline std::int64_t record(agent::Store& store, const Incident& i, const std::string& type,
                           WallTime at, const std::string& actor = "agent",
                           nlohmann::json extra = nlohmann::json::object()) {
  IncidentEvent e{new_uid(at), type, at, actor, std::move(extra)};
  auto seqs = store.commit({agent::IncidentChange{i, std::move(e)}});
  EXPECT_TRUE(seqs) << (seqs ? "" : seqs.error().message);
  return seqs ? seqs->at(0) : 0;
}

/// Sets hq_acked_seq as the publisher does when HQ acks.
inline void set_acked(agent::Store& store, std::int64_t seq) {
  auto r = store.commit({agent::SyncValue{agent::kHqAckedSeq, seq, false}});
  EXPECT_TRUE(r) << (r ? "" : r.error().message);
}

}  // namespace storewatch::test
