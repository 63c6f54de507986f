#include "hq/ingest.h"

#include <algorithm>
#include <utility>

#include "config/log.h"

namespace storewatch::hq {

Ingest::Ingest(const config::HqConfig& config, HqStore& store, sync::Transport& transport,
               const Clock& clock)
    : topics_(config.topic_prefix),
      share_group_(config.share_group),
      store_(store),
      transport_(transport),
      clock_(clock) {}

Ingest::~Ingest() {
  stop(std::chrono::milliseconds(0));
}

void Ingest::start() {
  transport_.start(*this);
}

void Ingest::stop(std::chrono::milliseconds grace) {
  if (shared_->stopping) return;
  shared_->stopping = true;
  transport_.stop(grace);
}

IngestStats Ingest::stats() const {
  IngestStats s = shared_->stats;
  s.connected = transport_.connected();
  return s;
}

std::vector<std::string> Ingest::subscriptions() const {
  std::string events = topics_.all("events");
  if (!share_group_.empty()) events = "$share/" + share_group_ + "/" + events;
  return {std::move(events), topics_.all("status")};
}

void Ingest::on_connected() {
  transport_.subscribe(subscriptions(), [shared = shared_](const Status& st) {
    shared->stats.subscribed = st.ok();
    if (st || shared->stopping) return;
    shared->stats.last_error = "subscribe: " + st.error().message;
    log::error("hq: cannot subscribe to the stores' topics: {}", st.error().message);
  });
  // The broker may have restarted and lost every retained message: without
  // its ack a store that reconnects would send its whole backlog again.
  republish_acks();
}

void Ingest::on_disconnected(const std::string& reason) {
  shared_->stats.subscribed = false;
  shared_->stats.last_error = reason;
}

void Ingest::on_message(const sync::Message& message) {
  if (shared_->stopping) return;
  auto parsed = topics_.parse(message.topic);
  if (!parsed) {
    drop(message, "not a storewatch store topic");
    return;
  }
  if (parsed->kind == "events") {
    on_events(message, parsed->store);
  } else if (parsed->kind == "status") {
    on_status(message, parsed->store);
  } else {
    log::debug("hq: ignoring a message on {}", message.topic);
  }
}

void Ingest::on_events(const sync::Message& message, const std::string& store) {
  auto batch = wire::decode_batch(message.payload);
  if (!batch) {
    drop(message, batch.error().message);
    return;
  }
  if (batch->store != store) {
    drop(message, "the batch says it is from store \"" + batch->store + "\"");
    return;
  }
  auto r = store_.ingest(*batch, clock_.wall_now());
  if (!r) {
    // Not acknowledged, so the store sends the batch again after its ack
    // timeout; nothing is lost.
    ++shared_->stats.dropped;
    shared_->stats.last_error = r.error().message;
    log::error("hq: cannot store the events of store {}: {}", store, r.error().message);
    return;
  }
  ++shared_->stats.batches;
  shared_->stats.inserted += r->inserted;
  shared_->stats.duplicates += r->duplicates;
  if (!batch->events.empty()) {
    log::debug("hq: store {} events {}..{}: {} new, {} duplicate; acked {}", store,
               batch->events.front().seq, batch->events.back().seq, r->inserted, r->duplicates,
               r->acked_seq);
  }
  if (r->conflicts > 0) {
    log::warn(
        "hq: store {} sent {} event(s) whose seq HQ already holds for other events; was its "
        "database replaced? They were not stored",
        store, r->conflicts);
  }
  // A duplicate means the store re-sent something HQ had stored: it has not
  // seen the ack (lost, or overwritten by a lower one from another worker),
  // so it gets the current one again even though nothing changed.
  if (r->acked_seq > 0 && (r->acked_changed || r->duplicates > 0)) {
    publish_ack(store, r->acked_seq);
  }
}

void Ingest::on_status(const sync::Message& message, const std::string& store) {
  if (message.payload.empty()) return;  // a retained status being cleared
  auto status = wire::decode_status(message.payload);
  if (!status) {
    drop(message, status.error().message);
    return;
  }
  if (status->store != store) {
    drop(message, "the status says it is from store \"" + status->store + "\"");
    return;
  }
  WallTime received = clock_.wall_now();
  // A retained status handed over on subscribe is old news: the store was
  // last seen when it was written, not now.
  if (message.retained) {
    if (auto at = parse_rfc3339(status->at)) received = std::min(received, *at);
  }
  if (auto st = store_.record_status(*status, received); !st) {
    ++shared_->stats.dropped;
    shared_->stats.last_error = st.error().message;
    log::error("hq: cannot record the status of store {}: {}", store, st.error().message);
  }
}

void Ingest::publish_ack(const std::string& store, std::int64_t acked_seq) {
  transport_.publish(sync::Message{topics_.ack(store), wire::encode_ack(acked_seq), 1, true},
                     [shared = shared_, store, acked_seq](const Status& st) {
                       if (st) {
                         ++shared->stats.acks_published;
                         return;
                       }
                       if (shared->stopping) return;
                       shared->stats.last_error = "ack: " + st.error().message;
                       // The next connect re-publishes it; a store that
                       // sends again meanwhile gets it too.
                       log::warn("hq: ack {} for store {} not delivered: {}", acked_seq, store,
                                 st.error().message);
                     });
}

void Ingest::republish_acks() {
  auto acks = store_.acked_seqs();
  if (!acks) {
    shared_->stats.last_error = acks.error().message;
    log::error("hq: cannot read the acks to re-publish: {}", acks.error().message);
    return;
  }
  int n = 0;
  for (const auto& [store, seq] : *acks) {
    if (seq <= 0) continue;
    publish_ack(store, seq);
    ++n;
  }
  if (n > 0) log::info("hq: re-publishing the acks of {} store(s)", n);
}

void Ingest::drop(const sync::Message& message, const std::string& why) {
  ++shared_->stats.dropped;
  log::warn("hq: dropping a message on {}: {}", message.topic, why);
}

}  // namespace storewatch::hq
