#include "agent/store_outboxes.h"

#include <fmt/format.h>

#include <utility>

#include "base/log.h"

namespace storewatch::agent {

Result<std::vector<wire::Event>> StoreOutbox::events_after(std::int64_t after, int limit) {
  auto rows = reader_.events_after(after, limit);
  if (!rows) return rows.error();
  std::vector<wire::Event> out;
  out.reserve(rows->size());
  for (const auto& r : *rows) {
    auto e = to_wire(r);
    if (!e) return e.error();
    out.push_back(std::move(*e));
  }
  return out;
}

std::int64_t StoreOutbox::max_seq() {
  return reader_.max_seq().value_or(0);
}

std::int64_t StoreOutbox::hq_acked_seq() {
  return reader_.sync_value(kHqAckedSeq).value_or(0);
}

void StoreOutbox::record_hq_acked_seq(std::int64_t seq) {
  writer_.submit(SyncValue{kHqAckedSeq, seq, /*only_if_higher=*/true});
}

std::int64_t StoreOutbox::next_session() {
  ++session_;
  writer_.submit(SyncValue{kSession, session_, true});
  return session_;
}

std::map<std::string, std::int64_t> StoreOutbox::open_by_severity() {
  auto r = reader_.open_by_severity();
  return r ? *r : std::map<std::string, std::int64_t>{};
}

std::int64_t StoreOutbox::queued() {
  return reader_.queued().value_or(0);
}

Result<std::vector<sync::Notice>> StoreNotifyOutbox::due(std::int64_t now_ms, int limit) {
  return reader_.due_notices(now_ms, limit);
}

Result<std::vector<sync::Notice>> StoreNotifyOutbox::queued(const std::string& channel, int limit) {
  return reader_.queued_notices(channel, limit);
}

Result<std::vector<std::int64_t>> StoreNotifyOutbox::sent_since(const std::string& channel,
                                                                std::int64_t since_ms) {
  return reader_.notices_sent_since(channel, since_ms);
}

Result<std::optional<std::int64_t>> StoreNotifyOutbox::next_due() {
  return reader_.next_notice_due();
}

void StoreNotifyOutbox::update(sync::NoticeUpdate u) {
  writer_.submit(std::move(u));
}

void StoreNotifyOutbox::dropped(const sync::Notice& n, const std::string& why) {
  auto stored = reader_.incident(n.incident_uid);
  // The agent drops it: DESIGN §6's actors are agent, cli:NAME and hq:NAME.
  auto r = engine_.act(Engine::Action::note, n.incident_uid, "agent",
                       fmt::format("{} notice to channel {} dropped: {}", n.kind, n.channel, why),
                       stored ? *stored : std::nullopt);
  if (!r) log::error("notify: recording the dropped notice: {}", r.error().message);
}

}  // namespace storewatch::agent
