#pragma once
/// \file
/// The control-socket operations that change incidents and silences: the
/// daemon stays the one writer, the CLI asks it (DESIGN §7).
///
///   {"op":"incident","action":"ack|resolve|close|note","incident":UID,
///    "by":NAME,"note":TEXT}                        → {"incident":{…}}
///   {"op":"silence_add","match":M,"for_ms":N,"reason":R,"by":NAME}
///                                                  → {"silence":{…}}
///   {"op":"silence_remove","silence":ID,"by":NAME} → {"silence":{…}}
///   {"op":"silence_list"}  → {"silences":[…],"scheduled":[…]}
///
/// Errors answer {"ok":false,"error":"…"} and change nothing.

#include "agent/control_server.h"
#include "agent/engine.h"
#include "agent/running_config.h"
#include "agent/store.h"
#include "base/duration.h"

namespace storewatch::agent {

/// A note or reason longer than this is refused.
inline constexpr std::size_t kMaxNote = 4096;
/// A silence longer than this is refused (a forgotten one hides faults).
inline constexpr Millis kMaxSilence = std::chrono::hours(24 * 366);

/// `cli:NAME` from a request's "by", or the peer's login name.
Result<std::string> actor_of(const nlohmann::json& request, const Peer& peer);

/// `PREFIX` + `name` ("cli:", "hq:"), or why the name is refused: 1 to 64
/// characters, no spaces, quotes, backslashes or control characters.
Result<std::string> actor_named(std::string_view prefix, const std::string& name);

// The changes a human may make, shared by the control socket (the CLI) and
// HQ's commands (agent/hq_commands.h) so both are checked alike and reach
// the engine the same way.

/// Applies ack|resolve|close|note to the incident `incident` names: its full
/// uid, or (`allow_prefix`, the CLI) its first characters.
Result<Incident> apply_incident_action(Engine& engine, Store& reader, Engine::Action action,
                                       const std::string& incident, bool allow_prefix,
                                       const std::string& actor, const std::string& note);

/// Adds an ad-hoc silence of `length` from now.
Result<SilenceRow> apply_silence_add(Engine& engine, const std::string& match, Millis length,
                                     const std::string& reason, const std::string& actor);

/// `config` is read at each request (a reload may replace it).
void add_incident_handlers(ControlServer& server, Engine& engine, Store& reader,
                           const RunningConfig& config);

/// The `[[silence]]` schedules of the config as JSON, each with whether it
/// is in force at `now`.
nlohmann::json scheduled_silences_json(const config::Config& config, WallTime now);

}  // namespace storewatch::agent
