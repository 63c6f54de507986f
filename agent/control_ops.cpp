#include "agent/control_ops.h"

#include <fmt/format.h>

#include "base/log.h"

namespace storewatch::agent {

using nlohmann::json;

namespace {

constexpr std::size_t kMaxActorName = 64;

json fail(std::string why) {
  return json{{"ok", false}, {"error", std::move(why)}};
}

std::string string_field(const json& request, const char* key) {
  auto it = request.find(key);
  return it != request.end() && it->is_string() ? it->get<std::string>() : std::string();
}

/// The one incident `prefix` names: the engine's (the newest changes may
/// not be committed yet), then the database's. A whole uid names its
/// incident; a start of uids that names several is an error listing them.
Result<std::optional<Incident>> find_incident(Engine& engine, Store& reader,
                                              const std::string& prefix) {
  if (prefix.empty()) return Error{"give the incident's uid (or its first characters)"};
  auto held = engine.uids_with_prefix(prefix);
  auto stored = reader.incidents_with_prefix(prefix, kMaxCandidates);
  if (!stored) return stored.error();
  if (!stored->empty() && stored->front().uid == prefix) {
    return std::optional<Incident>(stored->front());  // a whole uid sorts first
  }
  auto count = reader.count_with_prefix(prefix);
  if (!count) return count.error();
  // The engine's that the database does not have yet: opened a moment ago.
  std::vector<Incident> unwritten;
  for (const auto& uid : held) {
    auto in_db = reader.incident(uid);
    if (!in_db) return in_db.error();
    if (*in_db) continue;
    Incident placeholder;
    placeholder.uid = uid;
    placeholder.probe = "(being written)";
    unwritten.push_back(std::move(placeholder));
  }
  const auto total = static_cast<std::size_t>(*count) + unwritten.size();
  if (total == 0) {
    return Error{fmt::format("no incident {} (see `storewatch incidents --all`)", prefix)};
  }
  if (total == 1) {
    return std::optional<Incident>(stored->empty() ? unwritten.front() : stored->front());
  }
  std::vector<Incident> candidates = std::move(*stored);
  for (auto& u : unwritten) {
    if (candidates.size() < static_cast<std::size_t>(kMaxCandidates)) {
      candidates.push_back(std::move(u));
    }
  }
  return Error{ambiguous_incident_message(prefix, candidates, total - candidates.size())};
}

}  // namespace

Result<std::string> actor_named(std::string_view prefix, const std::string& name) {
  bool ok = !name.empty() && name.size() <= kMaxActorName;
  for (unsigned char c : name) {
    if (c <= 0x20 || c == 0x7f || c == '"' || c == '\\') ok = false;
  }
  if (!ok) {
    return Error{
        fmt::format("the name (--by) must be 1 to {} characters without spaces", kMaxActorName)};
  }
  return std::string(prefix) + name;
}

json Actor::provenance() const {
  if (sudo_user.empty()) return json::object();
  return json{{"via", "sudo"}, {"sudo_user", sudo_user}};
}

Result<Actor> actor_of(const json& request, const Peer& peer) {
  Actor actor;
  const std::string sudo_user = string_field(request, "sudo_user");
  if (!sudo_user.empty()) {
    if (peer.uid == 0) {
      // The environment of root's process says who ran sudo: only root may
      // speak for someone else.
      if (!actor_named("cli:", sudo_user)) {
        return Error{fmt::format(
            "SUDO_USER ({}) is not a name storewatch can record: 1 to {} characters without "
            "spaces; give yours with --by",
            sudo_user.substr(0, kMaxActorName), kMaxActorName)};
      }
      actor.sudo_user = sudo_user;
    } else {
      log::info("control: {} (uid {}) sent a sudo user ({}); only root's is taken", peer.user,
                peer.uid, sudo_user.substr(0, kMaxActorName));
    }
  }
  std::string by = string_field(request, "by");
  if (by.empty()) by = actor.sudo_user.empty() ? peer.user : actor.sudo_user;
  auto name = actor_named("cli:", by);
  if (!name) return name.error();
  actor.name = std::move(*name);
  return actor;
}

std::string clock_time(WallTime t, WallTime now) {
  const std::string s = format_rfc3339(t);
  const std::string today = format_rfc3339(now).substr(0, 10);
  const std::string hms = s.substr(11, 8) + "Z";
  return s.substr(0, 10) == today ? hms : s.substr(0, 10) + " " + hms;
}

json still_failing_json(const StillFailing& s, WallTime now) {
  std::string failure = s.message.empty() ? std::string("failing") : s.message;
  if (s.at) failure += " at " + clock_time(*s.at, now);
  const std::string when =
      s.checks_to_reopen <= 1
          ? std::string("at the next check")
          : fmt::format("after {} more failed checks (about {})", s.checks_to_reopen,
                        format_duration(s.interval * s.checks_to_reopen));
  return json{{"probe", s.probe},
              {"message", s.message},
              {"at", s.at ? json(format_rfc3339(*s.at)) : json()},
              {"checks_to_reopen", s.checks_to_reopen},
              {"interval_ms", s.interval.count()},
              {"warning", fmt::format("{} still fails ({}); the engine will reopen it {}", s.probe,
                                      failure, when)}};
}

namespace {

/// "incident … is already acknowledged by hq:olga at 12:03:11Z": who and
/// when from its newest acknowledged event (the database's; one not yet
/// committed leaves the time of the incident's t_ack).
Error already_acknowledged(Engine& engine, Store& reader, const std::string& uid,
                           const std::optional<Incident>& stored) {
  const WallTime now = SystemClock().wall_now();
  std::string by;
  std::optional<WallTime> at;
  if (auto events = reader.events_of(uid)) {
    for (const auto& e : *events) {
      if (e.type != "acknowledged") continue;
      json body = json::parse(e.body, nullptr, false);
      by = actor_shown(e.actor, body.is_object() ? body : json::object());
      at = parse_rfc3339(e.at);
    }
  }
  if (!at) {
    for (const auto& [key, inc] : engine.unresolved()) {
      if (inc.uid == uid) at = inc.t_ack;
    }
    if (!at && stored) at = stored->t_ack;
  }
  std::string text = fmt::format("incident {} is already acknowledged", uid);
  if (!by.empty()) text += " by " + by;
  if (at) text += " at " + clock_time(*at, now);
  return Error{text + "; nothing changed", Engine::kAlreadyAcknowledged};
}

}  // namespace

Result<ActionDone> apply_incident_action(Engine& engine, Store& reader, Engine::Action action,
                                         const std::string& incident, bool allow_prefix,
                                         const std::string& actor, const std::string& note,
                                         const ActionOptions& options) {
  if (note.size() > kMaxNote) {
    return Error{fmt::format("the note (--note) is {} bytes; at most {}", note.size(), kMaxNote)};
  }
  if (action == Engine::Action::note && note.empty()) {
    return Error{"a note needs its text (--note TEXT)"};
  }
  auto found = find_incident(engine, reader, incident);
  if (!found) return found.error();
  const std::string uid = (*found)->uid;
  if (!allow_prefix && uid != incident) {
    return Error{fmt::format("no incident {}", incident)};
  }
  ActionDone out;
  if (action == Engine::Action::resolve) {
    out.still_failing = engine.still_failing(uid);
    if (out.still_failing && !options.force) {
      out.done = false;
      if (*found) out.incident = **found;
      for (const auto& [key, inc] : engine.unresolved()) {
        if (inc.uid == uid) out.incident = inc;
      }
      return out;
    }
  }
  auto acted = engine.act(action, uid, actor, note, *found, options.provenance);
  if (!acted) {
    if (acted.error().code == Engine::kAlreadyAcknowledged) {
      return already_acknowledged(engine, reader, uid, *found);
    }
    return acted.error();
  }
  out.incident = std::move(*acted);
  return out;
}

Result<SilenceRow> apply_silence_add(Engine& engine, const std::string& match, Millis length,
                                     const std::string& reason, const std::string& actor) {
  if (length <= Millis(0)) return Error{"the length (--for) must be a positive duration"};
  if (length > kMaxSilence) {
    return Error{fmt::format("a silence lasts at most {} (--for {} asked)",
                             format_duration(kMaxSilence), format_duration(length))};
  }
  if (reason.size() > kMaxNote) {
    return Error{
        fmt::format("the reason (--reason) is {} bytes; at most {}", reason.size(), kMaxNote)};
  }
  return engine.add_silence(match, length, reason, actor);
}

json scheduled_silences_json(const config::Config& config, WallTime now) {
  auto tz = config::TimeZone::locate(config.store.timezone);
  const config::TimeZone zone = tz ? *tz : config::TimeZone::utc();
  json out = json::array();
  for (const auto& s : config.silences) {
    auto next = s.schedule.next_change(now, zone);
    out.push_back(json{{"match", s.match.text()},
                       {"schedule", s.schedule.text()},
                       {"reason", s.reason},
                       {"active", s.schedule.contains(now, zone)},
                       {"next_change", next ? json(format_rfc3339(*next)) : json()}});
  }
  return out;
}

void add_incident_handlers(ControlServer& server, Engine& engine, Store& reader,
                           const RunningConfig& config) {
  server.handle("incident", [&engine, &reader](const json& req, const Peer& peer) {
    auto action = Engine::parse_action(string_field(req, "action"));
    if (!action) return fail("\"action\" must be ack, resolve, close or note");
    auto actor = actor_of(req, peer);
    if (!actor) return fail(actor.error().message);
    ActionOptions options;
    options.provenance = actor->provenance();
    if (auto f = req.find("force"); f != req.end()) {
      if (!f->is_boolean()) return fail("\"force\" must be true or false");
      options.force = f->get<bool>();
    }
    auto done = apply_incident_action(engine, reader, *action, string_field(req, "incident"),
                                      /*allow_prefix=*/true, actor->name, string_field(req, "note"),
                                      options);
    if (!done) return fail(done.error().message);
    const WallTime now = SystemClock().wall_now();
    if (!done->done) {
      json still = still_failing_json(*done->still_failing, now);
      json refused = fail(
          fmt::format("{}. Nothing was changed; resolve it anyway with \"force\": true (storewatch "
                      "resolve --force)",
                      still.value("warning", std::string())));
      refused["still_failing"] = std::move(still);
      refused["incident"] = done->incident.to_json();
      return refused;
    }
    json out{{"incident", done->incident.to_json()}, {"actor", actor->name}};
    out.update(options.provenance);
    if (done->still_failing) out["still_failing"] = still_failing_json(*done->still_failing, now);
    return out;
  });

  server.handle("silence_add", [&engine](const json& req, const Peer& peer) {
    auto actor = actor_of(req, peer);
    if (!actor) return fail(actor.error().message);
    auto ms = req.find("for_ms");
    if (ms == req.end() || !ms->is_number_integer() || ms->get<std::int64_t>() <= 0) {
      return fail("\"for_ms\" must be a positive number of milliseconds");
    }
    auto row =
        apply_silence_add(engine, string_field(req, "match"), Millis(ms->get<std::int64_t>()),
                          string_field(req, "reason"), actor->name);
    if (!row) return fail(row.error().message);
    return json{{"silence", row->to_json()}};
  });

  server.handle("silence_remove", [&engine](const json& req, const Peer& peer) {
    auto actor = actor_of(req, peer);
    if (!actor) return fail(actor.error().message);
    auto row = engine.remove_silence(string_field(req, "silence"), actor->name);
    if (!row) return fail(row.error().message);
    return json{{"silence", row->to_json()}};
  });

  server.handle("silence_list", [&engine, &config](const json&, const Peer&) {
    json list = json::array();
    for (const auto& s : engine.silences()) list.push_back(s.to_json());
    return json{{"silences", std::move(list)},
                {"scheduled", scheduled_silences_json(*config, SystemClock().wall_now())}};
  });
}

}  // namespace storewatch::agent
