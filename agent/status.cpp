#include "agent/status.h"

#include <cmath>

#include <algorithm>
#include <map>

namespace storewatch::agent {

using nlohmann::json;

json probe_json(const ProbeView& p, std::optional<WallTime> next_check) {
  return json{
      {"name", p.name},
      {"type", p.type},
      {"state", to_string(p.level)},
      {"last_check", p.last_check ? json(format_rfc3339(*p.last_check)) : json(nullptr)},
      {"latency_ms", p.last_check ? json(p.latency_ms) : json(nullptr)},
      {"message", p.message},
      {"last_status", p.last_status},
      {"flapping", p.flapping},
      {"flap_percent", std::round(p.flap_percent * 10) / 10},
      {"held", p.held},
      {"pending", p.pending},
      {"next_check", next_check ? json(format_rfc3339(*next_check)) : json(nullptr)},
  };
}

json schedule_json(const ScheduleStats& s) {
  auto ms = [](std::chrono::microseconds us) { return static_cast<double>(us.count()) / 1000.0; };
  return json{
      {"checks", s.checks},       {"skipped", s.skipped},     {"queued", s.queued},
      {"window", s.window},       {"late_p50_ms", ms(s.p50)}, {"late_p99_ms", ms(s.p99)},
      {"late_max_ms", ms(s.max)},
  };
}

namespace {

json time_or_null(const std::optional<WallTime>& t) {
  return t ? json(format_rfc3339(*t)) : json(nullptr);
}

json age_s(const std::optional<WallTime>& t, WallTime now) {
  if (!t) return nullptr;
  auto ms = std::max<std::int64_t>((now - *t).count(), 0);
  return static_cast<double>(ms) / 1000.0;
}

}  // namespace

json sync_json(const config::Config& config, const sync::PublisherStats& s, WallTime now) {
  return json{
      {"daemon_running", true},
      {"connected", s.connected},
      {"since", time_or_null(s.since)},
      {"broker", config.sync.broker},
      {"session", s.session},
      {"last_puback", time_or_null(s.last_puback)},
      {"last_ack", time_or_null(s.last_ack)},
      {"hq_acked_seq", s.hq_acked_seq},
      {"sent_seq", s.sent_seq},
      {"inflight_batches", s.inflight_batches},
      {"queued", s.queued},
      {"oldest_queued_at", time_or_null(s.oldest_queued_at)},
      {"oldest_queued_age_s", age_s(s.oldest_queued_at, now)},
      {"reconnect_attempts", s.reconnect_attempts},
      {"connects", s.connects},
      {"last_error", s.last_error},
      {"last_error_at", time_or_null(s.last_error_at)},
  };
}

json client_cert_json(const config::SyncConfig& sync, const std::optional<sync::CertInfo>& info,
                      const std::string& error, WallTime now) {
  if (sync.cert_file.empty()) return nullptr;
  json out{{"file", sync.cert_file.string()},
           {"subject", nullptr},
           {"not_after", nullptr},
           {"days_left", nullptr},
           {"warn_days", sync.cert_warn_days},
           {"warning", nullptr},
           {"error", error}};
  if (info) {
    out["subject"] = info->subject;
    out["not_after"] = format_rfc3339(info->not_after);
    out["days_left"] = sync::days_left(info->not_after, now);
    if (auto w = sync::expiry_problem(*info, sync.cert_warn_days, now)) out["warning"] = *w;
  }
  return out;
}

Result<json> sync_json_from_store(const config::Config& config, Store& store, WallTime now) {
  auto queued = store.queued();
  if (!queued) return queued.error();
  auto acked = store.sync_value(kHqAckedSeq);
  if (!acked) return acked.error();
  auto session = store.sync_value(kSession);
  if (!session) return session.error();
  std::optional<WallTime> oldest;
  if (*queued > 0) {
    auto first = store.events_after(*acked, 1);
    if (!first) return first.error();
    if (!first->empty()) oldest = parse_rfc3339(first->front().at);
  }
  return json{
      {"daemon_running", false},
      {"connected", false},
      {"since", nullptr},
      {"broker", config.sync.broker},
      {"session", *session},
      {"last_puback", nullptr},
      {"last_ack", nullptr},
      {"hq_acked_seq", *acked},
      {"sent_seq", nullptr},
      {"inflight_batches", nullptr},
      {"queued", *queued},
      {"oldest_queued_at", time_or_null(oldest)},
      {"oldest_queued_age_s", age_s(oldest, now)},
      {"reconnect_attempts", nullptr},
      {"connects", nullptr},
      {"last_error", ""},
      {"last_error_at", nullptr},
      {"client_cert",
       [&] {
         if (config.sync.cert_file.empty()) return json(nullptr);
         auto cert = sync::read_cert(config.sync.cert_file);
         return cert ? client_cert_json(config.sync, *cert, "", now)
                     : client_cert_json(config.sync, std::nullopt, cert.error().message, now);
       }()},
  };
}

Result<json> status_from_store(const config::Config& config, Store& store) {
  auto rows = store.probe_states();
  if (!rows) return rows.error();
  std::map<std::string, const ProbeStateRow*> by_name;
  for (const auto& r : *rows) by_name[r.probe] = &r;
  json probes = json::array();
  for (const auto& p : config.probes) {
    ProbeView v;
    v.name = p.name;
    v.type = p.type;
    if (auto it = by_name.find(p.name); it != by_name.end()) {
      const ProbeStateRow& r = *it->second;
      v.level = r.level;
      v.last_check = r.last_check;
      v.last_status = r.last_status;
      v.latency_ms = r.latency_ms;
      v.message = r.message;
    }
    probes.push_back(probe_json(v));
  }
  auto sync = sync_json_from_store(config, store, SystemClock().wall_now());
  if (!sync) return sync.error();
  auto open = store.open_by_severity();
  if (!open) return open.error();
  return json{
      {"store", config.store.id},
      {"probes", std::move(probes)},
      {"sync", std::move(*sync)},
      {"incidents", {{"open", *open}}},
      {"agent", {{"running", false}, {"version", STOREWATCH_VERSION}}},
  };
}

json probe_result_json(const config::ProbeConfig& p, const probes::ProbeResult& r) {
  json metrics = json::object();
  for (const auto& [label, value] : r.metrics) metrics[label] = value;
  return json{{"name", p.name},
              {"type", p.type},
              {"status", probes::to_string(r.status)},
              {"latency_ms", static_cast<double>(r.latency.count()) / 1000.0},
              {"message", r.message},
              {"metrics", std::move(metrics)}};
}

}  // namespace storewatch::agent
