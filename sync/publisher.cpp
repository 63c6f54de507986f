#include "sync/publisher.h"

#include <fmt/format.h>

#include <algorithm>
#include <memory>

#include "config/clock.h"
#include "config/log.h"

namespace storewatch::sync {

Publisher::Publisher(boost::asio::io_context& io, const config::Config& config, Outbox& outbox,
                     Transport& transport)
    : io_(io),
      store_(config.store.id),
      sync_(config.sync),
      topics_(config.sync.topic_prefix),
      outbox_(outbox),
      transport_(transport),
      ack_timer_(io),
      stop_timer_(io) {}

void Publisher::start() {
  acked_ = outbox_.hq_acked_seq();
  sent_ = acked_;
  transport_.start(*this);
}

std::optional<Message> Publisher::will_for_next_connect() {
  session_ = outbox_.next_session();
  return Message{topics_.status(store_), status_payload(false), 1, true};
}

void Publisher::on_connected() {
  last_error_.clear();
  // Whatever was in flight on the old connection may be lost: start again
  // from HQ's acknowledgement; HQ drops what it already has.
  sent_ = acked_;
  transport_.publish(Message{topics_.status(store_), status_payload(true), 1, true},
                     [this](const Status& st) {
                       if (!st)
                         log::warn("sync: birth message not delivered: {}", st.error().message);
                     });
  std::vector<std::string> filters{topics_.ack(store_)};
  if (command_handler_) filters.push_back(topics_.cmd(store_));
  transport_.subscribe(std::move(filters), [this](const Status& st) {
    if (!st) {
      last_error_ = "subscribe to acks and commands: " + st.error().message;
      log::warn("sync: {}", last_error_);
    }
  });
  drain();
}

void Publisher::on_disconnected(const std::string& reason) {
  last_error_ = reason;
}

void Publisher::on_message(const Message& message) {
  auto parsed = topics_.parse(message.topic);
  if (!parsed || parsed->store != store_) return;
  if (parsed->kind == "cmd") {
    if (command_handler_ && !stopping_) command_handler_(message.payload);
    return;
  }
  if (parsed->kind != "ack") return;
  if (message.payload.empty()) return;  // a cleared retained ack
  auto seq = wire::decode_ack(message.payload);
  if (!seq) {
    log::warn("sync: ignoring malformed ack on {}: {}", message.topic, seq.error().message);
    return;
  }
  on_ack(*seq);
}

void Publisher::on_ack(std::int64_t seq) {
  if (seq <= acked_) {
    if (seq < acked_) log::debug("sync: ignoring ack {} below {}", seq, acked_);
    return;
  }
  if (const std::int64_t newest = outbox_.max_seq(); seq > newest) {
    // HQ holds seqs this database never wrote: the database was replaced, or
    // another store uses this id. Taking the ack would mark events as synced
    // that HQ never received.
    last_error_ = fmt::format(
        "HQ acknowledged seq {} but the newest local event is {}; ignoring it", seq, newest);
    log::error("sync: {} (was the database replaced, or does another store use id {}?)",
               last_error_, store_);
    return;
  }
  log::debug("sync: HQ acknowledged up to seq {}", seq);
  acked_ = seq;
  outbox_.record_hq_acked_seq(seq);
  if (sent_ < acked_) sent_ = acked_;
  ack_timer_armed_ = false;
  ack_timer_.cancel();
  if (sent_ > acked_) arm_ack_timer();
  drain();
}

void Publisher::notify() {
  if (!stopping_) drain();
}

void Publisher::drain() {
  while (!stopping_ && transport_.connected() && inflight_ < sync_.inflight_batches) {
    auto events = outbox_.events_after(sent_, sync_.batch_max_events);
    if (!events) {
      last_error_ = "reading the outbox: " + events.error().message;
      log::error("sync: {}", last_error_);
      return;
    }
    if (events->empty()) return;
    wire::Batch batch{store_, {}};
    std::size_t size = wire::batch_overhead(store_);
    for (wire::Event& e : *events) {
      std::size_t n = wire::encoded_size(e);
      if (!batch.events.empty() && size + n > wire::kMaxPayload) break;
      size += n;
      batch.events.push_back(std::move(e));
    }
    const std::int64_t first = batch.events.front().seq;
    const std::int64_t last = batch.events.back().seq;
    sent_ = last;
    ++inflight_;
    transport_.publish(Message{topics_.events(store_), wire::encode_batch(batch), 1, false},
                       [this, first, last](const Status& st) {
                         --inflight_;
                         if (!st) {
                           // Not re-sent at once (a broker that refuses would
                           // make that a hot loop): the ack timer rewinds.
                           last_error_ = "events " + std::to_string(first) + ".." +
                                         std::to_string(last) + ": " + st.error().message;
                           log::warn("sync: {}", last_error_);
                           return;
                         }
                         drain();
                       });
    arm_ack_timer();
  }
}

void Publisher::arm_ack_timer() {
  if (ack_timer_armed_) return;
  ack_timer_armed_ = true;
  ack_timer_.expires_after(sync_.ack_timeout);
  ack_timer_.async_wait([this](const boost::system::error_code& ec) {
    if (ec) return;
    ack_timer_armed_ = false;
    if (stopping_ || sent_ <= acked_) return;
    log::info("sync: HQ has not acknowledged events after seq {} within {}; sending them again",
              acked_, format_duration(sync_.ack_timeout));
    sent_ = acked_;
    drain();
  });
}

std::string Publisher::status_payload(bool online) {
  wire::StoreStatus s;
  s.store = store_;
  s.online = online;
  s.session = session_;
  s.version = STOREWATCH_VERSION;
  s.open = outbox_.open_by_severity();
  s.queued = outbox_.queued();
  s.at = format_rfc3339(SystemClock().wall_now());
  return wire::encode_status(s);
}

void Publisher::stop(std::chrono::milliseconds grace, std::function<void()> then) {
  if (stopping_) {
    if (then) then();
    return;
  }
  stopping_ = true;
  ack_timer_.cancel();
  auto finish =
      std::make_shared<std::function<void()>>([this, grace, then = std::move(then)]() mutable {
        stop_timer_.cancel();
        transport_.stop(grace);
        if (then) {
          auto t = std::move(then);
          then = nullptr;
          t();
        }
      });
  if (!transport_.connected()) {
    (*finish)();
    return;
  }
  // Say goodbye explicitly: a clean disconnect does not fire the last will.
  auto once = std::make_shared<bool>(false);
  auto run_once = [finish, once]() {
    if (*once) return;
    *once = true;
    (*finish)();
  };
  transport_.publish(Message{topics_.status(store_), status_payload(false), 1, true},
                     [run_once](const Status&) { run_once(); });
  stop_timer_.expires_after(grace);
  stop_timer_.async_wait([run_once](const boost::system::error_code& ec) {
    if (!ec) run_once();
  });
}

void Publisher::on_command(std::function<void(const std::string&)> handler) {
  command_handler_ = std::move(handler);
}

void Publisher::answer_command(std::string payload) {
  if (stopping_ || !transport_.connected()) {
    log::warn("sync: offline; dropping the answer to an HQ command");
    return;
  }
  if (answers_in_flight_ >= kMaxAnswersInFlight) {
    log::warn("sync: {} command answers are waiting for the broker; dropping one",
              answers_in_flight_);
    return;
  }
  ++answers_in_flight_;
  transport_.publish(Message{topics_.cmd_result(store_), std::move(payload), 1, false},
                     [this](const Status& st) {
                       --answers_in_flight_;
                       if (!st)
                         log::warn("sync: command answer not delivered: {}", st.error().message);
                     });
}

void Publisher::resync(std::int64_t from_seq) {
  // Only ever rewinds: what was not sent yet goes out in order anyway.
  const std::int64_t from = std::max<std::int64_t>(from_seq, 1) - 1;
  if (from < sent_) sent_ = from;
  arm_ack_timer();
  drain();
}

PublisherStats Publisher::stats() const {
  return PublisherStats{transport_.connected(), acked_, sent_, session_,
                        last_error_.empty() ? transport_.last_error() : last_error_};
}

}  // namespace storewatch::sync
