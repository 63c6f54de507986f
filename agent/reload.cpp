#include "agent/reload.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <initializer_list>
#include <map>
#include <utility>

#include "base/log.h"

namespace storewatch::agent {

namespace {

/// `v` without where it was written: moving a section within its file, or
/// writing a line above it, changes nothing.
template <class T>
T unplaced(T v) {
  v.where = {};
  return v;
}

template <class T>
bool same_unplaced(const std::vector<T>& a, const std::vector<T>& b) {
  return std::equal(a.begin(), a.end(), b.begin(), b.end(),
                    [](const T& x, const T& y) { return unplaced(x) == unplaced(y); });
}

/// A key of [store] or [agent] that applies at run time: the parts that
/// read it take it from the running snapshot.
struct RunTimeKey {
  const char* name;
  bool (*differs)(const config::Config& a, const config::Config& b);
  void (*clear)(config::Config& c);
};

using C = config::Config;

/// The run-time keys of the sections that also hold keys needing a restart
/// (the engine reads the store's time zone and trading hours, the scheduler
/// max_concurrent_checks, the daemon log_level, notices and `status` the
/// store's name).
constexpr RunTimeKey kRunTimeKeys[] = {
    {"store.name", [](const C& a, const C& b) { return a.store.name != b.store.name; },
     [](C& c) { c.store.name.clear(); }},
    {"store.timezone", [](const C& a, const C& b) { return a.store.timezone != b.store.timezone; },
     [](C& c) { c.store.timezone.clear(); }},
    {"store.trading_hours",
     [](const C& a, const C& b) { return a.store.trading_hours != b.store.trading_hours; },
     [](C& c) {
       c.store.trading_hours.clear();
       c.store.trading = {};
     }},
    {"agent.log_level",
     [](const C& a, const C& b) { return a.agent.log_level != b.agent.log_level; },
     [](C& c) { c.agent.log_level = {}; }},
    {"agent.max_concurrent_checks",
     [](const C& a, const C& b) {
       return a.agent.max_concurrent_checks != b.agent.max_concurrent_checks;
     },
     [](C& c) { c.agent.max_concurrent_checks = {}; }},
};

/// `c` with what may change at run time taken out: whatever still differs
/// needs a restart. What may change is listed here and in kRunTimeKeys, and
/// nowhere else; every other key and section is compared by the defaulted
/// operator== of config::Config, so one added to it later needs a restart
/// until it is made a run-time one here — a change to it is refused, never
/// ignored.
config::Config restart_part(config::Config c) {
  for (const RunTimeKey& k : kRunTimeKeys) k.clear(c);
  c.incidents = {};
  c.probes.clear();
  c.remediations.clear();
  c.silences.clear();
  c.files.clear();  // which files were read: their contents are the rest
  c.store.where = {};
  for (auto& n : c.notify) n.where = {};
  return c;
}

/// What the scheduler runs: a [[probe]] but for the engine's keys and where
/// it was written. A key added to ProbeConfig counts as part of the check:
/// a change to it replaces the check rather than go unseen by it.
config::ProbeConfig check_part(config::ProbeConfig p) {
  p.fail_after = {};
  p.recover_after = {};
  p.severity = {};
  p.depends_on.clear();
  p.labels.clear();
  p.remediation.clear();
  p.where = {};
  return p;
}

/// The [[remediation]] a probe names, or nullptr.
const config::RemediationConfig* remediation_of(const config::Config& c,
                                                const config::ProbeConfig& p) {
  return p.remediation.empty() ? nullptr : c.find_remediation(p.remediation);
}

/// Names what needs a restart for the message: the keys of `named` that
/// differ, else the section (a key none of them names). Only the message
/// depends on these names; the refusal does not.
template <class Section>
void name_restart(std::vector<std::string>& out, const Section& was, const Section& now,
                  const char* section,
                  std::initializer_list<std::pair<const char*, bool>> named = {}) {
  if (was == now) return;
  const auto before = out.size();
  for (const auto& [key, differs] : named) {
    if (differs) out.emplace_back(key);
  }
  if (out.size() == before) out.emplace_back(section);
}

}  // namespace

std::string ConfigChange::summary() const {
  auto list = [](const std::vector<std::string>& v) {
    return v.empty() ? std::string() : fmt::format(" ({})", fmt::join(v, ", "));
  };
  std::string out =
      fmt::format("probes: {} added{}, {} removed{}, {} changed{}", added.size(), list(added),
                  removed.size(), list(removed), changed.size(), list(changed));
  if (!other.empty()) out += fmt::format("; also {}", fmt::join(other, ", "));
  return out;
}

ConfigChange diff_config(const config::Config& running, const config::Config& next) {
  ConfigChange c;
  const config::Config was = restart_part(running);
  const config::Config now = restart_part(next);
  if (was != now) {
    auto& r = c.needs_restart;
    name_restart(r, was.store, now.store, "[store]", {{"store.id", was.store.id != now.store.id}});
    name_restart(r, was.agent, now.agent, "[agent]",
                 {{"agent.data_dir", was.agent.data_dir != now.agent.data_dir},
                  {"agent.control_socket", was.agent.control_socket != now.agent.control_socket},
                  {"agent.retention", was.agent.retention != now.agent.retention},
                  {"agent.max_db_size", was.agent.max_db_bytes != now.agent.max_db_bytes}});
    name_restart(r, was.sync, now.sync, "[sync]");
    name_restart(r, was.notify, now.notify, "[[notify]]");
    // A section none of these is (one added to Config since).
    if (r.empty()) r.emplace_back("a section that needs a restart");
  }

  std::map<std::string, const config::ProbeConfig*> before;
  for (const auto& p : running.probes) before[p.name] = &p;
  std::set<std::string> after;
  for (const auto& p : next.probes) {
    after.insert(p.name);
    auto it = before.find(p.name);
    if (it == before.end()) {
      c.added.push_back(p.name);
      continue;
    }
    const config::ProbeConfig& old = *it->second;
    const auto* old_rem = remediation_of(running, old);
    const auto* new_rem = remediation_of(next, p);
    const bool rem_same =
        (old_rem == nullptr && new_rem == nullptr) ||
        (old_rem != nullptr && new_rem != nullptr && unplaced(*old_rem) == unplaced(*new_rem));
    if (check_part(old) != check_part(p)) c.rescheduled.insert(p.name);
    if (!rem_same) c.remediation_changed.insert(p.name);
    if (unplaced(old) != unplaced(p) || !rem_same) c.changed.push_back(p.name);
  }
  for (const auto& p : running.probes) {
    if (!after.contains(p.name)) c.removed.push_back(p.name);
  }

  if (!same_unplaced(running.remediations, next.remediations)) {
    c.other.emplace_back("remediations");
  }
  if (!same_unplaced(running.silences, next.silences)) c.other.emplace_back("silences");
  if (running.incidents != next.incidents) c.other.emplace_back("incidents");
  for (const RunTimeKey& k : kRunTimeKeys) {
    if (k.differs(running, next)) c.other.emplace_back(k.name);
  }
  return c;
}

ReloadPreflight::ReloadPreflight(boost::asio::any_io_executor executor,
                                 std::vector<std::string> command, Millis timeout)
    : executor_(std::move(executor)), command_(std::move(command)), timeout_(timeout) {}

ReloadPreflight::~ReloadPreflight() {
  cancel();
}

std::vector<std::string> ReloadPreflight::check_command(const config::Config& running) {
  std::vector<std::string> argv = {"/proc/self/exe"};
  if (!running.files.empty()) {
    argv.insert(argv.end(), {"--config", running.files.front().string()});
  }
  if (!running.conf_dir.empty()) argv.insert(argv.end(), {"--conf-dir", running.conf_dir.string()});
  argv.insert(argv.end(), {"config", "check"});
  return argv;
}

void ReloadPreflight::run(Done done) {
  if (running_) {
    queued_ = std::move(done);
    return;
  }
  start(std::move(done));
}

void ReloadPreflight::cancel() {
  process_.cancel();
  running_ = false;
  queued_.reset();
}

void ReloadPreflight::start(Done done) {
  running_ = true;
  os::ProcessSpec spec;
  spec.argv = command_;
  spec.timeout = timeout_;
  // Only whether it ends well matters; its diagnostics are the daemon's own
  // load's. A config with many errors may print a lot: read it all.
  spec.output_cap = 4 * 1024;
  spec.drain_limit = std::size_t{256} << 20;
  process_ = os::Process::start(executor_, std::move(spec),
                                [this, done = std::move(done)](os::ProcessResult r) {
                                  running_ = false;
                                  done(verdict(r));
                                  if (queued_ && !running_) {
                                    Done next = std::move(*queued_);
                                    queued_.reset();
                                    start(std::move(next));
                                  }
                                });
}

namespace {

/// The first line of a child's stderr, for a log line.
std::string printable(const std::string& err) {
  std::string line = err.substr(0, err.find('\n')).substr(0, 200);
  for (char& c : line) {
    if (static_cast<unsigned char>(c) < 0x20) c = ' ';
  }
  return line.empty() ? std::string("no message") : line;
}

/// This binary cannot be run here (no /proc, a seccomp filter, an emulator
/// without binfmt_misc): refusing every reload would leave the store without
/// one, so the daemon reads the config itself, as before this check, and
/// says so. The pre-scan of config/prescan.h still bounds what it parses.
std::optional<std::string> unchecked(const std::string& why) {
  log::warn(
      "SIGHUP: cannot check the new config in a child process first ({}); reading it in the "
      "daemon without that check",
      why);
  return std::nullopt;
}

}  // namespace

std::optional<std::string> ReloadPreflight::verdict(const os::ProcessResult& r) {
  using Outcome = os::ProcessResult::Outcome;
  static constexpr std::string_view kWhat = "checking the new config in a child process";
  static constexpr std::string_view kSee =
      "the daemon did not load it; `storewatch config check` shows what the child did";
  switch (r.outcome) {
    case Outcome::exited:
      // config check: 0 valid, 2 errors (the daemon's own load reports them).
      if (r.exit_code == 0 || r.exit_code == 2) return std::nullopt;
      // 127: the exec failed in the child (how posix_spawn under qemu-user
      // says it). `config check` never exits so.
      if (r.exit_code == 127) return unchecked(fmt::format("exit code 127: {}", printable(r.err)));
      return fmt::format("{}: `config check` {}, not 0 or 2; {}", kWhat, r.describe(), kSee);
    case Outcome::signalled:
      return fmt::format("{}: `config check` crashed ({}); {}", kWhat, r.describe(), kSee);
    case Outcome::timed_out:
      return fmt::format("{}: `config check` {}; {}", kWhat, r.describe(), kSee);
    case Outcome::flooded:
      return fmt::format("{}: `config check` printed more than 256 MB; {}", kWhat, kSee);
    case Outcome::spawn_failed: return unchecked(r.error);
  }
  return std::string(kWhat);
}

}  // namespace storewatch::agent
