#include "agent/scheduler.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "base/log.h"
#include "probes/descriptors.h"
#include "probes/registry.h"
#include "probes/run_once.h"

namespace storewatch::agent {

namespace asio = boost::asio;
using std::chrono::microseconds;
using std::chrono::milliseconds;
using std::chrono::steady_clock;

void LatenessRecorder::record(microseconds late) {
  const std::int64_t us = std::max<std::int64_t>(late.count(), 0);
  ring_[count_ % kWindow] = us;
  ++count_;
  max_ = std::max(max_, us);
}

ScheduleStats LatenessRecorder::stats() const {
  ScheduleStats s;
  s.checks = count_;
  s.skipped = skipped_;
  s.queued = queued_;
  s.window = static_cast<std::size_t>(std::min<std::uint64_t>(count_, kWindow));
  s.max = microseconds(max_);
  if (s.window == 0) return s;
  std::vector<std::int64_t> v(ring_.begin(), ring_.begin() + static_cast<std::ptrdiff_t>(s.window));
  std::sort(v.begin(), v.end());
  // Nearest rank: the smallest value with at least p% of the window at or below it.
  auto rank = [&](double p) {
    auto k = static_cast<std::size_t>(std::ceil(p / 100.0 * static_cast<double>(v.size())));
    return microseconds(v[std::clamp<std::size_t>(k, 1, v.size()) - 1]);
  };
  s.p50 = rank(50);
  s.p99 = rank(99);
  return s;
}

struct Scheduler::Entry {
  Entry(asio::io_context& io, const config::ProbeConfig& c)
      : config(c), probe(probes::create(config, io.get_executor())), timer(io), deadline(io) {}

  /// The entry's own copy: a reload replaces the Config's probe list while
  /// checks of this entry may still be running.
  config::ProbeConfig config;
  std::unique_ptr<probes::Probe> probe;
  asio::steady_timer timer;     ///< the next slot
  asio::steady_timer deadline;  ///< the running check's timeout
  steady_clock::time_point origin;
  steady_clock::time_point started;
  std::optional<steady_clock::time_point> slot;  ///< of the check due or queued, if scheduled
  std::uint64_t generation = 0;                  ///< tells a stale completion from the current one
  bool running = false;
  bool waiting = false;
  bool in_flight = false;  ///< the probe has not called back yet
  bool retired = false;    ///< removed or replaced by a reload
  bool first = false;      ///< the timer is armed for the first check, off the grid
};

Scheduler::Scheduler(asio::io_context& io, std::shared_ptr<const config::Config> config,
                     OnResult on_result)
    : io_(io), config_(std::move(config)), on_result_(std::move(on_result)) {
  for (const auto& p : config_->probes) entries_.emplace(p.name, std::make_unique<Entry>(io_, p));
}

Scheduler::~Scheduler() {
  stop();
}

milliseconds Scheduler::slot_grain(milliseconds interval) {
  return std::clamp<milliseconds>(interval / 16, milliseconds(1), kMaxSlotGrain);
}

milliseconds Scheduler::offset_of(const std::string& name, milliseconds interval) {
  // FNV-1a: stable across runs and builds, unlike std::hash.
  std::uint64_t h = 1469598103934665603ull;
  for (unsigned char c : name) {
    h ^= c;
    h *= 1099511628211ull;
  }
  // Offsets are whole grains, so probes that share a grain share their slots
  // and the loop wakes once for all of them.
  const milliseconds grain = slot_grain(interval);
  const auto grains = static_cast<std::uint64_t>(std::max<std::int64_t>(interval / grain, 1));
  return grain * static_cast<std::int64_t>(h % grains);
}

milliseconds Scheduler::first_offset_of(const std::string& name, milliseconds interval) {
  return offset_of(name, interval) % std::min(interval, kFirstRoundWindow);
}

namespace {

/// The first slot origin + k × interval (k a whole number) strictly after `t`.
steady_clock::time_point next_slot(steady_clock::time_point origin, milliseconds interval,
                                   steady_clock::time_point t) {
  const auto since = t - origin;
  auto k = since / interval;  // rounds towards 0: floor it
  if (since.count() < 0 && since % interval != steady_clock::duration::zero()) --k;
  return origin + (k + 1) * interval;
}

}  // namespace

void Scheduler::start() {
  const auto now = steady_clock::now();
  for (auto& [name, e] : entries_) schedule(*e, now, true);
}

void Scheduler::schedule(Entry& e, steady_clock::time_point now, bool first_round) {
  e.origin = now + offset_of(e.config.name, e.config.interval);
  // At start the first check comes at once (within kFirstRoundWindow), not
  // at the origin, which may be a whole interval away.
  e.first = first_round;
  e.timer.expires_at(first_round ? now + first_offset_of(e.config.name, e.config.interval)
                                 : e.origin);
  arm(e);
}

void Scheduler::retire(std::unique_ptr<Entry> e) {
  e->retired = true;
  e->timer.cancel();
  e->deadline.cancel();
  if (e->waiting) std::erase(waiting_, e.get());
  e->waiting = false;
  // Stale before the cancel: a probe that answers a cancel at once is ignored.
  const bool was_running = e->running;
  e->running = false;
  ++e->generation;
  if (was_running) {
    --running_;
    e->probe->cancel();
  }
  retired_.push_back(std::move(e));
}

Scheduler::Change Scheduler::reconfigure(std::shared_ptr<const config::Config> next,
                                         const std::set<std::string>& replace) {
  Change out;
  config_ = std::move(next);
  if (stopped_) return out;
  // Entries retired by an earlier reload whose probe has called back (or was
  // idle) have no handler left that refers to them.
  std::erase_if(retired_, [](const std::unique_ptr<Entry>& e) { return !e->in_flight; });
  std::set<std::string> wanted;
  for (const auto& p : config_->probes) wanted.insert(p.name);
  for (auto it = entries_.begin(); it != entries_.end();) {
    if (wanted.contains(it->first) && !replace.contains(it->first)) {
      ++it;
      continue;
    }
    (wanted.contains(it->first) ? out.replaced : out.removed).push_back(it->first);
    retire(std::move(it->second));
    it = entries_.erase(it);
  }
  const auto now = steady_clock::now();
  for (const auto& p : config_->probes) {
    // A kept entry has the same check: its copy differs at most in the
    // engine's keys (fail_after, severity, …), which the scheduler does not
    // read, and its probe may refer into that copy, so it is left alone.
    if (entries_.contains(p.name)) continue;
    auto e = std::make_unique<Entry>(io_, p);
    Entry& ref = *e;
    entries_.emplace(p.name, std::move(e));
    schedule(ref, now, false);
  }
  // A higher max_concurrent_checks lets waiting checks start now.
  while (!waiting_.empty() && running_ < config_->agent.max_concurrent_checks) {
    Entry* next = waiting_.front();
    waiting_.pop_front();
    next->waiting = false;
    begin(*next);
  }
  return out;
}

void Scheduler::stop() {
  if (stopped_) return;
  stopped_ = true;
  waiting_.clear();
  for (auto& [name, e] : entries_) {
    e->timer.cancel();
    e->deadline.cancel();
    if (e->running) e->probe->cancel();
    e->running = false;
    ++e->generation;
  }
  running_ = 0;
}

void Scheduler::arm(Entry& e) {
  e.timer.async_wait([this, &e](const boost::system::error_code& ec) {
    if (ec || stopped_ || e.retired) return;
    due(e, e.timer.expiry());
    // Next slot strictly after now, on the origin's grid: missed slots are
    // skipped, never bunched, and the grid does not drift. After the first
    // check (off the grid), the first slot half an interval later at least.
    const auto interval = e.config.interval;
    auto after = steady_clock::now();
    if (e.first) after = std::max(after, e.timer.expiry() + interval / 2);
    e.first = false;
    e.timer.expires_at(next_slot(e.origin, interval, after));
    arm(e);
  });
}

void Scheduler::due(Entry& e, std::optional<steady_clock::time_point> slot) {
  if (e.running || e.waiting) {
    log::debug("probe {}: still running at its next slot; skipping it", e.config.name);
    if (slot) lateness_.skipped();
    return;
  }
  e.slot = slot;
  if (running_ >= config_->agent.max_concurrent_checks) {
    if (slot) lateness_.queued();
    e.waiting = true;
    waiting_.push_back(&e);
    return;
  }
  begin(e);
}

std::optional<steady_clock::time_point> Scheduler::next_due(const std::string& name) const {
  auto it = entries_.find(name);
  if (stopped_ || it == entries_.end() || it->second->running || it->second->waiting) {
    return std::nullopt;
  }
  return it->second->timer.expiry();
}

bool Scheduler::run_now(const std::string& name) {
  auto it = entries_.find(name);
  if (it == entries_.end()) return false;
  if (!stopped_) due(*it->second, std::nullopt);
  return true;
}

void Scheduler::begin(Entry& e) {
  e.running = true;
  ++running_;
  const std::uint64_t gen = ++e.generation;
  e.started = steady_clock::now();
  if (e.slot) {
    lateness_.record(std::chrono::duration_cast<microseconds>(e.started - *e.slot));
    e.slot.reset();
  }
  e.deadline.expires_after(e.config.timeout);
  e.deadline.async_wait([this, &e, gen](const boost::system::error_code& ec) {
    if (ec || gen != e.generation || !e.running) return;
    e.probe->cancel();
    finish(e, probes::timed_out(e.config.timeout,
                                std::chrono::duration_cast<std::chrono::microseconds>(
                                    steady_clock::now() - e.started)));
  });
  e.in_flight = true;
  e.probe->start([this, &e, gen](probes::ProbeResult r) {
    e.in_flight = false;
    if (gen != e.generation || !e.running) return;
    finish(e, std::move(r));
  });
}

void Scheduler::finish(Entry& e, probes::ProbeResult result) {
  e.running = false;
  ++e.generation;
  e.deadline.cancel();
  --running_;
  if (auto why = probes::out_of_descriptors(result)) {
    // Not the device's failure: the agent's own (agent/engine.h).
    result.agent_fault = true;
    result.message = fmt::format("not checked: {} ({})", *why, result.message);
  }
  on_result_(e.config.name, result);
  while (!stopped_ && !waiting_.empty() && running_ < config_->agent.max_concurrent_checks) {
    Entry* next = waiting_.front();
    waiting_.pop_front();
    next->waiting = false;
    begin(*next);
  }
}

}  // namespace storewatch::agent
