#include "sync/mqtt_transport.h"

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include <mqtt/async_client.h>

#include <fmt/format.h>

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include "base/log.h"
#include "sync/client_cert.h"

namespace storewatch::sync {

namespace asio = boost::asio;

namespace {

std::string reason_text(const mqtt::token& tok) {
  int rc = tok.get_return_code();
  int reason = tok.get_reason_code();
  // A CONNACK that refuses the connection (bad login: 0x86, not authorized:
  // 0x87) comes from Paho C as the return code, not the reason code.
  if (reason < 0x80 && rc >= 0x80 && rc <= 0xff) reason = rc;
  if (reason >= 0x80) {
    return fmt::format("refused by broker: {} (reason 0x{:02x})",
                       mqtt::exception::reason_code_str(reason), reason);
  }
  if (rc != 0) return mqtt::exception::error_str(rc);
  return "failed";
}

constexpr auto kReloadGrace = std::chrono::milliseconds(500);

bool uses_tls(const std::string& uri) {
  return uri.starts_with("ssl://") || uri.starts_with("wss://") || uri.starts_with("mqtts://");
}

}  // namespace

/// Bounds the messages one Paho client has taken off its connection and
/// posted to the io_context but the listener has not yet been handed
/// (MqttOptions::max_unhandled). Paho's receiving thread take()s a place
/// before posting, waiting while all are taken; the posted handler give()s
/// it back. close() ends every wait for good (the client is going away).
///
/// Paho C holds one process-wide lock while it runs message_arrived, and
/// every call into Paho, for any client, takes that lock: the io_context
/// thread, which gives places back, must never wait for it while the
/// receiving thread waits here. So the calls that come often (publish,
/// subscribe) are made on a thread of their own (PahoCalls), and the rare
/// ones the io_context thread makes itself (creating, connecting and
/// dropping a client) open every inbox while they last (Bypass): the
/// receiving thread posts without waiting and lets go of the lock before its
/// next packet. Only a Bypass exceeds the bound, by what arrives while it
/// waits for the lock — and that is not bounded: Paho's lock is not fair,
/// and with a backlog to read the receiving thread takes it back again and
/// again (a publish made under a Bypass once let about 1,000 messages in).
class Inbox {
 public:
  explicit Inbox(std::size_t max) : max_(max) {}

  void take() {
    if (max_ == 0) return;
    std::unique_lock lock(mutex());
    room().wait(lock, [this] { return closed_ || bypass() > 0 || taken_ < max_; });
    ++taken_;
  }

  void give() {
    if (max_ == 0) return;
    {
      std::lock_guard lock(mutex());
      if (taken_ > 0) --taken_;
    }
    room().notify_all();
  }

  void close() {
    {
      std::lock_guard lock(mutex());
      closed_ = true;
    }
    room().notify_all();
  }

  /// Opens every inbox while this thread calls into Paho.
  class Bypass {
   public:
    Bypass() {
      {
        std::lock_guard lock(mutex());
        ++bypass();
      }
      room().notify_all();
    }
    ~Bypass() {
      std::lock_guard lock(mutex());
      --bypass();
    }
    Bypass(const Bypass&) = delete;
    Bypass& operator=(const Bypass&) = delete;
  };

 private:
  // Shared by every inbox of the process, as Paho's lock is.
  static std::mutex& mutex() {
    static std::mutex m;
    return m;
  }
  static std::condition_variable& room() {
    static std::condition_variable cv;
    return cv;
  }
  static int& bypass() {
    static int n = 0;
    return n;
  }

  const std::size_t max_;
  std::size_t taken_ = 0;
  bool closed_ = false;
};

/// The thread that makes a bounded transport's publish and subscribe calls
/// into Paho (see Inbox): it may wait for Paho's lock while the receiving
/// thread waits for room, because the io_context thread, which makes room,
/// never waits for it. Calls run in the order given. Without a thread
/// (an unbounded transport) each call runs at once on the caller's thread.
class PahoCalls {
 public:
  explicit PahoCalls(bool own_thread) {
    if (own_thread) thread_ = std::thread([this] { loop(); });
  }
  ~PahoCalls() { stop(); }
  PahoCalls(const PahoCalls&) = delete;
  PahoCalls& operator=(const PahoCalls&) = delete;

  void run(std::function<void()> call) {
    if (!thread_.joinable()) {
      if (!stopped_) call();
      return;
    }
    {
      std::lock_guard lock(mutex_);
      if (stopped_) return;
      calls_.push_back(std::move(call));
    }
    wake_.notify_one();
  }

  /// Drops the calls not yet made and joins the thread (after the call in
  /// progress, if any, returns).
  void stop() {
    std::deque<std::function<void()>> dropped;
    {
      std::lock_guard lock(mutex_);
      stopped_ = true;
      dropped.swap(calls_);
    }
    wake_.notify_one();
    if (thread_.joinable()) thread_.join();
  }

 private:
  void loop() {
    std::unique_lock lock(mutex_);
    for (;;) {
      wake_.wait(lock, [this] { return stopped_ || !calls_.empty(); });
      if (stopped_) return;
      auto call = std::move(calls_.front());
      calls_.pop_front();
      lock.unlock();
      call();
      call = nullptr;  // what it holds goes here, not under the lock
      lock.lock();
    }
  }

  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::function<void()>> calls_;
  bool stopped_ = false;
  std::thread thread_;
};

std::chrono::milliseconds reconnect_delay(unsigned attempt, std::chrono::milliseconds base,
                                          std::chrono::milliseconds cap, std::mt19937_64& rng) {
  using std::chrono::milliseconds;
  auto ceiling = std::max<milliseconds>(base, milliseconds(1));
  for (unsigned i = 0; i < attempt && ceiling < cap; ++i) ceiling *= 2;
  ceiling = std::min<milliseconds>(ceiling, std::max<milliseconds>(cap, milliseconds(1)));
  std::uniform_int_distribution<std::int64_t> pick(0, ceiling.count());
  return milliseconds(pick(rng));
}

/// What Paho calls on its own threads. One per Paho client: a client
/// replaced by a TLS reload keeps calling its own adapter, whose generation
/// is no longer the state's, so whatever it still reports is ignored.
struct PahoCallbacks final : mqtt::callback, mqtt::iaction_listener {
  PahoCallbacks(asio::io_context& io, std::weak_ptr<MqttTransport::State> state,
                std::uint64_t generation, std::size_t max_unhandled)
      : io(io),
        state(std::move(state)),
        generation(generation),
        inbox(std::make_shared<Inbox>(max_unhandled)) {}

  asio::io_context& io;
  std::weak_ptr<MqttTransport::State> state;
  const std::uint64_t generation;
  const std::shared_ptr<Inbox> inbox;

  // --- Paho threads: post and return ---------------------------------------
  template <class F>
  void post(F f);

  void connection_lost(const std::string& cause) override;
  void message_arrived(mqtt::const_message_ptr msg) override;
  // Connect, publish and subscribe results; the user context is the id of
  // the pending operation (or of the connect attempt).
  void on_success(const mqtt::token& tok) override;
  void on_failure(const mqtt::token& tok) override;
};

/// Everything the transport owns. Paho's threads reach it only through
/// weak pointers captured in handlers posted to the io_context.
struct MqttTransport::State : std::enable_shared_from_this<State> {
  State(asio::io_context& io, MqttOptions o)
      : io(io), options(std::move(o)), timer(io), calls(options.max_unhandled > 0) {}

  asio::io_context& io;
  MqttOptions options;
  asio::steady_timer timer;
  mqtt::connect_options connect_options;
  // The adapters outlive the clients that call them (declared first,
  // destroyed last). The client a reload replaced is kept, disconnected,
  // until the next reload, so a callback Paho is still running on it never
  // meets a destroyed object. A call waiting in `calls` holds both.
  std::shared_ptr<PahoCallbacks> callbacks;
  std::shared_ptr<PahoCallbacks> retired_callbacks;
  std::shared_ptr<mqtt::async_client> client;
  std::shared_ptr<mqtt::async_client> retired_client;
  PahoCalls calls;
  std::uint64_t generation = 0;
  std::string tls_digest;

  TransportListener* listener = nullptr;
  bool is_connected = false;
  std::uint64_t connect_id = 0;  ///< the attempt in progress, 0 = none
  bool stopping = false;
  unsigned attempt = 0;
  std::uint64_t next_id = 1;
  std::map<std::uint64_t, Done> pending;
  std::string error;
  std::string logged_error;
  std::mt19937_64 rng{std::random_device{}()};

  /// A new Paho client for the broker with its own callback adapter; every
  /// callback is set before its first connect.
  Status make_client() {
    try {
      Inbox::Bypass open;  // creating a client takes Paho's lock
      auto c = std::make_shared<mqtt::async_client>(options.broker.broker, options.client_id,
                                                    mqtt::create_options(MQTTVERSION_5), nullptr);
      auto cb = std::make_shared<PahoCallbacks>(io, weak_from_this(), ++generation,
                                                options.max_unhandled);
      c->set_callback(*cb);
      retired_client = std::move(client);
      retired_callbacks = std::move(callbacks);
      client = std::move(c);
      callbacks = std::move(cb);
    } catch (const mqtt::exception& e) {
      return Error{fmt::format("broker {}: {}", options.broker.broker, e.what())};
    }
    return {};
  }

  /// Points the long-lived connect options at the files of `b` as they are
  /// now (Paho copies the paths and reads the files on each connect).
  Status apply_credentials(const config::BrokerConfig& b) {
    mqtt::connect_options& co = connect_options;
    if (!b.username.empty()) co.set_user_name(b.username);
    if (!b.password_file.empty()) {
      auto pw = config::read_secret(b.password_file);
      if (!pw) return Error{"password_file: " + pw.error().message};
      co.set_password(*pw);
    }
    if (uses_tls(b.broker)) {
      mqtt::ssl_options ssl;
      if (!b.ca_file.empty()) ssl.set_trust_store(b.ca_file.string());
      if (!b.cert_file.empty()) ssl.set_key_store(b.cert_file.string());
      if (!b.key_file.empty()) ssl.set_private_key(b.key_file.string());
      ssl.set_enable_server_cert_auth(true);
      ssl.set_verify(true);
      co.set_ssl(std::move(ssl));
    }
    return {};
  }

  // --- io_context thread -----------------------------------------------------
  void complete(std::uint64_t id, Status st) {
    if (connect_id != 0 && id == connect_id) {
      // Paho C 1.3.12 may report one connect success twice: the second
      // finds connect_id reset and is dropped below.
      connect_id = 0;
      if (stopping) return;
      if (st) {
        on_connected();
      } else {
        on_lost("connect to " + options.broker.broker + ": " + st.error().message);
      }
      return;
    }
    auto it = pending.find(id);
    if (it == pending.end()) return;  // failed already when the connection dropped
    Done done = std::move(it->second);
    pending.erase(it);
    done(std::move(st));
  }

  void on_connected() {
    is_connected = true;
    attempt = 0;
    error.clear();
    logged_error.clear();
    log::info("mqtt: connected to {} as {}", options.broker.broker, options.client_id);
    if (listener != nullptr) listener->on_connected();
  }

  void on_lost(const std::string& why) {
    bool was_connected = is_connected;
    is_connected = false;
    error = why;
    fail_pending(why);
    if (stopping) return;
    if (was_connected || why != logged_error) {
      log::warn("mqtt: {}; retrying", why);
      logged_error = why;
    } else {
      log::debug("mqtt: {}; retrying", why);
    }
    if (listener != nullptr) listener->on_disconnected(why);
    schedule_reconnect();
  }

  void fail_pending(const std::string& why) {
    auto doomed = std::move(pending);
    pending.clear();
    for (auto& [id, done] : doomed) done(Error{"not delivered: " + why});
  }

  void schedule_reconnect() {
    auto delay = reconnect_delay(attempt, options.reconnect_min, options.broker.reconnect_max, rng);
    ++attempt;
    log::debug("mqtt: next attempt in {} ms", delay.count());
    timer.expires_after(delay);
    timer.async_wait([w = weak_from_this()](const boost::system::error_code& ec) {
      if (ec) return;
      if (auto s = w.lock()) s->connect();
    });
  }

  void connect() {
    if (stopping || is_connected || connect_id != 0) return;
    if (listener != nullptr) {
      if (auto will = listener->will_for_next_connect()) {
        connect_options.set_will(mqtt::will_options(
            will->topic, will->payload.data(), will->payload.size(), will->qos, will->retained));
      }
    }
    connect_id = next_id++;
    try {
      Inbox::Bypass open;
      client->connect(connect_options,
                      reinterpret_cast<void*>(static_cast<std::uintptr_t>(connect_id)), *callbacks);
    } catch (const mqtt::exception& e) {
      connect_id = 0;
      on_lost(std::string("connect: ") + e.what());
    }
  }

  /// Makes the call `f(client, context, callbacks)` for pending operation
  /// `id` through `calls`, with the client and adapter of now; an exception
  /// completes the operation with an error (on the io_context thread).
  template <class F>
  void call(std::uint64_t id, const char* what, F f) {
    struct Held {  // the client goes before its adapter
      std::shared_ptr<PahoCallbacks> cb;
      std::shared_ptr<mqtt::async_client> c;
    };
    calls.run([h = Held{callbacks, client}, id, what, f = std::move(f)] {
      try {
        f(*h.c, reinterpret_cast<void*>(static_cast<std::uintptr_t>(id)), *h.cb);
      } catch (const mqtt::exception& e) {
        h.cb->post([id, why = fmt::format("{}: {}", what, e.what())](MqttTransport::State& s) {
          s.complete(id, Error{why});
        });
      }
    });
  }

  /// Disconnects the current client (briefly blocking: a reload is rare and
  /// Paho's callbacks only post) and retires it.
  void drop_client(std::chrono::milliseconds grace) {
    if (!client) return;
    // A receiving thread waiting for room would otherwise wait for good (no
    // one hands its messages over any more), and the disconnect with it.
    if (callbacks) callbacks->inbox->close();
    if (is_connected || connect_id != 0) {
      try {
        Inbox::Bypass open;
        auto tok = client->disconnect(static_cast<int>(grace.count()));
        tok->wait_for(grace + std::chrono::seconds(1));
      } catch (const mqtt::exception& e) {
        log::debug("mqtt: disconnect: {}", e.what());
      }
    }
  }
};

template <class F>
void PahoCallbacks::post(F f) {
  asio::post(io, [w = state, g = generation, f = std::move(f)]() mutable {
    auto s = w.lock();
    if (s && s->generation == g) f(*s);
  });
}

void PahoCallbacks::connection_lost(const std::string& cause) {
  post([cause](MqttTransport::State& s) { s.on_lost(cause.empty() ? "connection lost" : cause); });
}

void PahoCallbacks::message_arrived(mqtt::const_message_ptr msg) {
  Message m{msg->get_topic(), msg->to_string(), msg->get_qos(), msg->is_retained()};
  inbox->take();
  // Not post(): the place is given back even when the state is gone.
  asio::post(io, [w = state, g = generation, in = inbox, m = std::move(m)] {
    if (auto s = w.lock(); s && s->generation == g && s->listener != nullptr && !s->stopping) {
      s->listener->on_message(m);
    }
    in->give();
  });
}

void PahoCallbacks::on_success(const mqtt::token& tok) {
  auto id = reinterpret_cast<std::uintptr_t>(tok.get_user_context());
  post([id](MqttTransport::State& s) { s.complete(id, Status::success()); });
}

void PahoCallbacks::on_failure(const mqtt::token& tok) {
  auto id = reinterpret_cast<std::uintptr_t>(tok.get_user_context());
  std::string why = reason_text(tok);
  post([id, why](MqttTransport::State& s) { s.complete(id, Error{why}); });
}

Result<std::unique_ptr<MqttTransport>> MqttTransport::create(asio::io_context& io,
                                                             MqttOptions options) {
  auto s = std::make_shared<State>(io, std::move(options));
  const config::BrokerConfig& b = s->options.broker;
  if (auto st = s->make_client(); !st) return st.error();

  // Everything that points into memory of its own (credentials, TLS,
  // properties) is set on the object that lives on, not through the builder:
  // Paho C++ 1.2 copies connect_options without re-pointing the C struct at
  // the copy's own properties, so a builder's would be read after it is gone.
  mqtt::connect_options& co = s->connect_options;
  co = mqtt::connect_options_builder()
           .mqtt_version(MQTTVERSION_5)
           .clean_start(!s->options.persistent_session)
           .keep_alive_interval(std::chrono::duration_cast<std::chrono::seconds>(b.keepalive))
           .connect_timeout(std::chrono::seconds(10))
           .automatic_reconnect(false)
           .finalize();
  if (auto st = s->apply_credentials(b); !st) return st.error();
  s->tls_digest = tls_files_digest(b);
  if (s->options.persistent_session) {
    co.set_properties(
        mqtt::properties{{mqtt::property::SESSION_EXPIRY_INTERVAL,
                          static_cast<std::int32_t>(s->options.session_expiry.count())}});
  }
  return std::unique_ptr<MqttTransport>(new MqttTransport(std::move(s)));
}

MqttTransport::MqttTransport(std::shared_ptr<State> state) : state_(std::move(state)) {}

MqttTransport::~MqttTransport() {
  stop(std::chrono::milliseconds(0));
  // The inbox is closed: a call waiting for Paho's lock gets it.
  state_->calls.stop();
  // Destroying the client joins Paho's threads; after that no callback runs.
  Inbox::Bypass open;
  state_->client.reset();
  state_->retired_client.reset();
}

void MqttTransport::start(TransportListener& listener) {
  state_->listener = &listener;
  state_->connect();
}

void MqttTransport::stop(std::chrono::milliseconds grace) {
  State& s = *state_;
  if (s.stopping) return;
  s.stopping = true;
  s.timer.cancel();
  // Blocking here is fine: we are shutting down and Paho's callbacks only post.
  s.drop_client(grace);
  s.is_connected = false;
  s.connect_id = 0;
  s.fail_pending("transport stopped");
  s.listener = nullptr;
}

Result<bool> MqttTransport::reload_tls(const config::BrokerConfig& files) {
  State& s = *state_;
  if (auto st = check_tls_files(files); !st) return st.error();
  std::string digest = tls_files_digest(files);
  if (digest == s.tls_digest) return false;
  if (auto st = s.apply_credentials(files); !st) return st.error();
  s.tls_digest = std::move(digest);
  if (s.stopping) return true;
  // Paho C reads the files on each connect (a new SSL_CTX every time), but
  // it keeps the first TLS session of a client and offers it on the
  // client's later connects; a broker that resumed it would see the old
  // certificate's identity. A new client has no session: full handshake.
  const bool started = s.listener != nullptr;
  const bool was_connected = s.is_connected;
  s.timer.cancel();
  s.drop_client(kReloadGrace);
  s.is_connected = false;
  s.connect_id = 0;
  s.attempt = 0;
  auto made = s.make_client();
  const std::string why = "reconnecting with the reloaded TLS files";
  s.fail_pending(why);
  if (!started) return made ? Result<bool>(true) : Result<bool>(made.error());
  if (was_connected && s.listener != nullptr) s.listener->on_disconnected(why);
  if (!made) {
    s.error = made.error().message;
    s.schedule_reconnect();
    return made.error();
  }
  log::info("mqtt: {}", why);
  s.connect();
  return true;
}

bool MqttTransport::connected() const {
  return state_->is_connected;
}

std::string MqttTransport::last_error() const {
  return state_->error;
}

void MqttTransport::publish(Message m, Done done) {
  State& s = *state_;
  if (!s.is_connected) {
    asio::post(s.io, [done = std::move(done), why = s.error]() {
      done(Error{"not connected" + (why.empty() ? "" : ": " + why)});
    });
    return;
  }
  auto id = s.next_id++;
  s.pending.emplace(id, std::move(done));
  s.call(id, "publish",
         [msg = mqtt::make_message(m.topic, std::move(m.payload), m.qos, m.retained)](
             mqtt::async_client& c, void* context, PahoCallbacks& cb) {
           c.publish(msg, context, cb);
         });
}

void MqttTransport::subscribe(std::vector<std::string> filters, Done done) {
  State& s = *state_;
  if (!s.is_connected) {
    asio::post(s.io, [done = std::move(done)]() { done(Error{"not connected"}); });
    return;
  }
  auto id = s.next_id++;
  s.pending.emplace(id, std::move(done));
  s.call(id, "subscribe",
         [topics = mqtt::string_collection::create(filters),
          qos = std::vector<int>(filters.size(), 1)](mqtt::async_client& c, void* context,
                                                     PahoCallbacks& cb) {
           c.subscribe(topics, qos, context, cb);
         });
}

}  // namespace storewatch::sync
