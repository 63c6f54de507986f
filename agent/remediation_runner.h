#pragma once
/// \file
/// Runs one configured [[remediation]] action — exec, systemd-restart or
/// http — and reports how it went. The engine decides when an action runs
/// and what its outcome means for the incident; this only does the action,
/// bounded in time and output, without blocking the loop. docs/REMEDIATION.md
/// describes each type, the outcome strings and the safety rules.

#include <boost/asio/io_context.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "config/config.h"

namespace storewatch::agent {

/// Bytes of an action's output kept for its event.
inline constexpr std::size_t kActionOutputKept = 4096;

/// How one run of an action ended.
struct ActionOutcome {
  bool ok = false;               ///< exit 0 / systemd job "done" / the expected HTTP status
  std::optional<int> exit_code;  ///< exec only, when the command exited by itself
  /// One line: "exit 0", "exit 3", "killed by signal 9 (SIGKILL)", "timed out after 30s",
  /// "not found: /usr/bin/x", "HTTP 503, expected 200", "job failed",
  /// "unit not found: x.service: ...", "cancelled"... (docs/REMEDIATION.md lists them).
  std::string detail;
  /// The first kActionOutputKept bytes of output: exec stdout, then stderr; the http body.
  /// Not cut at a UTF-8 boundary.
  std::string output;
  bool output_truncated = false;  ///< there was more output than `output` holds
  std::chrono::milliseconds took{0};
};

class RemediationRunner {
 public:
  virtual ~RemediationRunner() = default;
  /// Starts the action; `done` runs on the io_context exactly once (never from inside run()) —
  /// also when stop() cancels it. Actions of different probes may run at once.
  virtual void run(const config::RemediationConfig& r, std::function<void(ActionOutcome)> done) = 0;
  /// Cancels everything running (kills exec process groups, drops transfers and bus waits);
  /// their `done` still runs once, with ok=false and detail "cancelled".
  virtual void stop() = 0;
};

/// The real runner: exec via os/process.h, systemd-restart via the shared sd-bus connection
/// of os/system_bus.h, http via the libcurl multi of os/curl_multi.h. Destroying it
/// cancels what still runs without calling their `done`.
std::unique_ptr<RemediationRunner> make_remediation_runner(boost::asio::io_context& io);

}  // namespace storewatch::agent
