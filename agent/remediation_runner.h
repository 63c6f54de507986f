#pragma once
/// \file
/// Runs one configured remediation action (exec, systemd-restart, http) and
/// reports how it went. The engine decides when; this does the action.

#include <boost/asio/io_context.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "config/config.h"

namespace storewatch::agent {

struct ActionOutcome {
  bool ok = false;               ///< exit 0 / systemd job "done" / the expected HTTP status
  std::optional<int> exit_code;  ///< exec only
  std::string detail;            ///< one line: "exit 3", "timed out after 30s", …
  std::string output;            ///< the first 4 KB of output
  bool output_truncated = false;
  std::chrono::milliseconds took{0};
};

class RemediationRunner {
 public:
  virtual ~RemediationRunner() = default;
  /// Starts the action; `done` runs on the io_context exactly once — also
  /// when stop() cancels it.
  virtual void run(const config::RemediationConfig& r, std::function<void(ActionOutcome)> done) = 0;
  /// Cancels everything running; their `done` still runs once with ok=false.
  virtual void stop() = 0;
};

std::unique_ptr<RemediationRunner> make_remediation_runner(boost::asio::io_context& io);

}  // namespace storewatch::agent
