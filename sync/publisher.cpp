#include "sync/publisher.h"

#include <openssl/evp.h>

#include <fmt/format.h>

#include <algorithm>
#include <fstream>
#include <memory>

#include "base/clock.h"
#include "base/log.h"

namespace storewatch::sync {

std::string config_digest(const std::vector<std::filesystem::path>& files) {
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1) return "";
  for (const auto& f : files) {
    std::ifstream in(f, std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (!in && !in.eof()) return "sha256:unreadable";
    // The length first, so moving bytes from one file to the next changes the hash.
    const std::string len = std::to_string(bytes.size()) + ":";
    EVP_DigestUpdate(ctx.get(), len.data(), len.size());
    EVP_DigestUpdate(ctx.get(), bytes.data(), bytes.size());
  }
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  if (EVP_DigestFinal_ex(ctx.get(), md, &n) != 1) return "";
  std::string out = "sha256:";
  for (unsigned int i = 0; i < n; ++i) out += fmt::format("{:02x}", md[i]);
  return out;
}

Publisher::Publisher(boost::asio::io_context& io, const config::Config& config, Outbox& outbox,
                     Transport& transport)
    : store_(config.store.id),
      sync_(config.sync),
      topics_(config.sync.topic_prefix),
      outbox_(outbox),
      transport_(transport),
      ack_timer_(io),
      stop_timer_(io),
      config_hash_(config_digest(config.files)) {}

void Publisher::start() {
  acked_ = outbox_.hq_acked_seq();
  sent_ = acked_;
  since_ = clock_.wall_now();
  transport_.start(*this);
}

std::optional<Message> Publisher::will_for_next_connect() {
  session_ = outbox_.next_session();
  return Message{topics_.status(store_), status_payload(false, "connection_lost"), 1, true};
}

void Publisher::set_error(std::string error) {
  last_error_ = std::move(error);
  last_error_at_ = clock_.wall_now();
}

void Publisher::note_error(std::string error) {
  set_error(std::move(error));
}

void Publisher::set_config_hash(std::string hash) {
  config_hash_ = std::move(hash);
  if (!connected_ || stopping_) return;
  transport_.publish(Message{topics_.status(store_), status_payload(true), 1, true},
                     [](const Status& st) {
                       if (!st)
                         log::warn("sync: status message not delivered: {}", st.error().message);
                     });
}

void Publisher::on_connected() {
  connected_ = true;
  since_ = clock_.wall_now();
  failed_attempts_ = 0;
  overdue_rounds_ = 0;
  ++connects_;
  // Whatever was in flight on the old connection may be lost: start again
  // from HQ's acknowledgement; HQ drops what it already has.
  sent_ = acked_;
  transport_.publish(Message{topics_.status(store_), status_payload(true), 1, true},
                     [](const Status& st) {
                       if (!st)
                         log::warn("sync: birth message not delivered: {}", st.error().message);
                     });
  std::vector<std::string> filters{topics_.ack(store_)};
  if (command_handler_) filters.push_back(topics_.cmd(store_));
  transport_.subscribe(std::move(filters), [this](const Status& st) {
    if (!st) {
      set_error("subscribe to acks and commands: " + st.error().message);
      log::warn("sync: {}", last_error_);
    }
  });
  drain();
}

void Publisher::on_disconnected(const std::string& reason) {
  if (connected_) {
    connected_ = false;
    since_ = clock_.wall_now();
  } else {
    ++failed_attempts_;
  }
  set_error(reason);
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
    set_error(fmt::format("HQ acknowledged seq {} but the newest local event is {}; ignoring it",
                          seq, newest));
    log::error("sync: {} (was the database replaced, or does another store use id {}?)",
               last_error_, store_);
    return;
  }
  log::debug("sync: HQ acknowledged up to seq {}", seq);
  acked_ = seq;
  overdue_rounds_ = 0;
  last_ack_ = clock_.wall_now();
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
      set_error("reading the outbox: " + events.error().message);
      log::error("sync: {}", last_error_);
      return;
    }
    if (events->empty()) return;
    // Each event's text is made once, and the payload from those texts.
    std::vector<std::string> texts;
    texts.reserve(events->size());
    std::size_t size = wire::batch_overhead(store_);
    std::int64_t first = 0, last = 0;
    for (const wire::Event& e : *events) {
      std::string text = e.text();
      const std::size_t n = text.size() + 1;
      if (!texts.empty() && size + n > wire::kMaxPayload) break;
      size += n;
      texts.push_back(std::move(text));
      if (first == 0) first = e.seq;
      last = e.seq;
    }
    sent_ = last;
    ++inflight_;
    transport_.publish(
        Message{topics_.events(store_), wire::batch_payload(store_, texts), 1, false},
        [this, first, last](const Status& st) {
          --inflight_;
          if (!st) {
            // Not re-sent at once (a broker that refuses would
            // make that a hot loop): the ack timer rewinds.
            on_publish_failed(first, last, st.error().message);
            return;
          }
          last_puback_ = clock_.wall_now();
          // Events get through again: an earlier problem
          // (a refusal, a lost link) is over.
          last_error_.clear();
          last_error_at_.reset();
          drain();
        });
    arm_ack_timer();
  }
}

void Publisher::on_publish_failed(std::int64_t first, std::int64_t last, const std::string& why) {
  if (why.find("(reason 0x87)") != std::string::npos) {
    // The broker's ACL: this store may not write under this id (a store id
    // that is not the certificate's or user's, or a wrong ACL at HQ).
    set_error(fmt::format(
        "events {}..{}: not authorized by the broker to publish as store {} on {} (reason "
        "0x87); they stay queued",
        first, last, store_, topics_.events(store_)));
    log::error("sync: {}; check [store] id against the client certificate or username",
               last_error_);
    return;
  }
  set_error(fmt::format("events {}..{}: {}", first, last, why));
  log::warn("sync: {}; they stay queued", last_error_);
}

void Publisher::arm_ack_timer() {
  if (ack_timer_armed_) return;
  ack_timer_armed_ = true;
  // Each overdue round in a row waits twice as long (up to 8 × ack_timeout):
  // with HQ down for hours a store re-sends its backlog a few times an hour,
  // not every ack_timeout.
  const auto wait = sync_.ack_timeout * (1 << std::min(overdue_rounds_, 3));
  ack_timer_.expires_after(wait);
  ack_timer_.async_wait([this, wait](const boost::system::error_code& ec) {
    if (ec) return;
    ack_timer_armed_ = false;
    if (stopping_ || sent_ <= acked_) return;
    ++overdue_rounds_;
    log::info("sync: HQ has not acknowledged events after seq {} within {}; sending them again",
              acked_, format_duration(wait));
    sent_ = acked_;
    drain();
  });
}

std::string Publisher::status_payload(bool online, const std::string& reason) {
  wire::StoreStatus s;
  s.store = store_;
  s.online = online;
  s.session = session_;
  s.version = STOREWATCH_VERSION;
  s.open = outbox_.open_by_severity();
  s.queued = outbox_.queued();
  s.at = format_rfc3339(clock_.wall_now());
  s.config_hash = config_hash_;
  s.reason = online ? "" : reason;
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
  transport_.publish(Message{topics_.status(store_), status_payload(false, "shutdown"), 1, true},
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
  PublisherStats s;
  s.connected = transport_.connected();
  s.hq_acked_seq = acked_;
  s.sent_seq = sent_;
  s.session = session_;
  s.last_error = last_error_.empty() ? transport_.last_error() : last_error_;
  s.last_error_at = last_error_at_;
  s.since = since_;
  s.last_puback = last_puback_;
  s.last_ack = last_ack_;
  s.reconnect_attempts = failed_attempts_;
  s.connects = connects_;
  s.inflight_batches = inflight_;
  s.queued = outbox_.queued();
  if (s.queued > 0) {
    if (auto oldest = outbox_.events_after(acked_, 1); oldest && !oldest->empty()) {
      s.oldest_queued_at = parse_rfc3339(oldest->front().at);
    }
  }
  return s;
}

}  // namespace storewatch::sync
