#pragma once
/// \file
/// Runs every probe on its own interval on the loop. Each probe gets a
/// stable per-name offset inside its interval so 300 probes don't fire
/// together, slots are computed from a fixed origin so nothing drifts over
/// hours, every check's timeout is enforced here (not trusted to the probe),
/// and a global cap bounds the checks running at once. A slow or hung device
/// only ever delays itself.

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "config/config.h"
#include "probes/probe.h"

namespace storewatch::agent {

class Scheduler {
 public:
  using OnResult = std::function<void(const std::string& probe, const probes::ProbeResult&)>;

  Scheduler(boost::asio::io_context& io, const config::Config& config, OnResult on_result);
  ~Scheduler();

  /// Arms every probe's timer.
  void start();
  /// Cancels timers and running checks; no result is delivered after it.
  void stop();

  /// Runs a probe now, outside its schedule, unless it is already running.
  /// Returns false for an unknown probe.
  bool run_now(const std::string& name);

  /// The stable offset of a probe inside its interval.
  static std::chrono::milliseconds offset_of(const std::string& name,
                                             std::chrono::milliseconds interval);

  int running() const { return running_; }

 private:
  struct Entry;
  void arm(Entry& e);
  void due(Entry& e);
  void begin(Entry& e);
  void finish(Entry& e, probes::ProbeResult result);

  boost::asio::io_context& io_;
  const config::Config& config_;
  OnResult on_result_;
  std::map<std::string, std::unique_ptr<Entry>> entries_;
  std::deque<Entry*> waiting_;
  int running_ = 0;
  bool stopped_ = false;
};

}  // namespace storewatch::agent
