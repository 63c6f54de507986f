// What HQ believes (issue 18, item 5): the real `storewatch hq run` against a
// real mosquitto that lets anyone in, and forged payloads published with
// mosquitto_pub, as anyone on the broker could. A seq near 2^63 (a gap that
// never closes, resync forever), a session near 2^63 (a store pinned
// offline), messages of stores nobody enrolled (ghost stores), and HQ's own
// commands, signed with each store's key. Then the broker ACL that
// docs/SYNC.md and config/examples/mosquitto/ ship: each store only its own
// topics, HQ only its own.

#include <signal.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <future>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <thread>

#include "config/config.h"
#include "sync/commands.h"
#include "sync/mqtt_transport.h"
#include "sync/wire.h"
#include "tests/support/run_on.h"
#include "tests/support/support.h"

namespace storewatch::test {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;
using namespace std::chrono_literals;

const std::string kForgeryPrefix = "storewatch/v1";
const std::string kRealStore = "store-0042";

wire::Event forgery_event(std::int64_t seq, const std::string& uid_prefix = "ev-") {
  wire::Event e;
  e.seq = seq;
  e.uid = uid_prefix + std::to_string(seq);
  e.incident = "inc-1";
  e.type = "opened";
  e.at = "2026-11-27T05:00:00.000Z";
  e.actor = "agent";
  e.body = json{{"incident_state",
                 {{"uid", "inc-1"},
                  {"probe", "lane-01-pos"},
                  {"state", "open"},
                  {"severity", "high"},
                  {"t_detect", "2026-11-27T05:00:00.000Z"}}}};
  return e;
}

std::string forgery_batch(const std::string& store, std::vector<std::int64_t> seqs,
                          const std::string& uid_prefix = "ev-") {
  wire::Batch b{store, {}};
  for (auto s : seqs) b.events.push_back(forgery_event(s, uid_prefix));
  return wire::encode_batch(b);
}

std::string forgery_status(const std::string& store, bool online, std::int64_t session) {
  wire::StoreStatus st{
      store, online, session, "0.1.0", {{"high", 0}}, 0, "2026-11-27T05:00:00.000Z"};
  return wire::encode_status(st);
}

int occurrences(const std::string& text, const std::string& needle) {
  int n = 0;
  for (auto at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
  return n;
}

class HqForgery : public ::testing::Test {
 protected:
  /// Starts `storewatch hq run` with `extra` lines in [hq] and waits for its
  /// subscriptions.
  void start_hq(const std::string& extra = "") {
    cfg_ = dir_ / "hq.toml";
    write_file(cfg_, fmt::format(R"([hq]
broker = "{}"
database = "{}"
client_id = "hq-forgery"
reconnect_max = "1s"
{}
)",
                                 broker_.uri(), (dir_ / "hq/hq.db").string(), extra));
    hq_ = std::make_unique<Child>(storewatch_command({"hq", "--config", cfg_.string(), "run"}),
                                  dir_ / "logs");
    ASSERT_TRUE(wait_until(
        [&] {
          return hq_->err().find("hq: subscribed to") != std::string::npos || !hq_->running();
        },
        20s))
        << hq_->err();
    ASSERT_TRUE(hq_->running()) << hq_->err();
  }

  /// Publishes as anyone may on this broker (no login), QoS 1.
  void pub(const std::string& topic, const std::string& payload, bool retained = false) {
    std::vector<std::string> argv{"mosquitto_pub",
                                  "-h",
                                  "127.0.0.1",
                                  "-p",
                                  std::to_string(broker_.port()),
                                  "-V",
                                  "mqttv5",
                                  "-q",
                                  "1",
                                  "-t",
                                  topic,
                                  "-m",
                                  payload};
    if (retained) argv.push_back("-r");
    auto r = run(argv);
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }

  /// Watches every store's cmd and ack topics with mosquitto_sub.
  void watch() {
    watcher_ = std::make_unique<Child>(
        std::vector<std::string>{"mosquitto_sub", "-h", "127.0.0.1", "-p",
                                 std::to_string(broker_.port()), "-V", "mqttv5", "-v", "-t",
                                 wire::Topics(kForgeryPrefix).all("cmd"), "-t",
                                 wire::Topics(kForgeryPrefix).all("ack"), "-t", "test/ready"},
        dir_ / "watch");
    ASSERT_TRUE(wait_until(
        [&] {
          pub("test/ready", "ready");
          return watcher_->out().find("test/ready ready") != std::string::npos;
        },
        10s));
  }
  /// The payloads seen on `topic`, in order.
  std::vector<std::string> seen(const std::string& topic) {
    std::vector<std::string> out;
    std::istringstream in(watcher_->out());
    for (std::string line; std::getline(in, line);) {
      if (line.starts_with(topic + " ")) out.push_back(line.substr(topic.size() + 1));
    }
    return out;
  }
  std::int64_t last_ack(const std::string& store) {
    auto acks = seen(topics_.ack(store));
    if (acks.empty()) return 0;
    auto seq = wire::decode_ack(acks.back());
    return seq.ok() ? *seq : -1;
  }

  json stores() {
    auto r = run(storewatch_command({"hq", "--config", cfg_.string(), "stores", "--json"}));
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return json::parse(r.out, nullptr, false);
  }
  json store_row(const std::string& id) {
    json list = stores();
    if (!list.is_array()) return nullptr;
    for (const auto& s : list) {
      if (s.value("store", "") == id) return s;
    }
    return nullptr;
  }

  /// The store's session at HQ; -1 while HQ has none.
  std::int64_t session_of(const std::string& id) {
    json row = store_row(id);
    if (!row.is_object() || !row["session"].is_number_integer()) return -1;
    return row["session"].get<std::int64_t>();
  }

  Broker broker_;
  TempDir dir_;
  std::filesystem::path cfg_;
  std::unique_ptr<Child> hq_;
  std::unique_ptr<Child> watcher_;
  const wire::Topics topics_{kForgeryPrefix};
};

TEST_F(HqForgery, ASeqNearTwoToThe63IsRefusedAndNoResyncLoopStarts) {
  start_hq("resync_after = \"300ms\"");
  watch();
  pub(topics_.events(kRealStore), forgery_batch(kRealStore, {1, 2}));
  ASSERT_TRUE(wait_until([&] { return last_ack(kRealStore) == 2; }, 10s)) << hq_->err();

  // The forgery: one event at 2^63-1. Stored, it would leave a gap from 3
  // that the store can never fill, and HQ would ask it to resync forever.
  const auto top = std::numeric_limits<std::int64_t>::max();
  pub(topics_.events(kRealStore), forgery_batch(kRealStore, {top}, "forged-"));
  // Refused (said in the log), or stored (a gap from 3).
  ASSERT_TRUE(wait_until(
      [&] {
        return hq_->err().find("refused 1 event(s)") != std::string::npos ||
               !store_row(kRealStore)["gap_from"].is_null();
      },
      10s))
      << hq_->err();
  json row = store_row(kRealStore);
  EXPECT_TRUE(row["gap_from"].is_null()) << row.dump();
  EXPECT_EQ(row["acked_seq"], 2);
  EXPECT_EQ(row["refused"]["seq_jump"], 1);
  EXPECT_FALSE(wait_until([&] { return !seen(topics_.cmd(kRealStore)).empty(); }, 1500ms))
      << "no resync is asked for a gap that is not there: "
      << testing::PrintToString(seen(topics_.cmd(kRealStore)));
  EXPECT_THAT(hq_->err(), HasSubstr(fmt::format("of store {} from seq {}", kRealStore, top)));
  EXPECT_THAT(hq_->err(), HasSubstr("max_seq_jump (100000)"));

  // The store's own events go on, and the forger's next try is counted, not
  // logged again.
  pub(topics_.events(kRealStore), forgery_batch(kRealStore, {3}));
  ASSERT_TRUE(wait_until([&] { return last_ack(kRealStore) == 3; }, 10s)) << hq_->err();
  pub(topics_.events(kRealStore), forgery_batch(kRealStore, {top - 1}, "forged-"));
  ASSERT_TRUE(wait_until([&] { return store_row(kRealStore)["refused"]["seq_jump"] == 2; }, 10s));
  EXPECT_EQ(occurrences(hq_->err(), "refused 1 event(s)"), 1);
  EXPECT_EQ(hq_->stop(SIGTERM), 0) << hq_->err();
}

TEST_F(HqForgery, AHugeSessionCannotPinAStoreOffline) {
  start_hq();
  pub(topics_.status(kRealStore), forgery_status(kRealStore, true, 5), true);
  ASSERT_TRUE(wait_until([&] { return session_of(kRealStore) == 5; }, 10s));

  // The forgery: a last will from a session no store reaches. Recorded, every
  // birth of the real store after it would be "older" and ignored.
  const std::int64_t huge = std::int64_t{1} << 62;
  pub(topics_.status(kRealStore), forgery_status(kRealStore, false, huge), true);
  // Refused (said in the log), or recorded (the store offline at `huge`).
  ASSERT_TRUE(wait_until(
      [&] {
        return hq_->err().find("refused a status of store " + kRealStore) != std::string::npos ||
               session_of(kRealStore) != 5;
      },
      10s))
      << hq_->err();
  json row = store_row(kRealStore);
  EXPECT_EQ(row["online"], true) << row.dump();
  EXPECT_EQ(row["session"], 5);
  EXPECT_EQ(row["refused"]["session_jump"], 1);
  EXPECT_THAT(hq_->err(), HasSubstr(fmt::format("session {} is more than max_session_jump", huge)));

  // The store reconnects: its status is taken as before, offline included.
  pub(topics_.status(kRealStore), forgery_status(kRealStore, true, 6), true);
  ASSERT_TRUE(wait_until([&] { return session_of(kRealStore) == 6; }, 10s));
  pub(topics_.status(kRealStore), forgery_status(kRealStore, false, 6), true);
  ASSERT_TRUE(wait_until([&] { return store_row(kRealStore)["online"] == false; }, 10s));
  EXPECT_EQ(hq_->stop(SIGTERM), 0) << hq_->err();
}

TEST_F(HqForgery, WithEnrollListStrangersAreRefusedAndLeaveNoTrace) {
  start_hq(fmt::format("enroll = \"list\"\nstores = [\"{}\"]", kRealStore));
  watch();
  for (int i = 0; i < 3; ++i) {
    for (const std::string& ghost : {std::string("ghost-1"), std::string("ghost-2")}) {
      pub(topics_.events(ghost), forgery_batch(ghost, {1, 2}));
      pub(topics_.status(ghost), forgery_status(ghost, true, 1), true);
    }
  }
  pub(topics_.events(kRealStore), forgery_batch(kRealStore, {1, 2}));
  pub(topics_.status(kRealStore), forgery_status(kRealStore, true, 1), true);
  ASSERT_TRUE(wait_until([&] { return last_ack(kRealStore) == 2; }, 10s)) << hq_->err();
  ASSERT_TRUE(wait_until([&] { return store_row(kRealStore)["online"] == true; }, 10s));

  json list = stores();
  ASSERT_EQ(list.size(), 1u) << list.dump();
  EXPECT_EQ(list[0]["store"], kRealStore);
  EXPECT_TRUE(seen(topics_.ack("ghost-1")).empty()) << "nothing of theirs is acknowledged";
  // Once per store, however often they come.
  const std::string err = hq_->err();
  EXPECT_EQ(occurrences(err, "of store ghost-1: it is not enrolled"), 1) << err;
  EXPECT_EQ(occurrences(err, "of store ghost-2: it is not enrolled"), 1) << err;
  EXPECT_THAT(err, HasSubstr("add it to [hq] stores"));

  // Restarted with a ghost enrolled, its retained status is taken in.
  ASSERT_EQ(hq_->stop(SIGTERM), 0) << hq_->err();
  start_hq(fmt::format("enroll = \"list\"\nstores = [\"{}\", \"ghost-1\"]", kRealStore));
  ASSERT_TRUE(wait_until([&] { return store_row("ghost-1").is_object(); }, 10s)) << hq_->err();
  EXPECT_TRUE(store_row("ghost-2").is_null());
  EXPECT_EQ(hq_->stop(SIGTERM), 0) << hq_->err();
}

TEST_F(HqForgery, WithEnrollAutoEachNewStoreIsLoggedOnce) {
  start_hq();
  watch();
  pub(topics_.status("store-a"), forgery_status("store-a", true, 1), true);
  pub(topics_.events("store-a"), forgery_batch("store-a", {1}));
  pub(topics_.events("store-a"), forgery_batch("store-a", {2}));
  pub(topics_.events("store-b"), forgery_batch("store-b", {1}));
  ASSERT_TRUE(wait_until([&] { return last_ack("store-a") == 2 && last_ack("store-b") == 1; }, 10s))
      << hq_->err();
  const std::string err = hq_->err();
  EXPECT_EQ(occurrences(err, "new store store-a"), 1) << err;
  EXPECT_EQ(occurrences(err, "new store store-b"), 1) << err;
  EXPECT_EQ(hq_->stop(SIGTERM), 0) << hq_->err();
}

TEST_F(HqForgery, ResyncCommandsAreSignedWithEachStoresOwnKey) {
  const std::string own_hex(64, 'b');
  const std::string fleet_hex(64, 'f');
  write_file(dir_ / "keys" / (kRealStore + ".key"), own_hex + "\n");
  write_file(dir_ / "fleet.key", fleet_hex + "\n");
  start_hq(
      fmt::format("resync_after = \"300ms\"\ncommand_keys_dir = \"{}\"\ncommand_key_file = "
                  "\"{}\"",
                  (dir_ / "keys").string(), (dir_ / "fleet.key").string()));
  watch();
  // A gap at each of two stores: 2 is missing.
  for (const std::string& store : {kRealStore, std::string("store-0043")}) {
    pub(topics_.events(store), forgery_batch(store, {1, 3}));
  }
  ASSERT_TRUE(wait_until(
      [&] {
        return !seen(topics_.cmd(kRealStore)).empty() && !seen(topics_.cmd("store-0043")).empty();
      },
      10s))
      << hq_->err();

  const auto now =
      std::chrono::duration_cast<std::chrono::seconds>(SystemClock().wall_now().time_since_epoch())
          .count();
  auto key = [](const std::string& hex) {
    return std::string(32, hex[0] == 'b' ? '\xbb' : '\xff');
  };
  auto check = [&](const std::string& store, const std::string& good_hex,
                   const std::string& other_hex) {
    const std::string payload = seen(topics_.cmd(store)).front();
    json envelope = json::parse(payload, nullptr, false);
    ASSERT_TRUE(envelope.is_object()) << payload;
    EXPECT_TRUE(envelope.contains("sig")) << payload;
    EXPECT_GT(envelope.value("exp", std::int64_t{0}), now);
    EXPECT_LE(envelope.value("exp", std::int64_t{0}), now + 700);
    auto taken = sync::parse_command(payload, sync::CommandAuth{store, key(good_hex), now});
    ASSERT_TRUE(taken.command) << taken.error;
    EXPECT_TRUE(taken.authenticated);
    EXPECT_EQ(taken.command->op, sync::CommandOp::resync);
    EXPECT_EQ(taken.command->from_seq, 2);
    auto other = sync::parse_command(payload, sync::CommandAuth{store, key(other_hex), now});
    EXPECT_FALSE(other.command) << store << " must not verify with the other key";
  };
  // store-0042 has a key of its own; store-0043 gets the fleet's.
  check(kRealStore, own_hex, fleet_hex);
  check("store-0043", fleet_hex, own_hex);
  EXPECT_THAT(hq_->err(), HasSubstr("commands are signed with the store's key in"));
  EXPECT_EQ(hq_->stop(SIGTERM), 0) << hq_->err();
}

TEST_F(HqForgery, AnUnusableStoreKeyIsSaidAndNothingIsSentUnsigned) {
  write_file(dir_ / "keys" / (kRealStore + ".key"), "not a key\n");
  start_hq(
      fmt::format("resync_after = \"300ms\"\ncommand_keys_dir = \"{}\"", (dir_ / "keys").string()));
  watch();
  pub(topics_.events(kRealStore), forgery_batch(kRealStore, {1, 3}));
  ASSERT_TRUE(wait_until(
      [&] {
        return hq_->err().find("cannot sign a command for store " + kRealStore) !=
               std::string::npos;
      },
      10s))
      << hq_->err();
  EXPECT_FALSE(wait_until([&] { return !seen(topics_.cmd(kRealStore)).empty(); }, 1000ms));
  EXPECT_EQ(occurrences(hq_->err(), "cannot sign a command"), 1);
  EXPECT_EQ(hq_->stop(SIGTERM), 0) << hq_->err();
}

// --- the shipped ACL ------------------------------------------------------------

/// One MQTT client with a login, on its own thread: publishes and says what
/// the broker answered, and keeps what it receives.
class AclClient final : public sync::TransportListener {
 public:
  AclClient(int port, const std::string& user, const std::filesystem::path& password_file,
            std::vector<std::string> filters)
      : filters_(std::move(filters)) {
    thread_ = std::thread([this] { io_.run(); });
    run_on(io_, [&] {
      sync::MqttOptions o;
      o.broker.broker = fmt::format("tcp://127.0.0.1:{}", port);
      o.broker.username = user;
      o.broker.password_file = password_file;
      o.broker.reconnect_max = 1s;
      o.client_id = user + "-acl-test";
      o.reconnect_min = 50ms;
      auto t = sync::MqttTransport::create(io_, o);
      EXPECT_TRUE(t.ok()) << (t.ok() ? "" : t.error().message);
      if (t.ok()) {
        transport_ = std::move(*t);
        transport_->start(*this);
      }
      return 0;
    });
  }
  ~AclClient() override {
    run_on(io_, [&] {
      if (transport_) transport_->stop(0ms);
      transport_.reset();
      return 0;
    });
    work_.reset();
    thread_.join();
  }

  void on_connected() override {
    if (filters_.empty()) {
      std::lock_guard lock(mu_);
      ready_ = true;
      return;
    }
    transport_->subscribe(filters_, [this](const Status&) {
      std::lock_guard lock(mu_);
      ready_ = true;
    });
  }
  void on_message(const sync::Message& m) override {
    std::lock_guard lock(mu_);
    received_.push_back(m.topic + " " + m.payload);
  }
  bool ready() {
    std::lock_guard lock(mu_);
    return ready_;
  }
  std::vector<std::string> received() {
    std::lock_guard lock(mu_);
    return received_;
  }
  /// Publishes at QoS 1; the broker's answer ("" when PUBACKed fine).
  std::string publish(const std::string& topic, const std::string& payload) {
    auto done = std::make_shared<std::promise<std::string>>();
    auto answer = done->get_future();
    run_on(io_, [&] {
      transport_->publish(sync::Message{topic, payload, 1, false}, [done](const Status& st) {
        done->set_value(st ? std::string() : st.error().message);
      });
      return 0;
    });
    if (answer.wait_for(10s) != std::future_status::ready) return "no answer";
    return answer.get();
  }

 private:
  std::vector<std::string> filters_;
  boost::asio::io_context io_;
  std::optional<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> work_{
      boost::asio::make_work_guard(io_)};
  std::thread thread_;
  std::unique_ptr<sync::MqttTransport> transport_;
  std::mutex mu_;
  bool ready_ = false;
  std::vector<std::string> received_;
};

TEST(BrokerAcl, TheShippedAclKeepsEveryoneToTheirOwnTopics) {
  TempDir dir;
  const std::map<std::string, std::string> passwords{
      {"store-a", "pw-a-7f3c"}, {"store-b", "pw-b-91d2"}, {"storewatch-hq", "pw-hq-5e0a"}};
  for (const auto& [user, pw] : passwords) write_file(dir / (user + ".password"), pw + "\n");
  Broker broker(passwords, std::filesystem::path(STOREWATCH_TEST_SOURCE_DIR) /
                               "config/examples/mosquitto/storewatch.acl");
  const wire::Topics t(kForgeryPrefix);

  // Without a login nothing connects.
  auto anonymous = run({"mosquitto_pub", "-h", "127.0.0.1", "-p", std::to_string(broker.port()),
                        "-V", "mqttv5", "-q", "1", "-t", t.events("store-a"), "-m", "x"});
  EXPECT_NE(anonymous.exit_code, 0);

  // HQ reads every store's events, status and answers (a shared
  // subscription, as workers use); each store its own ack and commands.
  AclClient hq(broker.port(), "storewatch-hq", dir / "storewatch-hq.password",
               {"$share/hq/" + t.all("events"), t.all("status"), t.all("cmd/result")});
  AclClient a(
      broker.port(), "store-a", dir / "store-a.password",
      {t.ack("store-a"), t.cmd("store-a"), t.cmd("store-b"), t.ack("store-b"), t.all("events")});
  AclClient b(broker.port(), "store-b", dir / "store-b.password", {});
  ASSERT_TRUE(wait_until([&] { return hq.ready() && a.ready() && b.ready(); }, 15s));

  // What each may do.
  EXPECT_EQ(b.publish(t.events("store-b"), "b-events"), "");
  EXPECT_EQ(b.publish(t.status("store-b"), "b-status"), "");
  EXPECT_EQ(b.publish(t.cmd_result("store-b"), "b-result"), "");
  EXPECT_EQ(hq.publish(t.cmd("store-a"), "hq-cmd-a"), "");
  EXPECT_EQ(hq.publish(t.ack("store-a"), "hq-ack-a"), "");
  EXPECT_EQ(hq.publish(t.cmd("store-b"), "hq-cmd-b"), "");

  // What none may: a store writing as another store, or writing its own
  // acks and commands; HQ writing events or status of a store.
  for (const auto& [topic, payload] : std::vector<std::pair<std::string, std::string>>{
           {t.events("store-a"), "b-forges-a-events"},
           {t.status("store-a"), "b-forges-a-status"},
           {t.cmd_result("store-a"), "b-forges-a-result"},
           {t.ack("store-b"), "b-acks-itself"},
           {t.cmd("store-b"), "b-commands-itself"},
           {t.cmd("store-a"), "b-commands-a"}}) {
    EXPECT_THAT(b.publish(topic, payload), HasSubstr("0x87")) << topic;
  }
  EXPECT_THAT(hq.publish(t.events("store-a"), "hq-forges-events"), HasSubstr("0x87"));
  EXPECT_THAT(hq.publish(t.status("store-a"), "hq-forges-status"), HasSubstr("0x87"));

  ASSERT_TRUE(wait_until([&] { return hq.received().size() >= 3; }, 10s));
  ASSERT_TRUE(wait_until([&] { return a.received().size() >= 2; }, 10s));
  // A last message through both, so nothing is still on its way.
  EXPECT_EQ(b.publish(t.events("store-b"), "b-last"), "");
  EXPECT_EQ(hq.publish(t.cmd("store-a"), "hq-last"), "");
  ASSERT_TRUE(wait_until(
      [&] {
        auto r = hq.received();
        return std::find(r.begin(), r.end(), t.events("store-b") + " b-last") != r.end();
      },
      10s));
  ASSERT_TRUE(wait_until(
      [&] {
        auto r = a.received();
        return std::find(r.begin(), r.end(), t.cmd("store-a") + " hq-last") != r.end();
      },
      10s));
  EXPECT_THAT(hq.received(), ::testing::UnorderedElementsAre(t.events("store-b") + " b-events",
                                                             t.status("store-b") + " b-status",
                                                             t.cmd_result("store-b") + " b-result",
                                                             t.events("store-b") + " b-last"));
  // store-a hears its own ack and commands, nothing of store-b's, and no
  // store's events.
  EXPECT_THAT(a.received(), ::testing::UnorderedElementsAre(t.cmd("store-a") + " hq-cmd-a",
                                                            t.ack("store-a") + " hq-ack-a",
                                                            t.cmd("store-a") + " hq-last"));
}

}  // namespace
}  // namespace storewatch::test
