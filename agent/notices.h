#pragma once
/// \file
/// Which [[notify]] channels an incident change notifies (issue 8): the
/// rules run on the loop when the engine emits a change, and the notices ride
/// with the change into the transaction of its event. The rules:
///   - the event is a transition the channel is `on` (opened covers opened,
///     reopened, a child incident that fails on its own after its root cause
///     resolved, and an incident still failing when its maintenance ends);
///   - the incident's severity is at least the channel's `min_severity`, and
///     its probe matches the channel's `match` (when set);
///   - nothing for an incident attached to a root cause (`suppressed_by`), in
///     maintenance, or whose probe is silenced now — except a resolution;
///   - a flapping incident notifies once (flapping_started), not its opening;
///   - a resolution only for a channel that heard of the incident before
///     (checked by the store in the same transaction).
/// Each notice is first due the channel's group_wait after it is queued
/// (NoticeRow::wait_ms), so the notifier can group it (sync/notifier.h).

#include <optional>
#include <string>
#include <vector>

#include "config/config.h"
#include "incident/incident.h"
#include "sync/notify_outbox.h"

namespace storewatch::agent {

/// The transition an event is, for notifying; nullopt when it is none.
std::optional<config::NotifyOn> transition_of(const Incident& inc, const IncidentEvent& ev);

/// The notice body (sync/notify_payload.h renders it per channel):
/// {"kind", "store": {id, name}, "incident": {…}, "event": {uid, type, at, actor, …}}.
std::string notice_body(const config::Config& cfg, config::NotifyOn kind, const Incident& inc,
                        const IncidentEvent& ev);

/// The notices of one change; empty for almost every change (and no
/// allocation then). `silenced`: the incident's probe is in a silence now.
std::vector<sync::NoticeRow> notices_for(const config::Config& cfg, const Incident& inc,
                                         const IncidentEvent& ev, bool silenced);

}  // namespace storewatch::agent

namespace storewatch::agent {

/// `storewatch notify test NAME`: sends a test notice through one channel now
/// (no daemon, no database) and prints what happened. Exit 0 when the channel
/// took it, 1 when it did not, 2 for an unknown channel.
int notify_test(const config::Config& cfg, const std::string& channel, bool as_json);

}  // namespace storewatch::agent
