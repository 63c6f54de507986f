#pragma once
/// \file
/// The one interface every probe type implements. A probe turns a target into
/// a ProbeResult and knows nothing of incidents or timing: the scheduler
/// decides when it runs and enforces its timeout.

#include <boost/asio/any_io_executor.hpp>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "config/config.h"

namespace storewatch::probes {

enum class ProbeStatus { ok, warn, fail, unknown };

std::string_view to_string(ProbeStatus s);

/// What one check found.
struct ProbeResult {
  ProbeStatus status = ProbeStatus::unknown;
  std::chrono::microseconds latency{0};
  std::string message;
  std::map<std::string, double> metrics;
  /// The check could not run for a reason of the agent's own, not the
  /// target's: storewatch is out of file descriptors. Set by the scheduler
  /// (probes/descriptors.h); such a result never counts
  /// toward the probe's incident.
  bool agent_fault = false;
  /// The target gave no answer at all: the check timed out, or every echo
  /// was lost. Such a result is `fail`; a target that answered with an
  /// error (refused, HTTP 500, paper out) is `fail` without it.
  bool no_answer = false;
};

/// One configured target of one type.
class Probe {
 public:
  using Done = std::function<void(ProbeResult)>;

  virtual ~Probe() = default;

  /// Starts one check. `done` is called exactly once, on the probe's
  /// executor, unless cancel() is called first. One check at a time.
  virtual void start(Done done) = 0;

  /// Abandons the running check (the scheduler's timeout fired) and frees its
  /// sockets or processes; `done` is then not called.
  virtual void cancel() = 0;
};

/// Calls `done` with `result` and empties it first, so a check's result is
/// delivered at most once even if the callback starts the next check. Does
/// nothing when `done` is already empty.
inline void deliver_once(Probe::Done& done, ProbeResult result) {
  if (!done) return;
  Probe::Done call = std::move(done);
  done = nullptr;
  call(std::move(result));
}

/// A probe type: its config keys and how to make one.
struct ProbeType {
  config::ProbeTypeSchema schema;
  std::unique_ptr<Probe> (*create)(const config::ProbeConfig& config,
                                   boost::asio::any_io_executor executor);
};

}  // namespace storewatch::probes
