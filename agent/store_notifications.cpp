// Store: the notification outbox — the notices an incident change queues for
// the [[notify]] channels (the notifications table), what is due, what was
// sent, and their pruning.
#include "agent/store.h"

#include <chrono>

#include "agent/store_internal.h"

namespace storewatch::agent {

using store_internal::collect;

Status Store::write_notices(const IncidentRows& r) {
  // A resolution is queued only for channels that heard of the opening.
  auto st = db_.prepare(
      "INSERT INTO notifications (channel, incident_uid, event_uid, kind, body, created_at, "
      "created_ms, next_try_ms) SELECT ?1,?2,?3,?4,?5,?6,?7,?7+?9 WHERE ?8 = 0 OR EXISTS "
      "(SELECT 1 FROM notifications WHERE incident_uid = ?2 AND channel = ?1 AND "
      "kind NOT IN ('resolved','flapping_stopped') AND state != 'dropped')");
  if (!st) return st.error();
  const std::int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                                  std::chrono::system_clock::now().time_since_epoch())
                                  .count();
  for (const sync::NoticeRow& n : r.notices) {
    st->bind_ref(1, n.channel)
        .bind_ref(2, r.uid)
        .bind_ref(3, r.event_uid)
        .bind_ref(4, n.kind)
        .bind_ref(5, n.body)
        .bind_ref(6, r.at)
        .bind(7, now_ms)
        .bind(8, n.only_if_opening_notified)
        .bind(9, n.wait_ms);
    if (auto s = st->run(); !s) return s;
  }
  return {};
}

Status Store::write(const sync::NoticeUpdate& u) {
  auto st = db_.prepare(
      "UPDATE notifications SET state = ?2, attempts = ?3, next_try_ms = ?4, last_error = ?5, "
      "done_ms = ?6 WHERE id = ?1");
  if (!st) return st.error();
  const char* state = u.state == sync::NoticeState::sent      ? "sent"
                      : u.state == sync::NoticeState::dropped ? "dropped"
                                                              : "queued";
  st->bind(1, u.id).bind(2, state).bind(3, u.attempts).bind(4, u.next_try_ms).bind(5, u.last_error);
  if (u.state == sync::NoticeState::queued) {
    st->bind_null(6);
  } else {
    st->bind(6, u.at_ms);
  }
  return st->run();
}

namespace {

sync::Notice notice_of(const db::Statement& s) {
  sync::Notice n;
  n.id = s.int64(0);
  n.channel = s.text(1);
  n.kind = s.text(2);
  n.incident_uid = s.text(3);
  n.event_uid = s.text(4);
  n.body = s.text(5);
  n.attempts = static_cast<int>(s.int64(6));
  n.created_ms = s.int64(7);
  n.next_try_ms = s.int64(8);
  return n;
}

}  // namespace

Result<std::vector<sync::Notice>> Store::due_notices(std::int64_t now_ms, int limit) {
  auto stmt = db_.prepare(
      "SELECT id, channel, kind, incident_uid, event_uid, body, attempts, created_ms, "
      "next_try_ms FROM notifications n WHERE state = 'queued' AND next_try_ms <= ?1 "
      "AND NOT EXISTS (SELECT 1 FROM notifications o WHERE o.state = 'queued' AND "
      "o.channel = n.channel AND o.id < n.id) ORDER BY id LIMIT ?2");
  if (!stmt) return stmt.error();
  stmt->bind(1, now_ms).bind(2, limit);
  return collect<sync::Notice>(*stmt, notice_of);
}

Result<std::vector<sync::Notice>> Store::queued_notices(const std::string& channel, int limit) {
  auto stmt = db_.prepare(
      "SELECT id, channel, kind, incident_uid, event_uid, body, attempts, created_ms, "
      "next_try_ms FROM notifications WHERE state = 'queued' AND channel = ?1 ORDER BY id "
      "LIMIT ?2");
  if (!stmt) return stmt.error();
  stmt->bind(1, channel).bind(2, limit);
  return collect<sync::Notice>(*stmt, notice_of);
}

Result<std::vector<std::int64_t>> Store::notices_sent_since(const std::string& channel,
                                                            std::int64_t since_ms) {
  auto stmt = db_.prepare(
      "SELECT DISTINCT done_ms FROM notifications WHERE channel = ?1 AND state = 'sent' AND "
      "done_ms > ?2 ORDER BY done_ms");
  if (!stmt) return stmt.error();
  stmt->bind(1, channel).bind(2, since_ms);
  return collect<std::int64_t>(*stmt, [](const db::Statement& s) { return s.int64(0); });
}

Result<std::optional<std::int64_t>> Store::next_notice_due() {
  auto stmt = db_.prepare(
      "SELECT min(next_try_ms) FROM notifications n WHERE state = 'queued' AND NOT EXISTS "
      "(SELECT 1 FROM notifications o WHERE o.state = 'queued' AND o.channel = n.channel AND "
      "o.id < n.id)");
  if (!stmt) return stmt.error();
  auto row = stmt->step();
  if (!row) return row.error();
  return *row ? stmt->optional_int64(0) : std::nullopt;
}

Result<std::int64_t> Store::prune_notifications(std::int64_t before_ms, std::int64_t limit) {
  // An incident not yet closed keeps its sent notices, however old: its
  // resolution goes only to the channels that heard of its opening.
  auto stmt = db_.prepare(
      "DELETE FROM notifications WHERE id IN (SELECT n.id FROM notifications n WHERE n.state != "
      "'queued' AND n.done_ms < ?1 AND NOT EXISTS (SELECT 1 FROM incidents i WHERE i.uid = "
      "n.incident_uid AND i.state != 'closed') ORDER BY n.id LIMIT ?2)");
  if (!stmt) return stmt.error();
  stmt->bind(1, before_ms).bind(2, limit);
  if (auto st = stmt->run(); !st) return st.error();
  return static_cast<std::int64_t>(db_.changes());
}

Result<std::vector<nlohmann::json>> Store::notifications(const std::string& incident_uid) {
  auto stmt = db_.prepare(
      "SELECT id, channel, incident_uid, kind, state, attempts, last_error, created_at "
      "FROM notifications WHERE ?1 = '' OR incident_uid = ?1 ORDER BY id");
  if (!stmt) return stmt.error();
  stmt->bind(1, incident_uid);
  return collect<nlohmann::json>(*stmt, [](const db::Statement& s) {
    return nlohmann::json{{"id", s.int64(0)},          {"channel", s.text(1)},
                          {"incident_uid", s.text(2)}, {"kind", s.text(3)},
                          {"state", s.text(4)},        {"attempts", s.int64(5)},
                          {"last_error", s.text(6)},   {"created_at", s.text(7)}};
  });
}

}  // namespace storewatch::agent
