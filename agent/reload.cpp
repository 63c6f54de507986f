#include "agent/reload.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <map>
#include <utility>

#include "base/log.h"

namespace storewatch::agent {

namespace {

std::vector<std::string> texts(const std::vector<config::ProbeMatch>& m) {
  std::vector<std::string> out;
  for (const auto& x : m) out.push_back(x.text());
  return out;
}

/// What the scheduler runs: a difference replaces the probe's check.
bool same_check(const config::ProbeConfig& a, const config::ProbeConfig& b) {
  return a.type == b.type && a.interval == b.interval && a.timeout == b.timeout &&
         a.options == b.options;
}

/// Everything of a [[probe]] but where it was written.
bool same_probe(const config::ProbeConfig& a, const config::ProbeConfig& b) {
  return same_check(a, b) && a.fail_after == b.fail_after && a.recover_after == b.recover_after &&
         a.severity == b.severity && a.depends_on == b.depends_on && a.labels == b.labels &&
         a.remediation == b.remediation;
}

bool same_remediation(const config::RemediationConfig& a, const config::RemediationConfig& b) {
  return a.name == b.name && a.type == b.type && a.command == b.command && a.unit == b.unit &&
         a.method == b.method && a.url == b.url && a.expect_status == b.expect_status &&
         a.timeout == b.timeout && a.max_attempts == b.max_attempts && a.window == b.window &&
         a.backoff == b.backoff && a.backoff_max == b.backoff_max &&
         a.verify_after == b.verify_after &&
         a.only_outside_trading_hours == b.only_outside_trading_hours &&
         a.precondition == b.precondition && a.escalate_severity == b.escalate_severity;
}

bool same_remediations(const std::vector<config::RemediationConfig>& a,
                       const std::vector<config::RemediationConfig>& b) {
  return std::equal(a.begin(), a.end(), b.begin(), b.end(), same_remediation);
}

bool same_silences(const std::vector<config::SilenceConfig>& a,
                   const std::vector<config::SilenceConfig>& b) {
  return std::equal(a.begin(), a.end(), b.begin(), b.end(), [](const auto& x, const auto& y) {
    return x.match.text() == y.match.text() && x.schedule.text() == y.schedule.text() &&
           x.reason == y.reason;
  });
}

bool same_notify(const config::NotifyConfig& a, const config::NotifyConfig& b) {
  return a.name == b.name && a.type == b.type && a.url_file == b.url_file &&
         a.secret_file == b.secret_file && a.smtp_url == b.smtp_url && a.starttls == b.starttls &&
         a.from == b.from && a.to == b.to && a.username == b.username &&
         a.password_file == b.password_file && a.min_severity == b.min_severity &&
         texts(a.match) == texts(b.match) && a.on == b.on && a.group_wait == b.group_wait &&
         a.rate_limit == b.rate_limit && a.proxy == b.proxy && a.ca_file == b.ca_file &&
         a.timeout == b.timeout && a.notify_ttl == b.notify_ttl;
}

/// The [[remediation]] a probe names, or nullptr.
const config::RemediationConfig* remediation_of(const config::Config& c,
                                                const config::ProbeConfig& p) {
  return p.remediation.empty() ? nullptr : c.find_remediation(p.remediation);
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
  auto restart_if = [&c](bool differs, const char* key) {
    if (differs) c.needs_restart.emplace_back(key);
  };
  restart_if(running.store.id != next.store.id, "store.id");
  restart_if(running.agent.data_dir != next.agent.data_dir, "agent.data_dir");
  restart_if(running.agent.control_socket != next.agent.control_socket, "agent.control_socket");
  restart_if(running.agent.retention != next.agent.retention, "agent.retention");
  restart_if(running.agent.max_db_bytes != next.agent.max_db_bytes, "agent.max_db_size");
  const config::SyncConfig& s = running.sync;
  const config::SyncConfig& n = next.sync;
  restart_if(s.broker != n.broker, "sync.broker");
  restart_if(s.topic_prefix != n.topic_prefix, "sync.topic_prefix");
  restart_if(s.ca_file != n.ca_file, "sync.ca_file");
  restart_if(s.cert_file != n.cert_file, "sync.cert_file");
  restart_if(s.key_file != n.key_file, "sync.key_file");
  restart_if(s.username != n.username, "sync.username");
  restart_if(s.password_file != n.password_file, "sync.password_file");
  restart_if(s.keepalive != n.keepalive, "sync.keepalive");
  restart_if(s.reconnect_max != n.reconnect_max, "sync.reconnect_max");
  restart_if(s.batch_max_events != n.batch_max_events, "sync.batch_max_events");
  restart_if(s.inflight_batches != n.inflight_batches, "sync.inflight_batches");
  restart_if(s.ack_timeout != n.ack_timeout, "sync.ack_timeout");
  restart_if(s.cert_warn_days != n.cert_warn_days, "sync.cert_warn_days");
  restart_if(!std::equal(running.notify.begin(), running.notify.end(), next.notify.begin(),
                         next.notify.end(), same_notify),
             "[[notify]]");

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
        (old_rem != nullptr && new_rem != nullptr && same_remediation(*old_rem, *new_rem));
    if (!same_check(old, p)) c.rescheduled.insert(p.name);
    if (!rem_same) c.remediation_changed.insert(p.name);
    if (!same_probe(old, p) || !rem_same) c.changed.push_back(p.name);
  }
  for (const auto& p : running.probes) {
    if (!after.contains(p.name)) c.removed.push_back(p.name);
  }

  if (!same_remediations(running.remediations, next.remediations))
    c.other.emplace_back("remediations");
  if (!same_silences(running.silences, next.silences)) c.other.emplace_back("silences");
  const auto& ri = running.incidents;
  const auto& ni = next.incidents;
  if (ri.reopen_window != ni.reopen_window || ri.close_after != ni.close_after ||
      ri.flap_high != ni.flap_high || ri.flap_low != ni.flap_low) {
    c.other.emplace_back("incidents");
  }
  if (running.store.name != next.store.name) c.other.emplace_back("store.name");
  if (running.store.timezone != next.store.timezone) c.other.emplace_back("store.timezone");
  if (running.store.trading_hours != next.store.trading_hours) {
    c.other.emplace_back("store.trading_hours");
  }
  if (running.agent.log_level != next.agent.log_level) c.other.emplace_back("agent.log_level");
  if (running.agent.max_concurrent_checks != next.agent.max_concurrent_checks) {
    c.other.emplace_back("agent.max_concurrent_checks");
  }
  return c;
}

void apply_config(config::Config& running, config::Config&& next) {
  running.store.name = std::move(next.store.name);
  running.store.timezone = std::move(next.store.timezone);
  running.store.trading_hours = std::move(next.store.trading_hours);
  running.store.trading = std::move(next.store.trading);
  running.store.where = std::move(next.store.where);
  running.agent.log_level = next.agent.log_level;
  running.agent.max_concurrent_checks = next.agent.max_concurrent_checks;
  running.incidents = next.incidents;
  running.probes = std::move(next.probes);
  running.remediations = std::move(next.remediations);
  running.silences = std::move(next.silences);
  running.files = std::move(next.files);
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
