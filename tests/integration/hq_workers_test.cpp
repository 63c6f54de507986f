// `storewatch hq run` as real processes against a real mosquitto, on each
// backend of HQ's database (a SQLite file, a throwaway PostgreSQL cluster):
// workers sharing the stores over an MQTT 5 shared subscription and one
// database, a worker killed and PostgreSQL restarted mid-drain,
// gap detection and resync commands, stale status, and HQ down while the
// stores keep publishing. A test MQTT client plays the stores (and, where a
// test says so, resends what HQ has not acked, as the agent does).

#include <signal.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "hq/hq_database.h"
#include "sync/mqtt_transport.h"
#include "sync/wire.h"
#include "tests/support/hq_backend.h"
#include "tests/support/run_on.h"
#include "tests/support/support.h"

namespace storewatch::hq {
namespace {

using nlohmann::json;
using test::Child;
using test::wait_until;
using namespace std::chrono_literals;

const std::string kTopicPrefix = "storewatch/v1";

wire::Event worker_event(std::int64_t seq) {
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
                  {"t_fault", "2025-11-26T21:59:30.000Z"},
                  {"t_detect", "2025-11-26T22:00:00.000Z"},
                  {"t_restored", seq % 2 == 1 ? json() : json("2025-11-26T22:05:00.000Z")},
                  {"t_resolved", seq % 2 == 1 ? json() : json("2025-11-26T22:05:00.000Z")},
                  {"self_healed", true}}}};
  return e;
}

std::string batch(const std::string& store, std::int64_t from, std::int64_t to) {
  wire::Batch b{store, {}};
  for (auto s = from; s <= to; ++s) b.events.push_back(worker_event(s));
  return wire::encode_batch(b);
}

/// The stores' side: one MQTT client on its own thread that publishes
/// batches and status, and watches every store's ack and cmd topics.
class Stores final : public sync::TransportListener {
 public:
  struct Command {
    std::string store;
    json body;
    std::chrono::steady_clock::time_point at;
  };

  Stores(const std::string& broker, const std::string& client_id) {
    thread_ = std::thread([this] { io_.run(); });
    on_io([&] {
      sync::MqttOptions o;
      o.broker.broker = broker;
      o.broker.reconnect_max = 1s;
      o.client_id = client_id;
      o.reconnect_min = 50ms;
      auto t = sync::MqttTransport::create(io_, o);
      EXPECT_TRUE(t.ok()) << (t.ok() ? "" : t.error().message);
      if (t.ok()) {
        transport_ = std::move(t).value();
        transport_->start(*this);
      }
      return 0;
    });
  }
  ~Stores() override {
    on_io([this] {
      if (transport_) transport_->stop(0ms);
      transport_.reset();
      return 0;
    });
    work_.reset();
    thread_.join();
  }

  template <class F>
  auto on_io(F f) -> decltype(f()) {
    return test::run_on(io_, std::move(f));
  }

  void on_connected() override {
    wire::Topics t(kTopicPrefix);
    transport_->subscribe({t.all("ack"), t.all("cmd")}, [this](const Status& st) {
      std::lock_guard lock(mu_);
      subscribed_ = st.ok();
    });
  }
  void on_disconnected(const std::string&) override {
    std::lock_guard lock(mu_);
    subscribed_ = false;
  }
  void on_message(const sync::Message& m) override {
    auto parsed = wire::Topics(kTopicPrefix).parse(m.topic);
    if (!parsed || m.payload.empty()) return;
    std::lock_guard lock(mu_);
    if (parsed->kind == "ack") {
      auto seq = wire::decode_ack(m.payload);
      EXPECT_TRUE(seq.ok()) << m.payload;
      if (seq.ok()) acks_[parsed->store].push_back(*seq);
    } else if (parsed->kind == "cmd") {
      commands_.push_back({parsed->store, json::parse(m.payload, nullptr, false),
                           std::chrono::steady_clock::now()});
    }
  }

  bool subscribed() {
    std::lock_guard lock(mu_);
    return subscribed_;
  }
  std::int64_t in_flight() {
    std::lock_guard lock(mu_);
    return sent_ - pubacked_ - failed_;
  }
  /// The highest ack seen for `store` (0 when none).
  std::int64_t highest_ack(const std::string& store) {
    std::lock_guard lock(mu_);
    auto it = acks_.find(store);
    if (it == acks_.end() || it->second.empty()) return 0;
    return *std::max_element(it->second.begin(), it->second.end());
  }
  std::int64_t last_ack(const std::string& store) {
    std::lock_guard lock(mu_);
    auto it = acks_.find(store);
    return it == acks_.end() || it->second.empty() ? 0 : it->second.back();
  }
  std::vector<Command> commands() {
    std::lock_guard lock(mu_);
    return commands_;
  }

  /// Publishes without waiting for the PUBACK, with at most 64 in flight
  /// (as the agent keeps a window); counts the outcome.
  void publish(std::string topic, std::string payload, bool retained = false) {
    EXPECT_TRUE(wait_until([this] { return in_flight() < 64; }, 20s)) << outcome();
    on_io([&] {
      {
        std::lock_guard lock(mu_);
        ++sent_;
      }
      transport_->publish(sync::Message{std::move(topic), std::move(payload), 1, retained},
                          [this](const Status& st) {
                            std::lock_guard lock(mu_);
                            ++(st ? pubacked_ : failed_);
                            if (!st && first_failure_.empty()) first_failure_ = st.error().message;
                          });
      return 0;
    });
  }
  /// Waits until every publish so far was PUBACKed or failed; true if none failed.
  bool settled(std::chrono::milliseconds timeout = 30s) {
    bool done = wait_until([this] { return in_flight() == 0; }, timeout);
    std::lock_guard lock(mu_);
    return done && failed_ == 0;
  }
  std::string outcome() {
    std::lock_guard lock(mu_);
    return fmt::format("{} sent, {} PUBACKed, {} failed (first: {})", sent_, pubacked_, failed_,
                       first_failure_);
  }

 private:
  boost::asio::io_context io_;
  std::optional<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> work_{
      boost::asio::make_work_guard(io_)};
  std::thread thread_;
  std::unique_ptr<sync::MqttTransport> transport_;
  std::mutex mu_;
  bool subscribed_ = false;
  std::int64_t sent_ = 0, pubacked_ = 0, failed_ = 0;
  std::string first_failure_;
  std::map<std::string, std::vector<std::int64_t>> acks_;
  std::vector<Command> commands_;
};

class HqWorkersTest : public testing::TestWithParam<test::Backend> {
 protected:
  void SetUp() override {
    db_ = std::make_unique<test::HqTestDatabase>(GetParam(), database_);
    if (!db_->skip_reason().empty()) GTEST_SKIP() << db_->skip_reason();
    db_->configure(hq_config_);
  }

  /// Writes a worker's hq.toml and returns its path.
  std::filesystem::path config(const std::string& client_id, const std::string& share_group,
                               const std::string& resync_after = "30s") {
    auto path = dir_ / (client_id + ".toml");
    test::write_file(
        path, fmt::format(R"([hq]
broker = "{}"
topic_prefix = "{}"
database = "{}"
client_id = "{}"
reconnect_max = "1s"
resync_after = "{}"
{}
)",
                          broker_.uri(), kTopicPrefix, hq_config_.database_name(), client_id,
                          resync_after,
                          share_group.empty() ? std::string()
                                              : fmt::format("share_group = \"{}\"", share_group)));
    return path;
  }

  /// Starts `storewatch hq run` and waits for its subscriptions.
  std::unique_ptr<Child> start_worker(const std::filesystem::path& cfg) {
    auto child = std::make_unique<Child>(
        test::storewatch_command({"hq", "--config", cfg.string(), "run"}), dir_ / "logs");
    Child* c = child.get();
    EXPECT_TRUE(wait_until(
        [c] { return c->err().find("hq: subscribed to") != std::string::npos || !c->running(); },
        20s))
        << c->err();
    EXPECT_TRUE(c->running()) << c->err();
    return child;
  }

  json hq_json(std::vector<std::string> args, const std::filesystem::path& cfg) {
    std::vector<std::string> full{"hq", "--config", cfg.string()};
    full.insert(full.end(), args.begin(), args.end());
    auto r = test::run(test::storewatch_command(full));
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return json::parse(r.out, nullptr, false);
  }

  /// Every store's acked seq as committed in the HQ database.
  std::map<std::string, std::int64_t> committed_acks() {
    std::map<std::string, std::int64_t> out;
    auto store = open_hq_database(hq_config_, HqOpen::read_only, "hq-workers-test");
    if (!store) return out;
    auto acks = (*store)->acked_seqs();
    if (!acks) return out;
    for (const auto& [s, seq] : *acks) out[s] = seq;
    return out;
  }

  std::int64_t query(const std::string& sql) { return db_->count(sql); }

  /// As the agent: re-sends, in batches, every seq above the highest ack
  /// seen, for each store not yet acked up to `n`.
  void resend_unacked(Stores& stores, const std::vector<std::string>& ids, std::int64_t n) {
    for (const auto& id : ids) {
      for (std::int64_t from = stores.highest_ack(id) + 1; from <= n; from += 10) {
        stores.publish(topics_.events(id), batch(id, from, std::min(n, from + 9)));
      }
    }
  }

  test::Broker broker_;
  test::TempDir dir_;
  std::filesystem::path database_ = dir_ / "hq/hq.db";
  const wire::Topics topics_{kTopicPrefix};
  std::unique_ptr<test::HqTestDatabase> db_;
  config::HqConfig hq_config_;
};

INSTANTIATE_TEST_SUITE_P(Backends, HqWorkersTest, testing::ValuesIn(test::hq_backends()),
                         test::backend_name);

TEST_P(HqWorkersTest, TwoWorkersShareTheStoresAndStoreEverythingExactlyOnce) {
  auto one = start_worker(config("hq-w1", "storewatch-hq"));
  auto two = start_worker(config("hq-w2", "storewatch-hq"));
  Stores stores(broker_.uri(), "stores-sim");
  ASSERT_TRUE(wait_until([&] { return stores.subscribed(); }, 15s));

  // 6 stores x 150 events in batches of 1..5, every batch of a store sent
  // once, a fifth of them twice, all shuffled: out of order, with
  // duplicates, and each store's batches split between the workers.
  const std::int64_t n = 150;
  std::vector<std::string> ids;
  std::vector<std::pair<std::string, std::string>> messages;
  std::mt19937 rng(20251127);
  for (int s = 0; s < 6; ++s) {
    const std::string id = fmt::format("store-{:04}", s + 1);
    ids.push_back(id);
    for (std::int64_t from = 1; from <= n;) {
      const std::int64_t to = std::min(n, from + static_cast<std::int64_t>(rng() % 5));
      messages.emplace_back(topics_.events(id), batch(id, from, to));
      if (rng() % 5 == 0) messages.emplace_back(topics_.events(id), batch(id, from, to));
      from = to + 1;
    }
  }
  std::shuffle(messages.begin(), messages.end(), rng);

  // The committed acks never go backwards: sampled while the load runs.
  std::map<std::string, std::int64_t> seen;
  bool backwards = false;
  auto sample = [&] {
    for (const auto& [id, seq] : committed_acks()) {
      if (seq < seen[id]) backwards = true;
      seen[id] = std::max(seen[id], seq);
    }
  };
  for (std::size_t i = 0; i < messages.size(); ++i) {
    stores.publish(messages[i].first, messages[i].second);
    if (i % 50 == 0) sample();
  }
  ASSERT_TRUE(stores.settled()) << stores.outcome();

  auto complete = [&] {
    return std::all_of(ids.begin(), ids.end(),
                       [&](const std::string& id) { return stores.highest_ack(id) == n; });
  };
  // Everything was delivered to a subscribed worker, so no resend should be
  // needed; a store that sends again (as the agent would after its ack
  // timeout) must still end the same.
  auto deadline = std::chrono::steady_clock::now() + 30s;
  while (!complete() && std::chrono::steady_clock::now() < deadline) {
    sample();
    if (wait_until(complete, 2s)) break;
    resend_unacked(stores, ids, n);
  }
  sample();
  ASSERT_TRUE(complete());
  EXPECT_FALSE(backwards);

  // The last ack each store hears is its highest: a lower one published by
  // the other worker after it is corrected.
  for (const auto& id : ids) {
    EXPECT_TRUE(wait_until([&] { return stores.last_ack(id) == n; }, 10s)) << id;
  }
  EXPECT_EQ(committed_acks(),
            (std::map<std::string, std::int64_t>{
                {ids[0], n}, {ids[1], n}, {ids[2], n}, {ids[3], n}, {ids[4], n}, {ids[5], n}}));

  // Exactly once, 1..n for every store, and both workers stored some.
  EXPECT_EQ(query("SELECT count(*) FROM events"), 6 * n);
  EXPECT_EQ(query("SELECT count(*) FROM (SELECT store FROM events GROUP BY store "
                  "HAVING count(*) = max(seq) AND min(seq) = 1) AS complete"),
            6);
  EXPECT_GT(query("SELECT count(*) FROM events WHERE worker = 'hq-w1'"), 0);
  EXPECT_GT(query("SELECT count(*) FROM events WHERE worker = 'hq-w2'"), 0);
  EXPECT_EQ(query("SELECT count(DISTINCT store) FROM events WHERE worker = 'hq-w1'"), 6);

  // A store connecting now finds its ack retained.
  Stores fresh(broker_.uri(), "stores-fresh");
  for (const auto& id : ids) {
    EXPECT_TRUE(wait_until([&] { return fresh.last_ack(id) == n; }, 10s)) << id;
  }

  // The CLI views read the same database.
  const auto cfg = dir_ / "hq-w1.toml";
  json list = hq_json({"stores", "--json"}, cfg);
  ASSERT_TRUE(list.is_array());
  ASSERT_EQ(list.size(), 6u);
  for (const auto& s : list) {
    EXPECT_EQ(s["acked_seq"], n);
    EXPECT_TRUE(s["gap_from"].is_null());
  }
  json incidents = hq_json({"incidents", "--json", "--store", ids[0]}, cfg);
  ASSERT_TRUE(incidents.is_array());
  EXPECT_EQ(incidents.size(), static_cast<std::size_t>((n + 1) / 2));
  json report = hq_json({"report", "--json", "--since", "36500d"}, cfg);
  EXPECT_EQ(report["fleet"]["incidents"], 6 * ((n + 1) / 2));
  EXPECT_EQ(report["stores"].size(), 6u);

  EXPECT_EQ(one->stop(SIGTERM), 0) << one->err();
  EXPECT_EQ(two->stop(SIGTERM), 0) << two->err();
}

TEST_P(HqWorkersTest, APersistingGapGetsTheStoreAResyncCommand) {
  auto hq = start_worker(config("hq-gap", "", "600ms"));
  Stores stores(broker_.uri(), "stores-sim");
  ASSERT_TRUE(wait_until([&] { return stores.subscribed(); }, 15s));
  const std::string id = "store-0042";

  stores.publish(topics_.events(id), batch(id, 1, 2));
  ASSERT_TRUE(wait_until([&] { return stores.highest_ack(id) == 2; }, 10s));
  // 3 and 4 are lost on the way.
  const auto hole_sent = std::chrono::steady_clock::now();
  stores.publish(topics_.events(id), batch(id, 5, 6));
  ASSERT_TRUE(stores.settled()) << stores.outcome();

  ASSERT_TRUE(wait_until([&] { return !stores.commands().empty(); }, 10s)) << hq->err();
  auto first = stores.commands().front();
  EXPECT_EQ(first.store, id);
  EXPECT_EQ(first.body["v"], 1);
  EXPECT_EQ(first.body["op"], "resync");
  EXPECT_EQ(first.body["from_seq"], 3);
  EXPECT_EQ(first.body["by"], "hq:gap");
  ASSERT_TRUE(first.body["id"].is_string());
  EXPECT_THAT(first.body["id"].get<std::string>(),
              testing::MatchesRegex("[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-"
                                    "[0-9a-f]{12}"));
  EXPECT_GE(first.at - hole_sent, 550ms);
  EXPECT_EQ(stores.highest_ack(id), 2);
  EXPECT_THAT(hq->err(), testing::HasSubstr("asking it to resync"));

  // Unanswered, it is asked again, but at most once per resync_after.
  ASSERT_TRUE(wait_until([&] { return stores.commands().size() >= 2; }, 10s));
  auto second = stores.commands()[1];
  EXPECT_GE(second.at - first.at, 550ms);
  EXPECT_NE(second.body["id"], first.body["id"]);
  EXPECT_EQ(second.body["from_seq"], 3);

  // The store answers with what was missing: acked in full, gap gone.
  stores.publish(topics_.events(id), batch(id, 3, 6));
  ASSERT_TRUE(wait_until([&] { return stores.highest_ack(id) == 6; }, 10s));
  json list = hq_json({"stores", "--json"}, dir_ / "hq-gap.toml");
  ASSERT_EQ(list.size(), 1u);
  EXPECT_TRUE(list[0]["gap_from"].is_null());
  EXPECT_GE(list[0]["resyncs"].get<int>(), 2);
  const auto asked = stores.commands().size();
  EXPECT_FALSE(wait_until([&] { return stores.commands().size() > asked; }, 1500ms));
  EXPECT_EQ(hq->stop(SIGTERM), 0) << hq->err();
}

TEST_P(HqWorkersTest, AStaleLastWillDoesNotMarkAReconnectedStoreOffline) {
  auto hq = start_worker(config("hq-status", ""));
  Stores stores(broker_.uri(), "stores-sim");
  ASSERT_TRUE(wait_until([&] { return stores.subscribed(); }, 15s));
  const std::string id = "store-0042";
  const auto cfg = dir_ / "hq-status.toml";
  auto store_json = [&]() -> json {
    json list = hq_json({"stores", "--json"}, cfg);
    // An object until HQ has the store: value() on null throws.
    return list.is_array() && list.size() == 1 ? list[0] : json::object();
  };

  wire::StoreStatus birth{id, true, 7, "0.1.0", {{"high", 1}}, 3, "2025-11-26T22:00:00.000Z"};
  stores.publish(topics_.status(id), wire::encode_status(birth), true);
  ASSERT_TRUE(wait_until([&] { return store_json().value("session", 0) == 7; }, 10s));
  EXPECT_EQ(store_json()["online"], true);

  // The broker publishes the will of session 6 late (its keepalive ran out
  // after the store had reconnected): ignored.
  wire::StoreStatus stale = birth;
  stale.online = false;
  stale.session = 6;
  stores.publish(topics_.status(id), wire::encode_status(stale), true);
  // A marker from another store, after the stale will on the same connection.
  wire::StoreStatus other{"store-0007", true, 1, "0.1.0", {}, 0, "2025-11-26T22:00:00.000Z"};
  stores.publish(topics_.status("store-0007"), wire::encode_status(other), true);
  ASSERT_TRUE(wait_until([&] { return hq_json({"stores", "--json"}, cfg).size() == 2; }, 10s));
  json list = hq_json({"stores", "--json"}, cfg);
  EXPECT_EQ(list[1]["store"], id);
  EXPECT_EQ(list[1]["online"], true);
  EXPECT_EQ(list[1]["session"], 7);

  // The will of the current session does count.
  wire::StoreStatus will = birth;
  will.online = false;
  stores.publish(topics_.status(id), wire::encode_status(will), true);
  ASSERT_TRUE(wait_until(
      [&] {
        json l = hq_json({"stores", "--json"}, cfg);
        return l.size() == 2 && l[1]["online"] == false;
      },
      10s));
  EXPECT_EQ(hq->stop(SIGTERM), 0) << hq->err();
}

TEST_P(HqWorkersTest, HqKilledWhileStoresPublishCatchesUpFromItsSession) {
  const auto cfg = config("hq-session", "");
  auto hq = start_worker(cfg);
  Stores stores(broker_.uri(), "stores-sim");
  ASSERT_TRUE(wait_until([&] { return stores.subscribed(); }, 15s));
  const std::vector<std::string> ids{"store-0001", "store-0002", "store-0003"};
  for (const auto& id : ids) stores.publish(topics_.events(id), batch(id, 1, 10));
  ASSERT_TRUE(wait_until(
      [&] {
        return std::all_of(ids.begin(), ids.end(),
                           [&](const auto& id) { return stores.highest_ack(id) == 10; });
      },
      10s));

  // HQ dies without a word; the stores keep producing.
  ASSERT_EQ(hq->stop(SIGKILL), 128 + SIGKILL) << hq->err();
  for (std::int64_t from = 11; from <= 200; from += 10) {
    for (const auto& id : ids) stores.publish(topics_.events(id), batch(id, from, from + 9));
  }
  ASSERT_TRUE(stores.settled()) << stores.outcome();
  EXPECT_EQ(committed_acks()[ids[0]], 10);

  // Back, with the same client id: the broker hands over what it queued in
  // the persistent session, without any store sending again.
  hq = start_worker(cfg);
  ASSERT_TRUE(wait_until(
      [&] {
        return std::all_of(ids.begin(), ids.end(),
                           [&](const auto& id) { return stores.highest_ack(id) == 200; });
      },
      20s))
      << hq->err();
  EXPECT_EQ(query("SELECT count(*) FROM events"), 3 * 200);
  EXPECT_EQ(hq->stop(SIGTERM), 0) << hq->err();
}

TEST_P(HqWorkersTest, OneOfThreeWorkersKilledMidLoadLosesNothingOnceStoresResend) {
  const auto cfg1 = config("hq-k1", "storewatch-hq");
  auto one = start_worker(cfg1);
  auto two = start_worker(config("hq-k2", "storewatch-hq"));
  auto three = start_worker(config("hq-k3", "storewatch-hq"));
  Stores stores(broker_.uri(), "stores-sim");
  ASSERT_TRUE(wait_until([&] { return stores.subscribed(); }, 15s));
  const std::vector<std::string> ids{"store-0001", "store-0002", "store-0003", "store-0004"};
  const std::int64_t n = 300;

  for (std::int64_t from = 1; from <= n; from += 3) {
    for (const auto& id : ids) stores.publish(topics_.events(id), batch(id, from, from + 2));
    // Mid-load, one worker dies: what it took from the broker and had not
    // committed is gone from the broker too.
    if (from == 148) {
      ASSERT_EQ(one->stop(SIGKILL), 128 + SIGKILL);
    }
  }
  ASSERT_TRUE(stores.settled()) << stores.outcome();
  one = start_worker(cfg1);

  auto complete = [&] {
    return std::all_of(ids.begin(), ids.end(),
                       [&](const auto& id) { return stores.highest_ack(id) == n; });
  };
  // The stores re-send what is not acked, as the agent does after its ack
  // timeout, until HQ has everything.
  auto deadline = std::chrono::steady_clock::now() + 40s;
  while (!complete() && std::chrono::steady_clock::now() < deadline) {
    if (wait_until(complete, 2s)) break;
    resend_unacked(stores, ids, n);
  }
  ASSERT_TRUE(complete()) << one->err() << two->err() << three->err();
  EXPECT_EQ(query("SELECT count(*) FROM events"), static_cast<std::int64_t>(ids.size()) * n);
  EXPECT_EQ(query("SELECT count(*) FROM (SELECT store FROM events GROUP BY store "
                  "HAVING count(*) = max(seq) AND min(seq) = 1) AS complete"),
            static_cast<std::int64_t>(ids.size()));
  EXPECT_EQ(committed_acks(), (std::map<std::string, std::int64_t>{
                                  {ids[0], n}, {ids[1], n}, {ids[2], n}, {ids[3], n}}));
  EXPECT_EQ(one->stop(SIGTERM), 0) << one->err();
  EXPECT_EQ(two->stop(SIGTERM), 0) << two->err();
  EXPECT_EQ(three->stop(SIGTERM), 0) << three->err();
}

#ifdef STOREWATCH_HAVE_POSTGRESQL
// PostgreSQL restarted while two workers drain four stores (`pg_ctl restart
// -m fast`: every connection cut, transactions in flight rolled back). The
// workers keep running, say so once, acknowledge nothing they could not
// commit, and once the stores send again everything is there exactly once.
class HqWorkersPgTest : public HqWorkersTest {};

TEST_P(HqWorkersPgTest, PostgresqlRestartedMidDrainLosesNothing) {
  auto one = start_worker(config("hq-r1", "storewatch-hq"));
  auto two = start_worker(config("hq-r2", "storewatch-hq"));
  Stores stores(broker_.uri(), "stores-sim");
  ASSERT_TRUE(wait_until([&] { return stores.subscribed(); }, 15s));
  const std::vector<std::string> ids{"store-0001", "store-0002", "store-0003", "store-0004"};
  const std::int64_t n = 300;
  for (std::int64_t from = 1; from <= n; from += 3) {
    for (const auto& id : ids) stores.publish(topics_.events(id), batch(id, from, from + 2));
    if (from == 148) db_->cluster()->restart();
  }
  ASSERT_TRUE(stores.settled()) << stores.outcome();
  auto complete = [&] {
    return std::all_of(ids.begin(), ids.end(),
                       [&](const auto& id) { return stores.highest_ack(id) == n; });
  };
  auto deadline = std::chrono::steady_clock::now() + 60s;
  while (!complete() && std::chrono::steady_clock::now() < deadline) {
    if (wait_until(complete, 2s)) break;
    resend_unacked(stores, ids, n);
  }
  ASSERT_TRUE(complete()) << one->err() << two->err();
  EXPECT_TRUE(one->running()) << one->err();
  EXPECT_TRUE(two->running()) << two->err();
  EXPECT_EQ(query("SELECT count(*) FROM events"), static_cast<std::int64_t>(ids.size()) * n);
  EXPECT_EQ(query("SELECT count(*) FROM (SELECT store FROM events GROUP BY store "
                  "HAVING count(*) = max(seq) AND min(seq) = 1) AS complete"),
            static_cast<std::int64_t>(ids.size()));
  EXPECT_EQ(committed_acks(), (std::map<std::string, std::int64_t>{
                                  {ids[0], n}, {ids[1], n}, {ids[2], n}, {ids[3], n}}));
  // At least one of them was cut mid-commit or found its connection gone,
  // said so, and said when the database answered again.
  const std::string logs = one->err() + two->err();
  EXPECT_THAT(logs, testing::HasSubstr("the database answers again")) << logs;
  // `hq workers` shows both, neither silent.
  json workers = hq_json({"workers", "--json"}, dir_ / "hq-r1.toml");
  ASSERT_TRUE(wait_until(
      [&] {
        workers = hq_json({"workers", "--json"}, dir_ / "hq-r1.toml");
        return workers.size() == 2 && workers[0]["silent"] == false &&
               workers[1]["silent"] == false;
      },
      15s))
      << workers.dump();
  EXPECT_EQ(workers[0]["worker"], "hq-r1");
  EXPECT_EQ(one->stop(SIGTERM), 0) << one->err();
  EXPECT_EQ(two->stop(SIGTERM), 0) << two->err();
}

INSTANTIATE_TEST_SUITE_P(PostgreSQL, HqWorkersPgTest, testing::Values(test::Backend::postgresql),
                         test::backend_name);
#endif

}  // namespace
}  // namespace storewatch::hq
