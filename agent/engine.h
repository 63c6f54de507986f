#pragma once
/// \file
/// The incident engine: turns probe results into check levels and incidents
/// (DESIGN §4). Its state lives in memory on the loop thread; every change is
/// handed to a ChangeSink (the store writer) as an incident row plus its
/// event, to be committed together.

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "agent/check_state.h"
#include "agent/incident.h"
#include "agent/store.h"
#include "agent/store_writer.h"
#include "config/clock.h"
#include "config/config.h"
#include "probes/probe.h"

namespace storewatch::agent {

/// What `status` shows of one probe.
struct ProbeView {
  std::string name;
  std::string type;
  CheckLevel level = CheckLevel::unknown;
  std::optional<WallTime> last_check;
  std::string last_status;  ///< ok|warn|fail|unknown, "" before the first check
  double latency_ms = 0;
  std::string message;
};

class Engine {
 public:
  Engine(const config::Config& config, const Clock& clock, ChangeSink& sink);

  /// Resumes from the database: probe levels and counters, and the
  /// incidents that were unresolved when the daemon stopped.
  void restore(const std::vector<ProbeStateRow>& states, std::vector<Incident> unresolved);

  /// Feeds one result of one probe.
  void on_result(const std::string& probe, const probes::ProbeResult& result);

  /// Hands the probes whose last result changed since the last flush to the
  /// sink (probe results are not written one by one: flash wears).
  void flush_probe_states();

  std::vector<ProbeView> probes() const;
  /// Unresolved incidents by dedup key.
  const std::map<std::string, Incident>& unresolved() const { return unresolved_; }

 private:
  struct Runtime {
    const config::ProbeConfig* config = nullptr;
    CheckState check;
    std::optional<WallTime> last_check;
    std::string last_status;
    double latency_ms = 0;
    std::string message;
    bool dirty = false;
  };

  std::string dedup_key(const std::string& probe) const;
  ProbeStateRow row_of(const std::string& name, const Runtime& rt) const;
  void open_incident(const std::string& probe, Runtime& rt, const probes::ProbeResult& r,
                     WallTime at);
  void resolve_incident(const std::string& probe, Runtime& rt, WallTime at);

  const config::Config& config_;
  const Clock& clock_;
  ChangeSink& sink_;
  std::map<std::string, Runtime> probes_;
  std::map<std::string, Incident> unresolved_;
};

}  // namespace storewatch::agent
