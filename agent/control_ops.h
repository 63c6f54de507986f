#pragma once
/// \file
/// The control-socket operations that change incidents and silences: the
/// daemon stays the one writer, the CLI asks it (DESIGN §7).
///
///   {"op":"incident","action":"ack|resolve|close|note","incident":UID,
///    "by":NAME,"note":TEXT,"sudo_user":NAME,"force":BOOL}
///        → {"incident":{…},"actor":"cli:NAME","via":"sudo","sudo_user":NAME,
///           "still_failing":{…}}
///   A resolve with "force":false of an incident whose probe still fails is
///   refused: {"ok":false,"error":"…","still_failing":{"probe","message",
///   "at","checks_to_reopen","interval_ms","warning"}}. Without "force" (or
///   true) it is done, and the answer carries "still_failing" as a warning.
///   {"op":"silence_add","match":M,"for_ms":N,"reason":R,"by":NAME}
///                                                  → {"silence":{…}}
///   {"op":"silence_remove","silence":ID,"by":NAME} → {"silence":{…}}
///   {"op":"silence_list"}  → {"silences":[…],"scheduled":[…]}
///
/// Errors answer {"ok":false,"error":"…"} and change nothing.
///
/// "sudo_user" is the CLI's $SUDO_USER: taken only from a peer of uid 0
/// (ignored from anyone else), it names the actor (`cli:dana`) unless "by"
/// does, and the action's event body records "via":"sudo" and
/// "sudo_user":NAME.

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

/// Who asks for a change through the control socket.
struct Actor {
  std::string name;       ///< cli:NAME
  std::string sudo_user;  ///< the person behind a root peer started through sudo
  /// What the action's event records besides the actor: {"via":"sudo",
  /// "sudo_user":NAME}, or {}.
  nlohmann::json provenance() const;
};

/// `cli:NAME` from a request's "by", else its "sudo_user" when the peer is
/// root, else the peer's login name.
Result<Actor> actor_of(const nlohmann::json& request, const Peer& peer);

/// `PREFIX` + `name` ("cli:", "hq:"), or why the name is refused: 1 to 64
/// characters, no spaces, quotes, backslashes or control characters.
Result<std::string> actor_named(std::string_view prefix, const std::string& name);

// The changes a human may make, shared by the control socket (the CLI) and
// HQ's commands (agent/hq_commands.h) so both are checked alike and reach
// the engine the same way.

struct ActionOptions {
  nlohmann::json provenance = nlohmann::json::object();  ///< Actor::provenance()
  /// A resolve of an incident whose probe still fails is done anyway; false
  /// refuses it (ActionDone::done false).
  bool force = true;
};

/// What an action did.
struct ActionDone {
  Incident incident;  ///< after the action (as it was when not done)
  bool done = true;
  /// A resolve while the probe still fails: it will reopen.
  std::optional<StillFailing> still_failing;
};

/// Applies ack|resolve|close|note to the incident `incident` names: its full
/// uid, or (`allow_prefix`, the CLI) its first characters. A second ack is
/// an error that says by whom and when the incident was acknowledged.
Result<ActionDone> apply_incident_action(Engine& engine, Store& reader, Engine::Action action,
                                         const std::string& incident, bool allow_prefix,
                                         const std::string& actor, const std::string& note,
                                         const ActionOptions& options = {});

/// "12:00:31Z" when `t` is on the day of `now` (UTC), else
/// "2026-12-06 12:00:31Z": times in the answers to actions.
std::string clock_time(WallTime t, WallTime now);

/// StillFailing as the answers carry it, with its "warning": "lane-01-pos
/// still fails (HTTP 500 at 12:00:31Z); the engine will reopen it at the
/// next check".
nlohmann::json still_failing_json(const StillFailing& s, WallTime now);

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
