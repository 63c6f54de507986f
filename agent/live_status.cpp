#include "agent/live_status.h"

#include <unistd.h>

#include <fmt/format.h>

#include "agent/status.h"

namespace storewatch::agent {

using nlohmann::json;

json ConfigState::to_json(const std::vector<std::filesystem::path>& files) const {
  json f = json::array();
  for (const auto& p : files) f.push_back(p.string());
  return json{{"files", std::move(f)},
              {"hash", hash},
              {"loaded_at", format_rfc3339(loaded_at)},
              {"reloads", reloads},
              {"refused", refused},
              {"last_reload_at", last_reload_at ? json(format_rfc3339(*last_reload_at)) : json()},
              {"last_reload_error", last_error},
              {"last_change", last_change}};
}

json writer_json(const StoreWriter::Health& h, std::chrono::steady_clock::time_point now) {
  return json{
      {"backlog", h.backlog},
      {"incident_changes", h.incident_changes},
      {"coalesced", h.coalesced},
      {"dropped", h.dropped},
      {"dead_letters", h.dead_letters},
      {"disk_full", h.disk_full},
      {"reserve_released", h.reserve_released},
      {"last_error", h.last_error},
      {"waiting_for_s",
       h.backlog > 0 ? std::chrono::duration<double>(now - h.progress_at).count() : 0.0},
      {"failing_for_s",
       h.failing_since
           ? json(std::chrono::duration_cast<std::chrono::seconds>(now - *h.failing_since).count())
           : json()},
  };
}

json commands_json(const HqCommands::Stats& s) {
  return json{{"received", s.received},
              {"applied", s.applied},
              {"refused", s.refused},
              {"duplicates", s.duplicates}};
}

json LiveStatus::document() const {
  const config::Config& cfg = *p_.config;
  json probes = json::array();
  {
    // The scheduler's timers are on the steady clock: now + how far ahead.
    const SystemClock clock;
    const WallTime wall = clock.wall_now();
    const auto steady = std::chrono::steady_clock::now();
    for (const auto& p : p_.engine.probes()) {
      std::optional<WallTime> next;
      if (auto due = p_.scheduler.next_due(p.name)) {
        const auto ahead = std::chrono::ceil<Millis>(*due - steady);
        next = wall + std::max(ahead, Millis(0));
      }
      probes.push_back(probe_json(p, next));
    }
  }
  sync::PublisherStats ps = p_.publisher ? p_.publisher->stats() : sync::PublisherStats{};
  if (!p_.publisher) {
    ps.last_error = p_.sync_error;
    ps.queued = p_.outbox.queued();
    ps.hq_acked_seq = p_.outbox.hq_acked_seq();
  }
  const auto& notifier = p_.notifier;
  return json{
      {"store", cfg.store.id},
      {"probes", std::move(probes)},
      {"sync",
       [&] {
         json s = sync_json(cfg, ps, SystemClock().wall_now());
         s["commands"] = commands_json(p_.hq_commands.stats());
         s["client_cert"] = p_.cert_watch.to_json();
         return s;
       }()},
      {"incidents", {{"open", p_.outbox.open_by_severity()}}},
      {"notify", notifier ? json{{"channels", cfg.notify.size()},
                                 {"sent", notifier->stats().sent},
                                 {"failed_attempts", notifier->stats().failed_attempts},
                                 {"dropped", notifier->stats().dropped},
                                 {"last_error", notifier->stats().last_error}}
                          : json{{"channels", 0}}},
      {"agent",
       {{"running", true},
        {"pid", ::getpid()},
        {"version", STOREWATCH_VERSION},
        {"started_at", format_rfc3339(p_.started)},
        {"config", p_.config_state.to_json(cfg.files)},
        {"store_backlog", p_.writer.backlog()},
        {"store_writer", writer_json(p_.writer.health(), std::chrono::steady_clock::now())},
        {"storage", p_.storage.to_json()},
        {"schedule", schedule_json(p_.scheduler.schedule_stats())}}},
  };
}

std::string LiveStatus::line() const {
  int failing = 0;
  auto probes = p_.engine.probes();
  for (const auto& p : probes) failing += p.level == CheckLevel::hard_fail;
  std::string line =
      fmt::format("{} probes, {} failing; {} open incidents; sync {}, {} queued", probes.size(),
                  failing, p_.engine.unresolved().size(),
                  p_.publisher && p_.publisher->stats().connected ? "connected" : "offline",
                  p_.outbox.queued());
  if (!p_.config_state.last_error.empty()) line += "; config reload refused (see the log)";
  return line;
}

}  // namespace storewatch::agent
