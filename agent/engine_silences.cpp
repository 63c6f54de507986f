// Engine: silences — scheduled ([[silence]]) and ad-hoc — and the end of maintenance.
#include "agent/engine.h"

#include <fmt/format.h>

#include <map>

#include "agent/engine_internal.h"
#include "base/log.h"
#include "base/short_uid.h"

namespace storewatch::agent {

using engine_internal::describe;
using engine_internal::kConditionDown;
using nlohmann::json;

void Engine::tick_maintenance() {
  std::erase_if(silences_, [&](const SilenceRow& s) { return s.ends_at <= clock_.wall_now(); });
  std::vector<std::string> ended;
  for (const auto& [key, inc] : unresolved_) {
    if (inc.in_maintenance && inc.condition == kConditionDown && probes_.contains(inc.probe) &&
        !silenced(inc.probe)) {
      ended.push_back(inc.probe);
    }
  }
  for (const std::string& probe : ended) {
    Incident* inc = unresolved_of(probe);
    Runtime& r = rt(probe);
    if (r.check.level() == CheckLevel::hard_fail || r.flapping) {
      inc->in_maintenance = false;
      inc->priority = priority_now(inc->severity);
      log::warn("incident {}: maintenance ended and {} still fails", inc->uid, probe);
      emit(*inc, "updated",
           json{{"reason", "maintenance ended; still failing"}, {"message", r.message}});
      maybe_remediate(probe);
    } else {
      resolve(*inc, "agent", "", false);
    }
  }
}

std::optional<std::string> Engine::silenced(const std::string& probe) const {
  const config::ProbeConfig* pc = config_->find_probe(probe);
  static const std::map<std::string, std::string> kNoLabels;
  const auto& labels = pc != nullptr ? pc->labels : kNoLabels;
  const WallTime now = clock_.wall_now();
  for (const auto& s : config_->silences) {
    if (s.match.matches(probe, labels) && s.schedule.contains(now, tz_)) {
      return fmt::format("{} ({}): {}", s.schedule.text(), s.match.text(), s.reason);
    }
  }
  for (const auto& s : silences_) {
    if (s.starts_at > now || s.ends_at <= now) continue;
    auto m = config::ProbeMatch::parse(s.match);
    if (m && m->matches(probe, labels)) {
      return fmt::format("silence {} until {} ({}): {}", s.uid.substr(0, 8),
                         format_rfc3339(s.ends_at), s.match, s.reason);
    }
  }
  return std::nullopt;
}

Result<SilenceRow> Engine::add_silence(const std::string& match, Millis length,
                                       const std::string& reason, const std::string& actor) {
  std::string why;
  auto m = config::ProbeMatch::parse(match, &why);
  if (!m) return Error{why};
  std::vector<std::string> hits;
  for (const auto& p : config_->probes) {
    if (m->matches(p.name, p.labels)) hits.push_back(p.name);
  }
  if (hits.empty()) {
    return Error{fmt::format("--match \"{}\" matches none of the {} configured probes", match,
                             config_->probes.size())};
  }
  if (length <= Millis(0)) return Error{"--for must be a positive duration"};
  if (reason.empty()) return Error{"--reason is required: say why the probes are silenced"};
  const WallTime now = clock_.wall_now();
  SilenceRow row;
  row.uid = new_uid(now);
  row.match = match;
  row.starts_at = now;
  row.ends_at = now + length;
  row.reason = reason;
  row.created_by = actor;
  sink_.submit(row);
  silences_.push_back(row);
  log::info("silence {} by {}: {} for {} ({} probes): {}", row.uid, actor, match, describe(length),
            hits.size(), reason);
  return row;
}

Result<SilenceRow> Engine::remove_silence(const std::string& uid_or_prefix,
                                          const std::string& actor) {
  std::vector<std::vector<SilenceRow>::iterator> found;
  for (auto it = silences_.begin(); it != silences_.end(); ++it) {
    if (it->uid.starts_with(uid_or_prefix)) found.push_back(it);
  }
  if (uid_or_prefix.empty() || found.empty()) {
    return Error{fmt::format("no silence in force with id {}", uid_or_prefix)};
  }
  if (found.size() > 1) {
    std::vector<std::vector<std::string>> rows;
    for (const auto& it : found) {
      const std::string until = format_rfc3339(it->ends_at);
      rows.push_back({it->uid, it->match, until.substr(0, 10) + " " + until.substr(11, 8) + "Z",
                      it->created_by});
    }
    return Error{ambiguous_uid_message(uid_or_prefix, "silences", {"ID", "MATCH", "UNTIL", "BY"},
                                       std::move(rows), 0)};
  }
  SilenceRow row = *found.front();
  silences_.erase(found.front());
  row.removed_at = clock_.wall_now();
  row.removed_by = actor;
  sink_.submit(row);
  tick_maintenance();
  return row;
}

}  // namespace storewatch::agent
