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
/// not be committed yet), then the database's.
Result<std::optional<Incident>> find_incident(Engine& engine, Store& reader,
                                              const std::string& prefix) {
  if (prefix.empty()) return Error{"give the incident's uid (or its first characters)"};
  auto held = engine.uids_with_prefix(prefix);
  if (held.size() > 1) {
    return Error{
        fmt::format("'{}' matches {} incidents; give more of the uid", prefix, held.size())};
  }
  auto stored = reader.incident(held.empty() ? prefix : held.front());
  if (!stored) return stored.error();
  if (*stored) return stored;
  if (held.size() == 1) {
    // Opened a moment ago and not committed yet: the engine knows it.
    Incident placeholder;
    placeholder.uid = held.front();
    return std::optional<Incident>(placeholder);
  }
  return Error{fmt::format("no incident {} (see `storewatch incidents --all`)", prefix)};
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

Result<std::string> actor_of(const json& request, const Peer& peer) {
  std::string by = string_field(request, "by");
  if (by.empty()) by = peer.user;
  return actor_named("cli:", by);
}

Result<Incident> apply_incident_action(Engine& engine, Store& reader, Engine::Action action,
                                       const std::string& incident, bool allow_prefix,
                                       const std::string& actor, const std::string& note) {
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
  return engine.act(action, uid, actor, note, *found);
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
    auto done = apply_incident_action(engine, reader, *action, string_field(req, "incident"),
                                      /*allow_prefix=*/true, *actor, string_field(req, "note"));
    if (!done) return fail(done.error().message);
    return json{{"incident", done->to_json()}};
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
                          string_field(req, "reason"), *actor);
    if (!row) return fail(row.error().message);
    return json{{"silence", row->to_json()}};
  });

  server.handle("silence_remove", [&engine](const json& req, const Peer& peer) {
    auto actor = actor_of(req, peer);
    if (!actor) return fail(actor.error().message);
    auto row = engine.remove_silence(string_field(req, "silence"), *actor);
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
