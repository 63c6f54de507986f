// HQ commands end to end: the real `storewatch run`, a real mosquitto, and a
// test client playing HQ that publishes on P/stores/S/cmd and reads
// P/stores/S/cmd/result. Every op changes the incident once (events with the
// actor hq:NAME), a repeated id is applied once, and a flood of malformed and
// hostile commands (issue 5, fault test 6d) is refused while the daemon stays
// up and keeps syncing.

#include <signal.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <fmt/format.h>

#include <future>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include "agent/store.h"
#include "base/clock.h"
#include "sync/commands.h"
#include "sync/mqtt_transport.h"
#include "sync/wire.h"
#include "tests/support/run_on.h"
#include "tests/support/support.h"
#include "tests/support/tcp_device.h"

namespace storewatch::test {
namespace {

using nlohmann::json;

const std::string kStore = "store-cmd";
const std::string kPrefix = "storewatch/v1";

/// Plays HQ: publishes commands, collects answers and the store's events.
class HqClient final : public sync::TransportListener {
 public:
  explicit HqClient(const std::string& broker) {
    thread_ = std::thread([this] { io_.run(); });
    on_io([&] {
      sync::MqttOptions o;
      o.broker.broker = broker;
      o.client_id = "hq-test-client";
      o.reconnect_min = std::chrono::milliseconds(50);
      auto t = sync::MqttTransport::create(io_, o);
      EXPECT_TRUE(t.ok());
      if (!t.ok()) return 0;
      transport_ = std::move(*t);
      transport_->start(*this);
      return 0;
    });
  }
  ~HqClient() override {
    on_io([&] {
      transport_.reset();
      return 0;
    });
    work_.reset();
    thread_.join();
  }

  void on_connected() override {
    transport_->subscribe({topics_.cmd_result(kStore), topics_.events(kStore)},
                          [this](const Status& st) {
                            std::lock_guard lock(mu_);
                            subscribed_ = st.ok();
                          });
  }
  void on_message(const sync::Message& m) override {
    std::lock_guard lock(mu_);
    if (m.topic == topics_.cmd_result(kStore)) {
      json j = json::parse(m.payload, nullptr, false);
      EXPECT_TRUE(j.is_object()) << "every answer is JSON: " << m.payload;
      answers_.push_back(j);
    } else if (m.topic == topics_.events(kStore)) {
      auto batch = wire::decode_batch(m.payload);
      EXPECT_TRUE(batch.ok());
      if (batch.ok()) {
        for (const auto& e : batch->events) events_.push_back(e);
      }
    }
  }

  bool subscribed() {
    std::lock_guard lock(mu_);
    return subscribed_;
  }

  /// Publishes a command payload, as is, and waits for the broker's PUBACK.
  void send(std::string payload) {
    auto done = std::make_shared<std::promise<bool>>();
    auto result = done->get_future();
    boost::asio::post(io_, [this, payload = std::move(payload), done]() mutable {
      transport_->publish({topics_.cmd(kStore), std::move(payload), 1, false},
                          [done](const Status& st) { done->set_value(st.ok()); });
    });
    ASSERT_EQ(result.wait_for(std::chrono::seconds(20)), std::future_status::ready);
    ASSERT_TRUE(result.get());
  }
  void send(const json& j) { send(j.dump()); }

  std::vector<json> answers() {
    std::lock_guard lock(mu_);
    return answers_;
  }
  std::vector<json> answers_for(const std::string& id) {
    std::vector<json> out;
    for (auto& a : answers()) {
      if (a.is_object() && a["id"] == id) out.push_back(a);
    }
    return out;
  }
  /// The first answer to `id`, waiting for it.
  json answer(const std::string& id) {
    json found;
    wait_until([&] {
      auto a = answers_for(id);
      if (a.empty()) return false;
      found = a.front();
      return true;
    });
    return found;
  }
  std::vector<wire::Event> events() {
    std::lock_guard lock(mu_);
    return events_;
  }

 private:
  template <class F>
  auto on_io(F f) -> decltype(f()) {
    return test::run_on(io_, std::move(f));
  }

  boost::asio::io_context io_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_ =
      boost::asio::make_work_guard(io_);
  std::thread thread_;
  wire::Topics topics_{kPrefix};
  std::unique_ptr<sync::MqttTransport> transport_;
  std::mutex mu_;
  bool subscribed_ = false;
  std::vector<json> answers_;
  std::vector<wire::Event> events_;
};

json command(const std::string& id, const std::string& op, json fields = json::object()) {
  json j{{"v", 1}, {"id", id}, {"op", op}, {"by", "alice"}};
  for (auto& [k, v] : fields.items()) j[k] = v;
  return j;
}

struct StoreSite {
  TempDir dir;
  Broker broker;
  TcpDevice device;
  std::filesystem::path config = dir / "storewatch.toml";

  /// `sync_extra`: more keys for [sync].
  explicit StoreSite(const std::string& sync_extra = "") {
    write_file(config,
               fmt::format(R"(
[store]
id = "{0}"

[agent]
data_dir = "{1}/agent"
control_socket = "{1}/agent/control.sock"
log_level = "debug"

[sync]
broker = "{2}"
reconnect_max = "1s"
ack_timeout = "30s"
{4}

[[probe]]
name = "lane-01-pos"
type = "tcp"
host = "127.0.0.1"
port = {3}
interval = "200ms"
timeout = "300ms"
fail_after = 2
recover_after = 2
severity = "high"
labels = {{ kind = "pos" }}
)",
                           kStore, dir.path().string(), broker.uri(), device.port(), sync_extra));
  }

  std::unique_ptr<Child> start_agent() {
    return std::make_unique<Child>(storewatch_command({"--config", config.string(), "run"}),
                                   dir / "logs");
  }
  json cli(std::vector<std::string> args) {
    std::vector<std::string> full{"--config", config.string()};
    full.insert(full.end(), args.begin(), args.end());
    auto r = run(storewatch_command(full));
    if (r.exit_code != 0) return nullptr;
    return json::parse(r.out, nullptr, false);
  }
  json incident_of_lane() {
    json list = cli({"incidents", "--all", "--json"});
    if (!list.is_array()) return nullptr;
    for (const auto& i : list) {
      if (i.value("probe", "") == "lane-01-pos") return i;
    }
    return nullptr;
  }
  /// The database, read-only, as the CLI reads it while the daemon runs.
  agent::Store database() {
    auto s = agent::Store::open(dir / "agent/storewatch.db", agent::Store::Mode::read_only);
    EXPECT_TRUE(s.ok()) << (s.ok() ? "" : s.error().message);
    return std::move(*s);
  }
};

/// Waits until the agent answers commands: its cmd subscription is live
/// once a harmless resync (from far beyond its newest event) is answered.
void wait_for_commands(HqClient& hq, Child& agent) {
  ASSERT_TRUE(wait_until([&] { return hq.subscribed(); })) << "the test client never subscribed";
  // Fresh ids across calls: an id used before is answered from the database.
  static int n = 0;
  ASSERT_TRUE(wait_until(
      [&] {
        const std::string id = "warmup-" + std::to_string(++n);
        hq.send(command(id, "resync", {{"from_seq", 1'000'000'000}}));
        return wait_until([&] { return !hq.answers_for(id).empty(); }, std::chrono::seconds(1));
      },
      std::chrono::seconds(30)))
      << logs_of(agent);
}

std::vector<agent::StoredEvent> hq_events(agent::Store& db, const std::string& uid) {
  std::vector<agent::StoredEvent> out;
  auto all = db.events_of(uid);
  EXPECT_TRUE(all.ok());
  if (!all.ok()) return out;
  for (auto& e : *all) {
    if (e.actor.starts_with("hq:")) out.push_back(e);
  }
  return out;
}

// Issue 20: a second ack says by whom and when the incident was
// acknowledged, whether HQ acked first and the technician's CLI asks again,
// or HQ asks again.
TEST(HqCommands, ASecondAckSaysWhoAcknowledgedFirst) {
  StoreSite site;
  auto agent = site.start_agent();
  HqClient hq(site.broker.uri());
  wait_for_commands(hq, *agent);
  site.device.down();
  json incident;
  ASSERT_TRUE(wait_until([&] {
    incident = site.incident_of_lane();
    return incident.is_object() && incident["state"] == "open";
  })) << logs_of(*agent);
  const std::string uid = incident["uid"].get<std::string>();

  hq.send(command("ack-olga", "ack", {{"incident", uid}, {"by", "olga"}}));
  json first = hq.answer("ack-olga");
  ASSERT_EQ(first["ok"], true) << first.dump() << logs_of(*agent);

  auto cli = run(storewatch_command({"--config", site.config.string(), "ack", uid}),
                 {{"SUDO_USER", "dana"}});
  EXPECT_EQ(cli.exit_code, 1);
  EXPECT_NE(cli.err.find("already acknowledged by hq:olga at "), std::string::npos) << cli.err;

  hq.send(command("ack-again", "ack", {{"incident", uid}, {"by", "bob"}}));
  json again = hq.answer("ack-again");
  EXPECT_EQ(again["ok"], false);
  EXPECT_NE(again.value("error", "").find("already acknowledged by hq:olga at "), std::string::npos)
      << again.dump();
}

TEST(HqCommands, EveryOpIsAppliedOnceThroughTheDaemon) {
  StoreSite site;
  auto agent = site.start_agent();
  HqClient hq(site.broker.uri());
  wait_for_commands(hq, *agent);

  site.device.down();
  json incident;
  ASSERT_TRUE(wait_until([&] {
    incident = site.incident_of_lane();
    return incident.is_object() && incident["state"] == "open";
  })) << logs_of(*agent);
  const std::string uid = incident["uid"].get<std::string>();

  // ack, then the same id again: one acknowledgement.
  hq.send(command("ack-1", "ack", {{"incident", uid}, {"note", "dispatching a tech"}}));
  json ack = hq.answer("ack-1");
  ASSERT_EQ(ack["ok"], true) << ack.dump() << logs_of(*agent);
  EXPECT_EQ(ack["v"], 1);
  EXPECT_EQ(ack["incident"]["state"], "acknowledged");
  hq.send(command("ack-1", "ack", {{"incident", uid}, {"note", "dispatching a tech"}}));
  ASSERT_TRUE(wait_until([&] { return hq.answers_for("ack-1").size() == 2; }));
  json again = hq.answers_for("ack-1")[1];
  EXPECT_EQ(again["duplicate"], true);
  EXPECT_EQ(again["incident"], ack["incident"]);

  hq.send(command("note-1", "note", {{"incident", uid}, {"note", "tech on site"}}));
  EXPECT_EQ(hq.answer("note-1")["ok"], true);

  // probe_run runs the configured probe and answers with its result.
  hq.send(command("probe-1", "probe_run", {{"probe", "lane-01-pos"}}));
  json probe = hq.answer("probe-1");
  ASSERT_EQ(probe["ok"], true) << probe.dump();
  EXPECT_EQ(probe["result"]["name"], "lane-01-pos");
  EXPECT_EQ(probe["result"]["type"], "tcp");
  EXPECT_EQ(probe["result"]["status"], "fail") << "the device is down";
  hq.send(command("probe-2", "probe_run", {{"probe", "lane-02-pos"}}));
  EXPECT_EQ(hq.answer("probe-2")["ok"], false) << "not a configured probe";

  hq.send(command("silence-1", "silence",
                  {{"match", "kind=pos"}, {"for", "1h"}, {"reason", "lane refit"}}));
  json silence = hq.answer("silence-1");
  ASSERT_EQ(silence["ok"], true) << silence.dump();
  EXPECT_EQ(silence["silence"]["created_by"], "hq:alice");

  hq.send(command("resolve-1", "resolve", {{"incident", uid}, {"by", "hq:bob"}}));
  json resolved = hq.answer("resolve-1");
  ASSERT_EQ(resolved["ok"], true) << resolved.dump();
  hq.send(command("close-1", "close", {{"incident", uid}}));
  json closed = hq.answer("close-1");
  ASSERT_EQ(closed["ok"], true) << closed.dump();
  EXPECT_EQ(closed["incident"]["state"], "closed");

  // Refused, changing nothing: a closed incident, an unknown one.
  hq.send(command("ack-2", "ack", {{"incident", uid}}));
  EXPECT_EQ(hq.answer("ack-2")["ok"], false);
  hq.send(command("ack-3", "ack", {{"incident", "0000-no-such-incident"}}));
  json unknown = hq.answer("ack-3");
  EXPECT_EQ(unknown["ok"], false);
  EXPECT_NE(unknown["error"].get<std::string>().find("no incident"), std::string::npos);

  // The database: each change once, by hq:NAME, and each id kept.
  ASSERT_TRUE(wait_until([&] {
    auto db = site.database();
    return hq_events(db, uid).size() == 4;
  })) << logs_of(*agent);
  auto db = site.database();
  auto by_hq = hq_events(db, uid);
  std::multiset<std::string> types;
  for (const auto& e : by_hq) types.insert(e.type + " " + e.actor);
  EXPECT_EQ(types, (std::multiset<std::string>{"acknowledged hq:alice", "note hq:alice",
                                               "resolved hq:bob", "closed hq:alice"}));
  for (const char* id :
       {"ack-1", "note-1", "probe-1", "silence-1", "resolve-1", "close-1", "ack-2", "ack-3"}) {
    auto row = db.command(id);
    ASSERT_TRUE(row.ok()) << row.error().message;
    EXPECT_TRUE(row->has_value()) << id;
  }
  auto silences = db.silences(std::nullopt);
  ASSERT_TRUE(silences.ok());
  ASSERT_EQ(silences->size(), 1u);
  EXPECT_EQ(silences->front().created_by, "hq:alice");

  // resync: the store sends its events from seq 1 again.
  const std::size_t seen = hq.events().size();
  ASSERT_GT(seen, 0u) << "the test client saw the store's events";
  hq.send(command("resync-1", "resync", {{"from_seq", 1}, {"by", "hq:gap"}}));
  EXPECT_EQ(hq.answer("resync-1")["ok"], true);
  ASSERT_TRUE(wait_until([&] {
    auto ev = hq.events();
    for (std::size_t i = seen; i < ev.size(); ++i) {
      if (ev[i].seq == 1) return true;
    }
    return false;
  })) << "seq 1 sent again after the resync";

  // The answers survive a restart: the same id, from the database.
  ASSERT_EQ(agent->stop(SIGTERM), 0) << logs_of(*agent);
  agent = site.start_agent();
  wait_for_commands(hq, *agent);
  hq.send(command("ack-1", "ack", {{"incident", uid}}));
  ASSERT_TRUE(wait_until([&] { return hq.answers_for("ack-1").size() == 3; }));
  EXPECT_EQ(hq.answers_for("ack-1")[2]["duplicate"], true);
  auto after = site.database();
  EXPECT_EQ(hq_events(after, uid).size(), 4u);
}

/// Issue 18: with an anonymous broker, anyone could silence every probe of
/// a store for a year. With [sync] command_key_file the store takes only
/// commands HQ signed for it.
TEST(HqCommands, WithACommandKeyOnlyCommandsSignedForThisStoreAreApplied) {
  TempDir keys;
  write_file(keys / "command.key", std::string(64, 'c') + "\n");
  StoreSite site(fmt::format("command_key_file = \"{}\"", (keys / "command.key").string()));
  auto agent = site.start_agent();
  HqClient hq(site.broker.uri());
  // The unsigned warm-up resyncs are answered (refused), which is all it waits for.
  wait_for_commands(hq, *agent);

  hq.send(command("forged-1", "silence", {{"match", "*"}, {"for", "366d"}, {"reason", "gotcha"}}));
  json forged = hq.answer("forged-1");
  EXPECT_EQ(forged["ok"], false) << forged.dump();
  EXPECT_NE(forged["error"].get<std::string>().find("only signed commands"), std::string::npos)
      << forged.dump();

  const std::string key(32, '\xcc');
  const auto now =
      std::chrono::duration_cast<std::chrono::seconds>(SystemClock().wall_now().time_since_epoch())
          .count();
  // Signed with the right key, but for another store: not replayable here.
  auto elsewhere = sync::sign_command(
      key, "store-other",
      command("forged-2", "silence", {{"match", "*"}, {"for", "366d"}, {"reason", "gotcha"}})
          .dump(),
      now + 600);
  ASSERT_TRUE(elsewhere.ok());
  hq.send(*elsewhere);
  EXPECT_EQ(hq.answer("forged-2")["ok"], false);
  json none = site.cli({"silence", "list", "--json"});
  ASSERT_TRUE(none.is_object()) << none.dump();
  EXPECT_TRUE(none["silences"].empty()) << none.dump();

  auto legit = sync::sign_command(
      key, kStore,
      command("signed-1", "silence", {{"match", "kind=pos"}, {"for", "1h"}, {"reason", "refit"}})
          .dump(),
      now + 600);
  ASSERT_TRUE(legit.ok());
  hq.send(*legit);
  json applied = hq.answer("signed-1");
  ASSERT_EQ(applied["ok"], true) << applied.dump() << logs_of(*agent);
  EXPECT_EQ(applied["silence"]["created_by"], "hq:alice");
  json one = site.cli({"silence", "list", "--json"});
  ASSERT_TRUE(one.is_object());
  EXPECT_EQ(one["silences"].size(), 1u) << one.dump();
  EXPECT_EQ(agent->stop(SIGTERM), 0) << logs_of(*agent);
}

/// Fault test 6(d): malformed and hostile commands.
TEST(HqCommands, HostileCommandsAreRefusedAndTheDaemonKeepsSyncing) {
  StoreSite site;
  auto agent = site.start_agent();
  HqClient hq(site.broker.uri());
  wait_for_commands(hq, *agent);
  const std::size_t warmups = hq.answers().size();

  // Each payload and the id its answer must carry ("" = "id":null).
  std::vector<std::pair<std::string, std::string>> flood;
  auto add = [&](std::string payload, std::string id) {
    flood.emplace_back(std::move(payload), std::move(id));
  };
  add("", "");
  add("not json at all", "");
  add("null", "");
  add("[1,2,3]", "");
  add(R"({"v":1,"id":"h-trunc","op":"ack","incident":"x)", "h-trunc");
  add(R"({"v":2,"id":"h-v2","op":"ack","by":"a","incident":"x"})", "h-v2");
  add(R"({"v":"1","id":"h-vstr","op":"ack","by":"a","incident":"x"})", "h-vstr");
  add(R"({"v":1e400,"id":"h-vhuge","op":"ack","by":"a","incident":"x"})", "h-vhuge");
  add(R"({"v":1,"id":"h-exec","op":"exec","by":"a","command":["/bin/sh","-c","touch /tmp/x"]})",
      "h-exec");
  add(R"({"v":1,"id":"h-extra","op":"probe_run","by":"a","probe":"lane-01-pos","command":"sh"})",
      "h-extra");
  add(R"({"v":1,"id":"h-type","op":"ack","by":"a","incident":12345})", "h-type");
  add(R"({"v":1,"id":"h-seq","op":"resync","by":"a","from_seq":18446744073709551615})", "h-seq");
  add(R"({"v":1,"id":"h-neg","op":"resync","by":"a","from_seq":-5})", "h-neg");
  add(R"({"v":1,"id":"h-missing","op":"note","by":"a","incident":"x"})", "h-missing");
  add(R"({"v":1,"id":"h-noby","op":"resync","from_seq":1})", "h-noby");
  add(R"({"v":1,"op":"resync","by":"a","from_seq":1})", "");
  add(R"({"v":1,"id":"has spaces","op":"resync","by":"a","from_seq":1})", "");
  add(std::string(R"({"v":1,"id":"h-nul","op":"note","by":"a","incident":"x","note":"a)") +
          std::string(1, '\0') + "b\"}",
      "h-nul");
  add(std::string(R"({"v":1,"id":"h-utf8","op":"note","by":"a","incident":"x","note":")") +
          "\xff\xfe\xc3\x28" + "\"}",
      "h-utf8");
  add(R"({"v":1,"id":"h-deep","x":)" + std::string(30000, '[') + std::string(30000, ']') + "}",
      "h-deep");
  add(R"({"v":1,"id":"h-big","op":"note","by":"a","incident":"x","note":")" +
          std::string(200 * 1024, 'x') + "\"}",
      "h-big");
  add(R"({"pad":")" + std::string(2048, 'p') + R"(","id":"h-far","op":"note","note":")" +
          std::string(70 * 1024, 'x') + "\"}",
      "");
  add(R"({"x":{"id":"h-nested"},"id":"h-outer","v":1,"op":"reboot","by":"a"})", "h-outer");
  std::mt19937 rng(6);
  for (int i = 0; i < 150; ++i) {
    std::string noise(rng() % 2048, '\0');
    for (auto& c : noise) c = static_cast<char>(rng());
    add(fmt::format(R"({{"id":"h-rnd-{}",)", i) + noise, fmt::format("h-rnd-{}", i));
  }
  // In waves, so the answers' window (Publisher::kMaxAnswersInFlight) is
  // never what refuses them.
  std::size_t sent = 0;
  for (std::size_t start = 0; start < flood.size(); start += 40) {
    const std::size_t end = std::min(flood.size(), start + 40);
    for (std::size_t i = start; i < end; ++i) hq.send(flood[i].first);
    sent = end;
    ASSERT_TRUE(wait_until([&] { return hq.answers().size() >= warmups + sent; }))
        << hq.answers().size() - warmups << " of " << sent << " answered\n"
        << logs_of(*agent);
  }
  ASSERT_TRUE(agent->running()) << logs_of(*agent);

  auto answers = hq.answers();
  std::vector<json> flood_answers(answers.begin() + static_cast<std::ptrdiff_t>(warmups),
                                  answers.end());
  ASSERT_EQ(flood_answers.size(), flood.size());
  std::size_t anonymous = 0;
  for (const auto& a : flood_answers) {
    EXPECT_EQ(a["v"], 1) << a.dump();
    EXPECT_EQ(a["ok"], false) << a.dump();
    EXPECT_TRUE(a["error"].is_string() && !a["error"].get<std::string>().empty()) << a.dump();
    if (a["id"].is_null()) ++anonymous;
  }
  std::size_t expect_anonymous = 0;
  for (const auto& [payload, id] : flood) {
    if (id.empty()) {
      ++expect_anonymous;
      continue;
    }
    EXPECT_EQ(hq.answers_for(id).size(), 1u) << "one answer with the id " << id;
  }
  EXPECT_EQ(anonymous, expect_anonymous);

  // Nothing was applied or kept: no malformed command reaches the commands
  // table. h-extra and the rest were refused before the engine.
  auto db = site.database();
  for (const auto& [payload, id] : flood) {
    if (id.empty()) continue;
    auto row = db.command(id);
    ASSERT_TRUE(row.ok());
    EXPECT_FALSE(row->has_value()) << id;
  }

  // Alive, answering, and still syncing: an incident opens and reaches the
  // broker, and a good command is applied.
  json status = site.cli({"status", "--json"});
  ASSERT_TRUE(status.is_object());
  EXPECT_EQ(status["sync"]["connected"], true);
  EXPECT_EQ(status["sync"]["commands"]["refused"], flood.size()) << status.dump();
  site.device.down();
  json incident;
  ASSERT_TRUE(wait_until([&] {
    incident = site.incident_of_lane();
    return incident.is_object() && incident["state"] == "open";
  })) << logs_of(*agent);
  const std::string uid = incident["uid"].get<std::string>();
  ASSERT_TRUE(wait_until([&] {
    for (const auto& e : hq.events()) {
      if (e.incident == uid && e.type == "opened") return true;
    }
    return false;
  })) << "the opened event was synced";
  hq.send(command("good-1", "ack", {{"incident", uid}}));
  EXPECT_EQ(hq.answer("good-1")["ok"], true);
  EXPECT_TRUE(agent->running());
  EXPECT_EQ(agent->stop(SIGTERM), 0) << logs_of(*agent);
}

}  // namespace
}  // namespace storewatch::test
