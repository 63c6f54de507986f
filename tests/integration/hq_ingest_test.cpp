// HQ's ingest against a real mosquitto: a second MQTT client plays the store.

#include <signal.h>
#include <unistd.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "hq/hq_database.h"
#include "hq/hq_store.h"
#include "hq/ingest.h"
#include "hq/run.h"
#include "sync/mqtt_transport.h"
#include "tests/support/hq_backend.h"
#include "tests/support/run_on.h"
#include "tests/support/support.h"

namespace storewatch::hq {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

const std::string kPrefix = "storewatch/v1";
const std::string kStore = "store-0042";

wire::Event event(std::int64_t seq) {
  wire::Event e;
  e.seq = seq;
  e.uid = "ev-" + std::to_string(seq);
  e.incident = "inc-" + std::to_string((seq + 1) / 2);
  e.type = seq % 2 == 1 ? "opened" : "resolved";
  e.at = "2025-11-26T22:00:00.000Z";
  e.actor = "agent";
  e.body = json{{"incident_state",
                 {{"uid", e.incident},
                  {"probe", "lane-01-pos"},
                  {"state", seq % 2 == 1 ? "open" : "resolved"},
                  {"severity", "high"},
                  {"t_detect", "2025-11-26T22:00:00.000Z"}}}};
  return e;
}

std::string batch(const std::string& store, const std::vector<std::int64_t>& seqs) {
  wire::Batch b{store, {}};
  for (auto s : seqs) b.events.push_back(event(s));
  return wire::encode_batch(b);
}

/// One MQTT client that watches a store's ack topic, as the agent does.
class AckWatcher final : public sync::TransportListener {
 public:
  struct Ack {
    std::int64_t seq;
    bool retained;
  };

  void attach(sync::Transport& t) { transport_ = &t; }

  void on_connected() override {
    transport_->subscribe({wire::Topics(kPrefix).ack(kStore)}, [this](const Status& st) {
      std::lock_guard lock(mu_);
      subscribed_ = st.ok();
    });
  }
  void on_disconnected(const std::string&) override {
    std::lock_guard lock(mu_);
    subscribed_ = false;
  }
  void on_message(const sync::Message& m) override {
    if (m.payload.empty()) return;
    auto seq = wire::decode_ack(m.payload);
    ASSERT_TRUE(seq.ok()) << m.payload;
    std::lock_guard lock(mu_);
    acks_.push_back({*seq, m.retained});
  }

  bool subscribed() {
    std::lock_guard lock(mu_);
    return subscribed_;
  }
  std::vector<Ack> acks() {
    std::lock_guard lock(mu_);
    return acks_;
  }
  std::optional<std::int64_t> last() {
    std::lock_guard lock(mu_);
    if (acks_.empty()) return std::nullopt;
    return acks_.back().seq;
  }

 private:
  sync::Transport* transport_ = nullptr;
  std::mutex mu_;
  bool subscribed_ = false;
  std::vector<Ack> acks_;
};

/// A store's MQTT client and what it has seen.
struct StoreClient {
  AckWatcher watcher;
  std::unique_ptr<sync::MqttTransport> transport;
};

/// On each backend of HQ's database (hq_backend.h).
class HqIngestTest : public testing::TestWithParam<test::Backend> {
 protected:
  HqIngestTest() {
    config_.broker = broker_.uri();
    config_.topic_prefix = kPrefix;
    config_.reconnect_max = 1s;
    config_.client_id = "hq-test";
  }

  void SetUp() override {
    db_ = std::make_unique<test::HqTestDatabase>(GetParam(), dir_ / "hq/hq.db");
    if (!db_->skip_reason().empty()) GTEST_SKIP() << db_->skip_reason();
    db_->configure(config_);
    auto store = open_hq_database(config_, HqOpen::read_write, "hq-test");
    ASSERT_TRUE(store.ok()) << store.error().message;
    store_ = std::move(*store);
    thread_ = std::thread([this] { io_.run(); });
    start_hq();
    store_client_ = &connect_store_client(kStore);
  }

  void TearDown() override {
    if (!thread_.joinable()) return;  // skipped
    on_io([this] {
      ingest_.reset();
      hq_transport_.reset();
      workers_.clear();
      clients_.clear();
      return 0;
    });
    work_.reset();
    thread_.join();
  }

  /// Runs `f` on the io_context thread and returns its result.
  template <class F>
  auto on_io(F f) -> decltype(f()) {
    return test::run_on(io_, std::move(f));
  }

  /// Call on the io_context thread.
  std::unique_ptr<sync::MqttTransport> make_transport(const std::string& client_id,
                                                      bool persistent) {
    sync::MqttOptions o;
    o.broker = config_;
    o.client_id = client_id;
    o.persistent_session = persistent;
    o.session_expiry = persistent ? 60s : 0s;
    o.reconnect_min = 50ms;
    auto t = sync::MqttTransport::create(io_, o);
    EXPECT_TRUE(t.ok()) << (t.ok() ? "" : t.error().message);
    return t.ok() ? std::move(t).value() : nullptr;
  }

  /// Starts HQ's ingest (again, after stop_hq(): the same client id resumes
  /// the persistent session) and waits for its subscriptions.
  void start_hq() {
    bool started = on_io([this] {
      ingest_.reset();
      hq_transport_ = make_transport(config_.client_id, true);
      if (!hq_transport_) return false;
      ingest_ =
          std::make_unique<Ingest>(config_, *store_, *hq_transport_, clock_, io_.get_executor());
      ingest_->start();
      return true;
    });
    ASSERT_TRUE(started);
    ASSERT_TRUE(test::wait_until([this] { return stats().subscribed; }, 15s));
  }

  void stop_hq() {
    on_io([this] {
      ingest_->stop(1s);
      return 0;
    });
  }

  /// A client that subscribes to the store's ack topic, connected.
  StoreClient& connect_store_client(const std::string& client_id) {
    StoreClient* c = on_io([this, client_id] {
      auto client = std::make_unique<StoreClient>();
      client->transport = make_transport(client_id, false);
      if (!client->transport) return static_cast<StoreClient*>(nullptr);
      client->watcher.attach(*client->transport);
      client->transport->start(client->watcher);
      clients_.push_back(std::move(client));
      return clients_.back().get();
    });
    EXPECT_NE(c, nullptr);
    EXPECT_TRUE(test::wait_until([c] { return c->watcher.subscribed(); }, 15s));
    return *c;
  }

  AckWatcher& acks() { return store_client_->watcher; }

  /// Publishes from the store's client and waits for the PUBACK.
  void publish(const std::string& topic, const std::string& payload, bool retained = false) {
    auto done = std::make_shared<std::promise<Status>>();
    auto result = done->get_future();
    on_io([&, done] {
      store_client_->transport->publish(sync::Message{topic, payload, 1, retained},
                                        [done](const Status& st) { done->set_value(st); });
      return 0;
    });
    ASSERT_EQ(result.wait_for(10s), std::future_status::ready);
    Status st = result.get();
    ASSERT_TRUE(st.ok()) << st.error().message;
  }

  void publish_events(const std::vector<std::int64_t>& seqs) {
    publish(topics_.events(kStore), batch(kStore, seqs));
  }

  IngestStats stats() {
    return on_io([this] { return ingest_->stats(); });
  }

  std::int64_t count_events() { return db_->count("SELECT count(*) FROM events"); }

  std::int64_t stored_ack() {
    auto acks = on_io([this] { return store_->acked_seqs(); });
    EXPECT_TRUE(acks.ok());
    for (const auto& [store, seq] : *acks) {
      if (store == kStore) return seq;
    }
    return 0;
  }

  test::Broker broker_;
  test::TempDir dir_;
  config::HqConfig config_;
  const wire::Topics topics_{kPrefix};
  SystemClock clock_;
  boost::asio::io_context io_;
  std::optional<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> work_{
      boost::asio::make_work_guard(io_)};
  std::thread thread_;
  std::unique_ptr<test::HqTestDatabase> db_;
  std::unique_ptr<HqDatabase> store_;
  // Owned and destroyed on the io_context thread.
  std::unique_ptr<sync::MqttTransport> hq_transport_;
  std::unique_ptr<Ingest> ingest_;
  std::vector<std::unique_ptr<StoreClient>> clients_;
  StoreClient* store_client_ = nullptr;

  /// An extra HQ worker with its own connection to the shared database.
  struct Worker {
    std::unique_ptr<HqDatabase> store;
    std::unique_ptr<sync::MqttTransport> transport;
    std::unique_ptr<Ingest> ingest;
  };
  std::vector<std::unique_ptr<Worker>> workers_;

  Worker& start_worker(const config::HqConfig& config) {
    Worker* w = on_io([this, &config] {
      auto worker = std::make_unique<Worker>();
      auto store = open_hq_database(config, HqOpen::read_write, config.client_id);
      EXPECT_TRUE(store.ok()) << (store.ok() ? "" : store.error().message);
      worker->store = std::move(*store);
      worker->transport = make_transport(config.client_id, true);
      worker->ingest = std::make_unique<Ingest>(config, *worker->store, *worker->transport, clock_,
                                                io_.get_executor());
      worker->ingest->start();
      workers_.push_back(std::move(worker));
      return workers_.back().get();
    });
    EXPECT_TRUE(
        test::wait_until([&] { return on_io([w] { return w->ingest->stats(); }).subscribed; }));
    return *w;
  }
};

TEST_P(HqIngestTest, AcksABatchAndDropsItsDuplicates) {
  publish_events({1, 2, 3});
  ASSERT_TRUE(test::wait_until([this] { return acks().last() == 3; }, 10s));
  EXPECT_EQ(count_events(), 3);

  publish_events({1, 2, 3});
  ASSERT_TRUE(test::wait_until([this] { return stats().duplicates == 3; }, 10s));
  EXPECT_EQ(count_events(), 3);
  EXPECT_EQ(stored_ack(), 3);
  EXPECT_EQ(stats().inserted, 3);

  auto incidents = on_io([this] { return store_->incidents_json(kStore, false); });
  ASSERT_TRUE(incidents.ok());
  ASSERT_EQ(incidents->size(), 2u);
  EXPECT_EQ((*incidents)[0]["state"], "resolved");
  EXPECT_EQ((*incidents)[1]["state"], "open");
}

TEST_P(HqIngestTest, AGapHoldsTheAckBack) {
  publish_events({1, 2});
  ASSERT_TRUE(test::wait_until([this] { return acks().last() == 2; }, 10s));

  publish_events({4, 5});
  ASSERT_TRUE(test::wait_until([this] { return stats().batches == 2; }, 10s));
  EXPECT_EQ(count_events(), 4);
  EXPECT_EQ(stored_ack(), 2);

  publish_events({3});
  ASSERT_TRUE(test::wait_until([this] { return acks().last() == 5; }, 10s));
  // In order on one connection: had the gap produced an ack, it would be here.
  std::vector<std::int64_t> seen;
  for (const auto& a : acks().acks()) seen.push_back(a.seq);
  EXPECT_THAT(seen, testing::ElementsAre(2, 5));
}

TEST_P(HqIngestTest, DropsMalformedMessagesAndKeepsRunning) {
  publish(topics_.events(kStore), "not json");
  publish(topics_.events(kStore), R"({"v":2,"store":"store-0042","events":[]})");
  publish(topics_.events(kStore), batch("store-0099", {1}));
  publish(topics_.status(kStore), R"({"v":1,"store":"store-0042"})");
  ASSERT_TRUE(test::wait_until([this] { return stats().dropped == 4; }, 10s));

  publish_events({1});
  ASSERT_TRUE(test::wait_until([this] { return acks().last() == 1; }, 10s));
  auto stores = on_io([this] { return store_->stores_json(); });
  ASSERT_TRUE(stores.ok());
  ASSERT_EQ(stores->size(), 1u);
  EXPECT_EQ((*stores)[0]["store"], kStore);
}

TEST_P(HqIngestTest, RecordsTheRetainedStatus) {
  wire::StoreStatus birth{kStore, true, 3, "0.1.0", {{"high", 1}}, 0, "2025-11-26T22:00:00.000Z"};
  publish(topics_.status(kStore), wire::encode_status(birth), true);
  auto online = [this] {
    auto stores = on_io([this] { return store_->stores_json(); });
    return stores.ok() && stores->size() == 1 && (*stores)[0]["online"] == true;
  };
  ASSERT_TRUE(test::wait_until(online, 10s));

  wire::StoreStatus stale_will = birth;
  stale_will.online = false;
  stale_will.session = 2;
  publish(topics_.status(kStore), wire::encode_status(stale_will), true);
  wire::StoreStatus other{"store-0007", true, 1, "0.1.0", {}, 0, "2025-11-26T22:00:00.000Z"};
  publish(topics_.status("store-0007"), wire::encode_status(other), true);
  ASSERT_TRUE(test::wait_until(
      [this] {
        auto stores = on_io([this] { return store_->stores_json(); });
        return stores.ok() && stores->size() == 2;
      },
      10s));
  // Messages of one publisher arrive in order: the stale will came first.
  auto stores = on_io([this] { return store_->stores_json(); });
  ASSERT_TRUE(stores.ok());
  EXPECT_EQ((*stores)[1]["store"], kStore);
  EXPECT_EQ((*stores)[1]["online"], true);
  EXPECT_EQ((*stores)[1]["session"], 3);
}

TEST_P(HqIngestTest, RepublishesItsAcksAfterABrokerRestart) {
  publish_events({1, 2});
  ASSERT_TRUE(test::wait_until([this] { return acks().last() == 2; }, 10s));
  const auto published = stats().acks_published;

  broker_.stop();
  ASSERT_TRUE(test::wait_until([this] { return !stats().connected; }, 10s));
  broker_.start();
  ASSERT_TRUE(test::wait_until(
      [this, published] {
        auto s = stats();
        return s.subscribed && s.acks_published > published;
      },
      15s));

  // A store connecting now finds its ack retained, though the broker lost
  // everything it had.
  AckWatcher& fresh = connect_store_client("store-0042-fresh").watcher;
  ASSERT_TRUE(test::wait_until([&fresh] { return fresh.last() == 2; }, 10s));
  EXPECT_TRUE(fresh.acks().front().retained);
}

TEST_P(HqIngestTest, WorkersOfASharedSubscriptionSplitAStoreAndStillAckItInFull) {
  stop_hq();
  config::HqConfig shared = config_;
  shared.share_group = "storewatch-hq";
  shared.client_id = "hq-worker-1";
  Worker& one = start_worker(shared);
  shared.client_id = "hq-worker-2";
  Worker& two = start_worker(shared);
  EXPECT_EQ(one.ingest->subscriptions().front(),
            "$share/storewatch-hq/storewatch/v1/stores/+/events");

  for (std::int64_t seq = 1; seq <= 8; ++seq) publish_events({seq});
  // Acks of two workers may overtake each other: wait for the highest.
  auto highest = [this] {
    std::int64_t max = 0;
    for (const auto& a : acks().acks()) max = std::max(max, a.seq);
    return max;
  };
  ASSERT_TRUE(test::wait_until([&] { return highest() == 8; }, 10s));
  EXPECT_EQ(count_events(), 8);
  auto [first, second] = on_io([&] {
    return std::pair{one.ingest->stats().inserted, two.ingest->stats().inserted};
  });
  EXPECT_EQ(first + second, 8);
  EXPECT_GT(first, 0);
  EXPECT_GT(second, 0);
}

TEST_P(HqIngestTest, EventsSentWhileHqIsDownArriveWhenItReturns) {
  publish_events({1});
  ASSERT_TRUE(test::wait_until([this] { return acks().last() == 1; }, 10s));
  stop_hq();

  // The broker queues these in HQ's persistent session.
  publish_events({2, 3});

  start_hq();
  ASSERT_TRUE(test::wait_until([this] { return acks().last() == 3; }, 10s));
  EXPECT_EQ(count_events(), 3);
}

INSTANTIATE_TEST_SUITE_P(Backends, HqIngestTest, testing::ValuesIn(test::hq_backends()),
                         test::backend_name);

TEST(HqRun, FailsWhenTheDatabaseCannotBeOpened) {
  test::TempDir dir;
  test::write_file(dir / "hq.db", std::string(4096, 'x'));
  config::HqConfig config;
  config.database = dir / "hq.db";
  EXPECT_EQ(run(config), 1);
}

TEST(HqRun, WaitsForTheBrokerAndStopsOnSigterm) {
  test::Broker broker;
  test::TempDir dir;
  broker.stop();

  config::HqConfig config;
  config.broker = broker.uri();
  config.database = dir / "hq/hq.db";
  config.reconnect_max = 500ms;
  config.client_id = "hq-run-test";
  std::promise<int> exit_code;
  auto exited = exit_code.get_future();
  std::thread hq([&] { exit_code.set_value(run(config)); });
  // On every way out of the test: run() has its signal handler by the time
  // anything below can fail, as it answered the store.
  struct Join {
    std::thread& t;
    ~Join() {
      if (!t.joinable()) return;
      ::kill(::getpid(), SIGTERM);
      t.join();
    }
  } join{hq};

  // The broker comes up after HQ has opened its database and gone for it.
  ASSERT_TRUE(test::wait_until([&] { return std::filesystem::exists(config.database); }, 10s));
  broker.start();

  // The store's side runs on this thread, between polls.
  boost::asio::io_context io;
  auto work = boost::asio::make_work_guard(io);
  sync::MqttOptions o;
  o.broker = config;
  o.client_id = kStore;
  auto store = sync::MqttTransport::create(io, o);
  ASSERT_TRUE(store.ok());
  AckWatcher watcher;
  watcher.attach(**store);
  (*store)->start(watcher);
  auto polled = [&io](auto done) {
    return [&io, done] {
      io.poll();
      return done();
    };
  };
  ASSERT_TRUE(test::wait_until(polled([&] { return watcher.subscribed(); }), 10s));

  // Sent again until HQ, once subscribed, answers — as the agent does.
  const auto topic = wire::Topics(kPrefix).events(kStore);
  auto next_send = std::chrono::steady_clock::now();
  ASSERT_TRUE(test::wait_until(polled([&] {
                                 if (watcher.last() == 2) return true;
                                 if (std::chrono::steady_clock::now() >= next_send) {
                                   (*store)->publish(
                                       sync::Message{topic, batch(kStore, {1, 2}), 1, false},
                                       [](const Status&) {});
                                   next_send += 250ms;
                                 }
                                 return false;
                               }),
                               15s));
  (*store)->stop(0ms);

  ASSERT_EQ(::kill(::getpid(), SIGTERM), 0);
  ASSERT_EQ(exited.wait_for(10s), std::future_status::ready);
  hq.join();
  EXPECT_EQ(exited.get(), 0);

  auto hq_store = HqStore::open(config.database, db::Database::Mode::read_only);
  ASSERT_TRUE(hq_store.ok()) << hq_store.error().message;
  auto acks = hq_store->acked_seqs();
  ASSERT_TRUE(acks.ok());
  EXPECT_EQ(*acks, (std::vector<std::pair<std::string, std::int64_t>>{{kStore, 2}}));
}

}  // namespace
}  // namespace storewatch::hq
