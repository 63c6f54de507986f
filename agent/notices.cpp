#include "agent/notices.h"

#include <fmt/format.h>
#include <boost/asio/io_context.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>

#include "sync/notifier.h"

namespace storewatch::agent {

using config::NotifyOn;

std::optional<NotifyOn> transition_of(const Incident& inc, const IncidentEvent& ev) {
  const std::string& t = ev.type;
  if (t == "opened" || t == "reopened") return NotifyOn::opened;
  if (t == "escalated") return NotifyOn::escalated;
  if (t == "acknowledged") return NotifyOn::acknowledged;
  if (t == "flapping_started") return NotifyOn::flapping_started;
  if (t == "flapping_stopped") return NotifyOn::flapping_stopped;
  if (t == "resolved") return NotifyOn::resolved;
  if (t == "updated" && !inc.in_maintenance && !inc.suppressed_by) {
    // The engine says so when a maintenance ends on a probe that still fails.
    auto reason = ev.extra.find("reason");
    if (reason != ev.extra.end() && reason->is_string() &&
        reason->get_ref<const std::string&>().starts_with("maintenance ended")) {
      return NotifyOn::opened;
    }
  }
  return std::nullopt;
}

std::string notice_body(const config::Config& cfg, NotifyOn kind, const Incident& inc,
                        const IncidentEvent& ev) {
  nlohmann::json event = ev.extra.is_object() ? ev.extra : nlohmann::json::object();
  event["uid"] = ev.uid;
  event["type"] = ev.type;
  event["at"] = format_rfc3339(ev.at);
  event["actor"] = ev.actor;
  return nlohmann::json{{"kind", config::to_string(kind)},
                        {"store", {{"id", cfg.store.id}, {"name", cfg.store.name}}},
                        {"incident", inc.to_json()},
                        {"event", std::move(event)}}
      .dump();
}

std::vector<sync::NoticeRow> notices_for(const config::Config& cfg, const Incident& inc,
                                         const IncidentEvent& ev, bool silenced) {
  std::vector<sync::NoticeRow> out;
  if (cfg.notify.empty()) return out;
  const std::optional<NotifyOn> kind = transition_of(inc, ev);
  if (!kind) return out;
  const bool resolution = *kind == NotifyOn::resolved;
  if (!resolution && (inc.suppressed_by || inc.in_maintenance || silenced)) return out;
  const config::ProbeConfig* probe = cfg.find_probe(inc.probe);
  static const std::map<std::string, std::string> kNoLabels;
  const auto& labels = probe != nullptr ? probe->labels : kNoLabels;
  std::string body;
  for (const config::NotifyConfig& n : cfg.notify) {
    if ((n.on & static_cast<unsigned>(*kind)) == 0) continue;
    // Severity is ordered critical (0) … info (4).
    if (static_cast<int>(inc.severity) > static_cast<int>(n.min_severity)) continue;
    if (!n.match.empty() &&
        std::none_of(n.match.begin(), n.match.end(),
                     [&](const config::ProbeMatch& m) { return m.matches(inc.probe, labels); })) {
      continue;
    }
    // A flapping incident is told once, by flapping_started.
    if (*kind == NotifyOn::opened && inc.flapping &&
        (n.on & static_cast<unsigned>(NotifyOn::flapping_started)) != 0) {
      continue;
    }
    if (body.empty()) body = notice_body(cfg, *kind, inc, ev);
    out.push_back(sync::NoticeRow{n.name, std::string(config::to_string(*kind)), body,
                                  /*only_if_opening_notified=*/resolution,
                                  /*wait_ms=*/n.group_wait.count()});
  }
  return out;
}

}  // namespace storewatch::agent

namespace storewatch::agent {

int notify_test(const config::Config& cfg, const std::string& channel, bool as_json) {
  const config::NotifyConfig* n = cfg.find_notify(channel);
  if (n == nullptr) {
    std::string known;
    for (const auto& c : cfg.notify) known += (known.empty() ? "" : ", ") + c.name;
    fmt::print(stderr, "storewatch: no [[notify]] channel \"{}\" ({})\n", channel,
               known.empty() ? "none is configured" : "known: " + known);
    return 2;
  }
  auto secrets = sync::load_secrets(*n);
  const auto start = std::chrono::steady_clock::now();
  sync::Outcome outcome;
  if (!secrets) {
    outcome = sync::Outcome{sync::Outcome::Kind::fatal, secrets.error().message, std::nullopt};
  } else {
    const WallTime now = SystemClock().wall_now();
    Incident inc;
    inc.uid = new_uid(now);
    inc.dedup_key = fmt::format("{}:storewatch:test", cfg.store.id);
    inc.probe = "storewatch";
    inc.condition = "test";
    inc.severity = config::Severity::info;
    inc.priority = "P5";
    inc.t_fault = now;
    inc.t_detect = now;
    inc.summary =
        fmt::format("Test notice from storewatch for channel {}: nothing is wrong", n->name);
    IncidentEvent ev{new_uid(now), "test", now, "cli", nlohmann::json::object()};
    nlohmann::json notice = nlohmann::json::parse(notice_body(cfg, NotifyOn::opened, inc, ev));
    notice["kind"] = "test";
    boost::asio::io_context io(1);
    bool finished = false;
    sync::send_notice(io, *n, *secrets, {notice}, [&](sync::Outcome o) {
      outcome = std::move(o);
      finished = true;
    });
    io.run();
    if (!finished) outcome = sync::Outcome{sync::Outcome::Kind::retry, "no answer", std::nullopt};
  }
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::steady_clock::now() - start)
                      .count();
  const bool ok = outcome.kind == sync::Outcome::Kind::sent;
  if (as_json) {
    nlohmann::json j{{"channel", n->name},
                     {"type", config::to_string(n->type)},
                     {"sent", ok},
                     {"detail", outcome.detail},
                     {"elapsed_ms", ms}};
    if (outcome.retry_after) j["retry_after_ms"] = outcome.retry_after->count();
    fmt::print("{}\n", j.dump(2));
  } else if (ok) {
    fmt::print("sent a test notice to {} ({}): {} in {} ms\n", n->name, config::to_string(n->type),
               outcome.detail, ms);
  } else {
    fmt::print("FAILED to send a test notice to {} ({}): {} ({} ms){}\n", n->name,
               config::to_string(n->type), outcome.detail, ms,
               outcome.kind == sync::Outcome::Kind::retry ? "; the daemon would retry this" : "");
  }
  return ok ? 0 : 1;
}

}  // namespace storewatch::agent
