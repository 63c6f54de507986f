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
#include "agent/store.h"

namespace storewatch::agent {

/// A note or reason longer than this is refused.
inline constexpr std::size_t kMaxNote = 4096;

/// `cli:NAME` from a request's "by", or the peer's login name.
Result<std::string> actor_of(const nlohmann::json& request, const Peer& peer);

void add_incident_handlers(ControlServer& server, Engine& engine, Store& reader,
                           const config::Config& config);

/// The `[[silence]]` schedules of the config as JSON, each with whether it
/// is in force at `now`.
nlohmann::json scheduled_silences_json(const config::Config& config, WallTime now);

}  // namespace storewatch::agent
