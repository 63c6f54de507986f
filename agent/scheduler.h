#pragma once
/// \file
/// Runs every probe on its own interval on the loop. Each probe gets a
/// stable per-name offset inside its interval so 300 probes don't fire
/// together (offsets come in grains of at most 250 ms, so the loop wakes for
/// a handful of probes at a time rather than for each one). The first round
/// does not wait for those offsets: every probe's first check starts within
/// kFirstRoundWindow of start() (its offset folded into that window), so a
/// probe every 30 s is known at start instead of up to 30 s later; the
/// probe then joins its grid at the first slot at least half an interval
/// after that first check (never two checks back to back). Slots are
/// computed from a fixed origin so nothing drifts over hours, every check's
/// timeout is enforced here (not trusted to the probe), and a global cap
/// bounds the checks running at once. A slow or hung device only ever delays
/// itself. It also keeps a bounded record of how late each scheduled check
/// started (the `agent.schedule` figures of `status`).

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <array>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "config/config.h"
#include "probes/probe.h"

namespace storewatch::agent {

/// How late scheduled checks started: lateness = the check's actual begin
/// minus its slot (the grid instant its timer was armed for), so it includes
/// timer and loop delay and any wait for the concurrency cap. Percentiles are
/// over the last kWindow checks (a fixed ring, no allocation per check);
/// `checks` and `max` are over the scheduler's whole life.
struct ScheduleStats {
  std::uint64_t checks = 0;   ///< scheduled checks begun (run_now is not counted)
  std::uint64_t skipped = 0;  ///< slots skipped because the probe was still running
  std::uint64_t queued = 0;   ///< checks that waited for the concurrency cap
  std::size_t window = 0;     ///< lateness values the percentiles are over
  std::chrono::microseconds p50{0};
  std::chrono::microseconds p99{0};
  std::chrono::microseconds max{0};
};

class LatenessRecorder {
 public:
  static constexpr std::size_t kWindow = 4096;

  /// Records one check's lateness; negative values (a timer firing a hair
  /// early) count as 0.
  void record(std::chrono::microseconds late);
  void skipped() { ++skipped_; }
  void queued() { ++queued_; }
  /// Sorts a copy of the window: O(kWindow log kWindow), for status requests.
  ScheduleStats stats() const;

 private:
  std::array<std::int64_t, kWindow> ring_{};
  std::uint64_t count_ = 0;
  std::uint64_t skipped_ = 0;
  std::uint64_t queued_ = 0;
  std::int64_t max_ = 0;
};

class Scheduler {
 public:
  using OnResult = std::function<void(const std::string& probe, const probes::ProbeResult&)>;

  /// Schedules the probes of `config`; each entry keeps a copy of its own
  /// [[probe]], so a reload's new snapshot leaves running checks alone.
  Scheduler(boost::asio::io_context& io, std::shared_ptr<const config::Config> config,
            OnResult on_result);
  ~Scheduler();

  /// Arms every probe's timer.
  void start();
  /// Cancels timers and running checks; no result is delivered after it.
  void stop();

  /// What reconfigure() did to the running schedule.
  struct Change {
    std::vector<std::string> removed;   ///< no longer scheduled
    std::vector<std::string> replaced;  ///< a new check on a new grid
  };
  /// A reload made `next` the running config (agent/reload.h): probes no
  /// longer configured stop (a check of theirs that runs is cancelled and
  /// its result dropped), new ones are scheduled from now, and those in
  /// `replace` (their check changed) start over with the new settings. The
  /// rest keep their grid.
  Change reconfigure(std::shared_ptr<const config::Config> next,
                     const std::set<std::string>& replace);

  /// Runs a probe now, outside its schedule, unless it is already running.
  /// Returns false for an unknown probe.
  bool run_now(const std::string& name);

  /// Offsets are multiples of a grain, interval / 16 but at most this:
  /// every probe whose offset falls in the same grain starts on one wake-up
  /// of the loop. With 1,000 probes every 10 s that is 4 wake-ups a second
  /// of ~25 checks each instead of 100 wake-ups of one, which costs a third
  /// of the CPU (tests/bench/probe_load.py), and 25 checks at once stay far
  /// below max_concurrent_checks.
  static constexpr std::chrono::milliseconds kMaxSlotGrain{250};
  static std::chrono::milliseconds slot_grain(std::chrono::milliseconds interval);

  /// The stable offset of a probe inside its interval, a whole number of
  /// slot grains.
  static std::chrono::milliseconds offset_of(const std::string& name,
                                             std::chrono::milliseconds interval);

  /// The first round of checks after start() is spread over this much at
  /// most. (A probe a reload adds or changes starts on its grid, as the
  /// others go on.)
  static constexpr std::chrono::milliseconds kFirstRoundWindow{1000};
  /// When a probe's first check starts after start(): its offset folded into
  /// kFirstRoundWindow (still whole grains), so `first_offset_of <
  /// kFirstRoundWindow`; the offset itself for intervals up to the window.
  static std::chrono::milliseconds first_offset_of(const std::string& name,
                                                   std::chrono::milliseconds interval);

  int running() const { return running_; }

  /// When the probe's next scheduled check is due (the armed timer's
  /// expiry); nullopt for a probe not scheduled, once stopped, or while a
  /// check of it runs or waits for the concurrency cap. Reads only.
  std::optional<std::chrono::steady_clock::time_point> next_due(const std::string& name) const;

  /// Lateness of scheduled checks so far.
  ScheduleStats schedule_stats() const { return lateness_.stats(); }

 private:
  struct Entry;
  /// Sets the entry's grid from `now`; its first check comes at once when
  /// `first_round` (start()), else on the grid (a reload's new probes).
  void schedule(Entry& e, std::chrono::steady_clock::time_point now, bool first_round);
  void retire(std::unique_ptr<Entry> e);
  void arm(Entry& e);
  void due(Entry& e, std::optional<std::chrono::steady_clock::time_point> slot);
  void begin(Entry& e);
  void finish(Entry& e, probes::ProbeResult result);

  boost::asio::io_context& io_;
  std::shared_ptr<const config::Config> config_;
  OnResult on_result_;
  std::map<std::string, std::unique_ptr<Entry>> entries_;
  std::deque<Entry*> waiting_;
  /// Entries a reload took out, kept until no handler can refer to them.
  std::vector<std::unique_ptr<Entry>> retired_;
  int running_ = 0;
  bool stopped_ = false;
  LatenessRecorder lateness_;
};

}  // namespace storewatch::agent
