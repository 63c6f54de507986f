#include "hq/ingest.h"

#include <fmt/format.h>

#include <boost/asio/post.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <iterator>
#include <system_error>
#include <utility>

#include "base/duration.h"
#include "base/log.h"
#include "db/errors.h"
#include "sync/commands.h"

namespace storewatch::hq {

std::string encode_resync(const std::string& id, std::int64_t from_seq) {
  return nlohmann::json{
      {"v", 1}, {"id", id}, {"op", "resync"}, {"from_seq", from_seq}, {"by", "hq:gap"}}
      .dump();
}

Result<std::string> command_payload(const config::HqConfig& config, const std::string& store,
                                    const std::string& command, WallTime now) {
  std::filesystem::path key_file;
  if (!config.command_keys_dir.empty()) {
    // Store ids are [A-Za-z0-9_-]: the name cannot leave the directory.
    const std::filesystem::path own = config.command_keys_dir / (store + ".key");
    std::error_code ec;
    const bool exists = std::filesystem::exists(own, ec);
    if (ec) {
      return Error{fmt::format("cannot sign a command for store {}: cannot check {}: {}", store,
                               own.string(), ec.message())};
    }
    if (exists) key_file = own;
  }
  if (key_file.empty()) key_file = config.command_key_file;
  if (key_file.empty()) return command;
  auto key = config::read_command_key(key_file);
  if (!key) {
    return Error{fmt::format("cannot sign a command for store {}: {}", store, key.error().message)};
  }
  const std::int64_t exp =
      std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count() +
      sync::kCommandLifetime.count();
  return sync::sign_command(*key, store, command, exp);
}

Ingest::Ingest(const config::HqConfig& config, IngestStore& store, sync::Transport& transport,
               const Clock& clock, boost::asio::any_io_executor executor)
    : config_(config),
      topics_(config.topic_prefix),
      share_group_(config.share_group),
      resync_after_(config.resync_after),
      store_(store),
      transport_(transport),
      clock_(clock),
      gap_timer_(executor),
      ack_timer_(std::move(executor)) {
  store_.set_limits(IngestLimits{config.max_seq_jump, config.max_session_jump});
}

Ingest::~Ingest() {
  stop(std::chrono::milliseconds(0));
}

void Ingest::start() {
  transport_.start(*this);
}

void Ingest::stop(std::chrono::milliseconds grace) {
  if (shared_->stopping) return;
  shared_->stopping = true;
  gap_timer_.cancel();
  ack_timer_.cancel();
  // Paho acknowledged these to the broker when they arrived: stored now, or
  // only when their store sends them again.
  flush(static_cast<std::size_t>(-1));
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
  published_.clear();
  ack_retry_.clear();  // republish_acks() below publishes them all
  transport_.subscribe(
      subscriptions(), [shared = shared_, filters = subscriptions()](const Status& st) {
        shared->stats.subscribed = st.ok();
        if (st) {
          log::info("hq: subscribed to {} and {}", filters[0], filters[1]);
          return;
        }
        if (shared->stopping) return;
        shared->stats.last_error = "subscribe: " + st.error().message;
        log::error("hq: cannot subscribe to the stores' topics: {}", st.error().message);
      });
  // The broker may have restarted and lost every retained message: without
  // its ack a store that reconnects would send its whole backlog again.
  republish_acks();
  arm_gap_timer();
}

void Ingest::on_disconnected(const std::string& reason) {
  shared_->stats.subscribed = false;
  shared_->stats.last_error = reason;
}

void Ingest::on_message(const sync::Message& message) {
  if (shared_->stopping) return;
  auto parsed = topics_.parse(message.topic);
  if (!parsed) {
    drop(message.topic, "not a storewatch store topic");
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
  if (refused_unenrolled(store, "events")) return;
  if (message.payload.size() > wire::kMaxPayload) {
    drop(message.topic, fmt::format("payload of {} bytes is over the {} byte cap",
                                    message.payload.size(), wire::kMaxPayload));
    return;
  }
  pending_.push_back(Pending{message.topic, store, message.payload});
  pending_bytes_ += message.payload.size();
  // A whole group waits: commit it now, before taking in more, so a
  // backlog the broker hands over waits as messages, not as a growing list
  // of decoded groups.
  if (pending_.size() >= kMaxGroup || pending_bytes_ >= kMaxGroupBytes) {
    flush(1);
    return;
  }
  // Messages already waiting on the io_context are handled before the flush
  // runs, so under load they share its commit; idle, it runs at once.
  if (flush_posted_) return;
  flush_posted_ = true;
  boost::asio::post(gap_timer_.get_executor(), [this, shared = shared_] {
    if (shared->stopping) return;
    flush_posted_ = false;
    flush(1);
  });
}

void Ingest::flush(std::size_t max_groups) {
  for (std::size_t g = 0; g < max_groups && !pending_.empty(); ++g) {
    std::vector<wire::Batch> group;
    group.reserve(std::min(pending_.size(), kMaxGroup));
    std::size_t bytes = 0;
    while (!pending_.empty() && group.size() < kMaxGroup && bytes < kMaxGroupBytes) {
      Pending p = std::move(pending_.front());
      pending_.pop_front();
      pending_bytes_ -= p.payload.size();
      bytes += p.payload.size();
      auto batch = wire::decode_batch_for_store(p.payload);
      if (!batch) {
        drop(p.topic, batch.error().message);
      } else if (batch->store != p.store) {
        drop(p.topic, "the batch says it is from store \"" + batch->store + "\"");
      } else {
        group.push_back(std::move(*batch));
      }
    }
    const std::size_t n = group.size();
    if (n == 0) continue;

    const WallTime now = clock_.wall_now();
    auto r = store_.ingest(std::span<const wire::Batch>(group), now);
    if (!r) {
      // Not acknowledged, so the stores send the batches again after their
      // ack timeout; nothing is lost.
      shared_->stats.dropped += static_cast<std::int64_t>(n);
      ++shared_->stats.failed_commits;
      shared_->stats.last_error = r.error().message;
      shared_->stats.last_error_at = now;
      if (!database_unreachable(r.error(), now, static_cast<std::int64_t>(n))) {
        log::error("hq: cannot store {} batch(es) of events: {}", n, r.error().message);
      }
      continue;
    }
    database_reached(now);
    shared_->stats.last_commit = now;
    shared_->stats.batches += static_cast<std::int64_t>(n);
    ++shared_->stats.commits;
    for (const Ingested& i : *r) {
      shared_->stats.inserted += i.inserted;
      shared_->stats.duplicates += i.duplicates;
      shared_->stats.conflicts += i.conflicts;
      shared_->stats.refused_seq_jump += i.refused;
      log::debug("hq: store {}: {} new, {} duplicate, {} refused; acked {}{}", i.store, i.inserted,
                 i.duplicates, i.refused, i.acked_seq, i.gap ? " (a gap above it)" : "");
      if (i.new_store) {
        log::info("hq: new store {} ({}): its first events are stored", i.store, enrolled_as());
      }
      if (i.refused > 0 && first_refusal(i.store, "seq_jump")) {
        log::warn(
            "hq: refused {} event(s) of store {} from seq {}: more than max_seq_jump ({}) above "
            "the {} HQ holds, so not stored; a store's seqs do not jump so (is someone else "
            "publishing as this store? docs/SYNC.md has the broker ACL that stops it). Further "
            "refusals are counted in `storewatch hq stores --json` (refused.seq_jump), not logged",
            i.refused, i.store, i.refused_seq, config_.max_seq_jump, i.acked_seq);
      }
      if (i.conflicts > 0 && first_refusal(i.store, "conflict")) {
        log::warn(
            "hq: store {} sent {} event(s) whose seq HQ already holds for other events; was "
            "its database replaced, or is someone else publishing as it? They were not stored. "
            "Further ones are counted in `storewatch hq stores --json` (refused.conflict), not "
            "logged",
            i.store, i.conflicts);
      }
      // A duplicate means the store re-sent something HQ had stored: it has
      // not seen the ack (lost, or overwritten by a lower one from another
      // worker), so it gets the current one again even though nothing changed.
      if (i.acked_seq > 0 && (i.acked_changed || i.duplicates > 0)) {
        publish_ack(i.store, i.acked_seq);
      }
    }
  }
  if (!pending_.empty() && !flush_posted_ && !shared_->stopping) {
    flush_posted_ = true;
    boost::asio::post(gap_timer_.get_executor(), [this, shared = shared_] {
      if (shared->stopping) return;
      flush_posted_ = false;
      flush(1);
    });
  }
}

void Ingest::on_status(const sync::Message& message, const std::string& store) {
  if (message.payload.empty()) return;  // a retained status being cleared
  auto status = wire::decode_status(message.payload);
  if (!status) {
    drop(message.topic, status.error().message);
    return;
  }
  if (status->store != store) {
    drop(message.topic, "the status says it is from store \"" + status->store + "\"");
    return;
  }
  if (refused_unenrolled(store, "status")) return;
  WallTime received = clock_.wall_now();
  // A retained status handed over on subscribe is old news: the store was
  // last seen when it was written, not now.
  if (message.retained) {
    if (auto at = parse_rfc3339(status->at)) received = std::min(received, *at);
  }
  auto recorded = store_.record_status(*status, received);
  if (!recorded) {
    ++shared_->stats.dropped;
    shared_->stats.last_error = recorded.error().message;
    shared_->stats.last_error_at = clock_.wall_now();
    if (!database_unreachable(recorded.error(), clock_.wall_now(), 0)) {
      log::error("hq: cannot record the status of store {}: {}", store, recorded.error().message);
    }
    return;
  }
  database_reached(clock_.wall_now());
  if (recorded->outcome == StatusRecorded::Outcome::session_jump) {
    ++shared_->stats.refused_session_jump;
    if (first_refusal(store, "session_jump")) {
      log::warn(
          "hq: refused a status of store {} (online {}): its session {} is more than "
          "max_session_jump ({}) above the {} HQ has recorded, so it is not recorded; a store's "
          "session does not jump so (is someone else publishing as this store? docs/SYNC.md has "
          "the broker ACL that stops it). Further refusals are counted in `storewatch hq stores "
          "--json` (refused.session_jump), not logged",
          store, status->online, status->session, config_.max_session_jump,
          recorded->session_before);
    }
    return;
  }
  if (recorded->new_store) {
    log::info("hq: new store {} ({}): its first status is recorded", store, enrolled_as());
  }
}

void Ingest::publish_ack(const std::string& store, std::int64_t acked_seq) {
  std::int64_t& last = published_[store];
  if (acked_seq < last) return;
  last = acked_seq;
  // Past the window it waits its turn (as the newest ack of its store).
  if (acks_in_flight_ >= kAckWindow) {
    ack_retry_.insert(store);
    return;
  }
  send_ack(store, acked_seq);
}

// Paho sends a publish only while the broker's receive maximum (mosquitto
// 20, EMQX 32, HiveMQ 10) has room, and looks at its queue again only when
// a new publish is queued or a second has passed: a commit that acked 256
// stores at once would leave most of its acks waiting in Paho's queue for
// those seconds (or refused past its buffer of 100). So at most kAckWindow
// acks are with the transport, and each one completed sends the next.
void Ingest::send_ack(const std::string& store, std::int64_t acked_seq) {
  ++acks_in_flight_;
  transport_.publish(sync::Message{topics_.ack(store), wire::encode_ack(acked_seq), 1, true},
                     [this, shared = shared_, store, acked_seq](const Status& st) {
                       if (st) ++shared->stats.acks_published;
                       if (shared->stopping) return;
                       --acks_in_flight_;
                       if (st) {
                         ack_retry_wait_ = kAckRetryFirst;
                         recheck_ack(store, acked_seq);
                         retry_acks(kAckWindow);
                         return;
                       }
                       shared->stats.last_error = "ack: " + st.error().message;
                       // Published again soon (arm_ack_timer); the next
                       // connect re-publishes every ack.
                       if (ack_retry_.empty()) {
                         log::warn(
                             "hq: ack {} for store {} not delivered: {}; it and any others "
                             "refused meanwhile are published again shortly",
                             acked_seq, store, st.error().message);
                       }
                       ack_retry_.insert(store);
                       arm_ack_timer();
                     });
}

void Ingest::retry_acks(std::size_t n) {
  for (; n > 0 && !ack_retry_.empty() && acks_in_flight_ < kAckWindow && transport_.connected();
       --n) {
    auto node = ack_retry_.extract(ack_retry_.begin());
    const auto last = published_.find(node.value());
    if (last == published_.end()) continue;
    send_ack(node.value(), last->second);
    // Refused at once: try again after a while, not in a loop.
    if (ack_retry_.contains(node.value())) break;
  }
}

// Acks refused by the transport (its buffer full, or between connections)
// go out again after 10 ms, backing off to 500 ms while they are refused.
void Ingest::arm_ack_timer() {
  if (ack_timer_armed_ || ack_retry_.empty() || shared_->stopping) return;
  ack_timer_armed_ = true;
  ack_timer_.expires_after(ack_retry_wait_);
  ack_timer_.async_wait([this, shared = shared_](const boost::system::error_code& ec) {
    if (ec || shared->stopping) return;
    ack_timer_armed_ = false;
    retry_acks(kMaxGroup);
    ack_retry_wait_ = std::min(ack_retry_wait_ * 2, kAckRetryMax);
    arm_ack_timer();
  });
}

// Another worker may have committed and published a higher ack that the
// broker took before this one, leaving the lower one retained. Every ack it
// committed was committed before its publish reached the broker, so before
// this PUBACK: reading the database now finds it, and publishing it again
// leaves the highest ack retained. Acks only rise, so this settles.
void Ingest::recheck_ack(const std::string& store, std::int64_t published) {
  auto now = store_.acked_seq(store);
  if (!now) {
    log::warn("hq: cannot re-read the ack of store {}: {}", store, now.error().message);
    return;
  }
  if (*now > published) publish_ack(store, *now);
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

void Ingest::arm_gap_timer() {
  if (gap_timer_armed_ || shared_->stopping) return;
  gap_timer_armed_ = true;
  const Millis period = std::clamp<Millis>(resync_after_ / 4, Millis(50), Millis(5000));
  gap_timer_.expires_after(period);
  gap_timer_.async_wait([this, shared = shared_](const boost::system::error_code& ec) {
    if (ec || shared->stopping) return;
    gap_timer_armed_ = false;
    retry_acks(64);
    check_gaps();
    arm_gap_timer();
  });
}

void Ingest::check_gaps() {
  if (!transport_.connected() || !shared_->stats.subscribed) return;
  auto due = store_.claim_resyncs(clock_.wall_now(), resync_after_);
  if (!due) {
    shared_->stats.last_error = due.error().message;
    shared_->stats.last_error_at = clock_.wall_now();
    if (!database_unreachable(due.error(), clock_.wall_now(), 0)) {
      log::error("hq: cannot check the stores for gaps: {}", due.error().message);
    }
    return;
  }
  database_reached(clock_.wall_now());
  for (const ResyncDue& d : *due) {
    const std::string id = new_command_id();
    auto payload =
        command_payload(config_, d.store, encode_resync(id, d.from_seq), clock_.wall_now());
    if (!payload) {
      // Claimed but not sent: tried again after another resync_after.
      shared_->stats.last_error = payload.error().message;
      if (first_refusal(d.store, "sign")) {
        log::error("hq: {}; the store is not asked to resync until it can be",
                   payload.error().message);
      }
      continue;
    }
    log::warn(
        "hq: store {} has had events missing from seq {} for over {}: asking it to resync "
        "(command {})",
        d.store, d.from_seq, format_duration(resync_after_), id);
    ++shared_->stats.resyncs_requested;
    transport_.publish(sync::Message{topics_.cmd(d.store), std::move(*payload), 1, false},
                       [shared = shared_, store = d.store](const Status& st) {
                         if (st || shared->stopping) return;
                         // Claimed but not sent: asked again after another resync_after.
                         log::warn("hq: resync command for store {} not delivered: {}", store,
                                   st.error().message);
                       });
  }
}

std::string_view Ingest::enrolled_as() const {
  return config_.enroll == config::HqConfig::Enroll::list ? "listed in [hq] stores"
                                                          : "enroll = \"auto\"";
}

bool Ingest::refused_unenrolled(const std::string& store, std::string_view what) {
  if (config_.enrolled(store)) return false;
  ++shared_->stats.refused_unenrolled;
  if (first_refusal(store, "not_enrolled")) {
    log::warn(
        "hq: refused the {} of store {}: it is not enrolled ([hq] enroll = \"list\" and it is "
        "not in [hq] stores), so nothing it sends is stored. To take it in, add it to [hq] "
        "stores and restart HQ{}. Further messages of it are refused without a word",
        what, store,
        what == "events" ? " (it sends again what HQ has not acknowledged)" : std::string_view{});
  }
  return true;
}

bool Ingest::first_refusal(const std::string& store, std::string_view kind) {
  auto key = std::make_pair(store, std::string(kind));
  if (warned_.contains(key)) return false;
  if (warned_.size() >= kMaxWarned) {
    if (!warned_full_) {
      warned_full_ = true;
      log::warn(
          "hq: refusals of more than {} stores logged; further stores refused are no longer "
          "logged one by one (the counters of `storewatch hq stores --json` go on)",
          kMaxWarned);
    }
    return false;
  }
  warned_.insert(std::move(key));
  return true;
}

bool Ingest::database_unreachable(const Error& e, WallTime now, std::int64_t batches) {
  if (e.code != db::kUnreachable) return false;
  // The database is away (restarting, failing over): one line now, then one
  // every 30 s while it lasts, not one per message or timer tick.
  down_batches_ += batches;
  down_batches_total_ += batches;
  if (shared_->stats.database_down_since == WallTime{}) {
    shared_->stats.database_down_since = now;
    down_logged_ = now;
    log::error(
        "hq: {}. What is not stored is not acknowledged, so the stores send it again; HQ goes on "
        "taking messages and reconnects with backoff (a line every 30 s while this lasts)",
        e.message);
    down_batches_ = 0;
  } else if (now - down_logged_ >= std::chrono::seconds(30)) {
    log::error("hq: the database is still out of reach after {}: {} more batch(es) not stored",
               format_duration(
                   std::chrono::duration_cast<Millis>(now - shared_->stats.database_down_since)),
               down_batches_);
    down_logged_ = now;
    down_batches_ = 0;
  }
  return true;
}

void Ingest::database_reached(WallTime now) {
  if (shared_->stats.database_down_since == WallTime{}) return;
  log::info(
      "hq: the database answers again after {}; {} batch(es) were not stored meanwhile and come "
      "again from their stores",
      format_duration(std::chrono::duration_cast<Millis>(now - shared_->stats.database_down_since)),
      down_batches_total_);
  shared_->stats.database_down_since = WallTime{};
  down_batches_ = down_batches_total_ = 0;
}

void Ingest::drop(const std::string& topic, const std::string& why) {
  ++shared_->stats.dropped;
  log::warn("hq: dropping a message on {}: {}", topic, why);
}

std::string Ingest::new_command_id() {
  // A random (version 4) UUID.
  const std::uint64_t hi = (rng_() & 0xffffffffffff0fffULL) | 0x0000000000004000ULL;
  const std::uint64_t lo = (rng_() & 0x3fffffffffffffffULL) | 0x8000000000000000ULL;
  return fmt::format("{:08x}-{:04x}-{:04x}-{:04x}-{:012x}", hi >> 32, (hi >> 16) & 0xffff,
                     hi & 0xffff, lo >> 48, lo & 0xffffffffffffULL);
}

}  // namespace storewatch::hq
