// The publisher against real things: the real `storewatch run` and
// `storewatch hq run`, a real mosquitto, real SQLite files. `sync status`
// live and from the database, the goodbye on SIGTERM, websockets, and the
// fault tests of issue 5: the broker down while incidents happen, kill -9
// while draining a backlog, latency and loss between the agent and the
// broker (network namespace and netem, when root and the kernel has netem).

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <fmt/format.h>

#include <unistd.h>

#include <csignal>
#include <iostream>
#include <random>
#include <thread>

#include "tests/integration/sync_lab.h"

namespace storewatch::test {
namespace {

using nlohmann::json;

const std::string kStatusTopic = "storewatch/v1/stores/store-sync/status";

/// The retained message on `topic` of the broker at port, or "" when none.
std::string retained(int port, const std::string& topic) {
  auto r = run({"mosquitto_sub", "-h", "127.0.0.1", "-p", std::to_string(port), "-V", "mqttv5",
                "-t", topic, "-C", "1", "-W", "2", "--retained-only"},
               {}, 10s);
  return r.exit_code == 0 ? r.out : "";
}

// --- sync status ------------------------------------------------------------

TEST(SyncStatus, ReportsTheLinkFromTheDaemonAndFromTheDatabaseWhenItIsDown) {
  SyncLab lab;
  Broker broker;
  lab.configure(broker.uri(), broker.uri());
  auto hq = lab.start_hq();
  auto agent = lab.start_agent();
  lab.device.down();

  json s;
  ASSERT_TRUE(wait_until([&] {
    s = lab.sync_status();
    return s.is_object() && s["connected"] == true && s["hq_acked_seq"] == 1 && s["queued"] == 0 &&
           !s["last_ack"].is_null();
  })) << s.dump()
      << logs_of(*agent);
  EXPECT_EQ(s["daemon_running"], true);
  EXPECT_EQ(s["broker"], broker.uri());
  EXPECT_FALSE(s["since"].is_null());
  EXPECT_FALSE(s["last_puback"].is_null());
  EXPECT_GE(s["session"].get<std::int64_t>(), 1);
  EXPECT_EQ(s["reconnect_attempts"], 0);
  EXPECT_EQ(s["connects"], 1);
  EXPECT_TRUE(s["oldest_queued_at"].is_null());
  EXPECT_TRUE(s["oldest_queued_age_s"].is_null());
  // `status --json` carries the same object.
  auto st = json::parse(lab.agent({"status", "--json"}).out, nullptr, false);
  ASSERT_TRUE(st.is_object());
  EXPECT_EQ(st["sync"]["connected"], true);
  EXPECT_EQ(st["sync"]["hq_acked_seq"], 1);
  EXPECT_TRUE(st["sync"].contains("last_puback"));

  // The broker goes away: offline, counting attempts, the cause kept.
  broker.stop();
  ASSERT_TRUE(wait_until([&] {
    s = lab.sync_status();
    return s.is_object() && s["connected"] == false && s["reconnect_attempts"] >= 2;
  })) << s.dump();
  EXPECT_NE(s["last_error"].get<std::string>(), "");
  EXPECT_FALSE(s["last_error_at"].is_null());
  const std::string since_offline = s["since"].get<std::string>();
  // An incident resolves meanwhile: one event queued, its age counted.
  lab.device.up();
  ASSERT_TRUE(wait_until([&] {
    s = lab.sync_status();
    return s.is_object() && s["queued"] == 1 && s["oldest_queued_age_s"].is_number();
  })) << s.dump();
  EXPECT_EQ(s["since"], since_offline);
  const json oldest = s["oldest_queued_at"];
  auto text = lab.agent({"sync", "status"});
  EXPECT_EQ(text.exit_code, 0) << text.err;
  EXPECT_NE(text.out.find("offline"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("1 events"), std::string::npos) << text.out;

  // The daemon stops: the database still knows the ack and the queue.
  ASSERT_EQ(agent->stop(SIGTERM), 0) << logs_of(*agent);
  s = lab.sync_status();
  ASSERT_TRUE(s.is_object());
  EXPECT_EQ(s["daemon_running"], false);
  EXPECT_EQ(s["connected"], false);
  EXPECT_EQ(s["hq_acked_seq"], 1);
  EXPECT_EQ(s["queued"], 1);
  EXPECT_EQ(s["oldest_queued_at"], oldest);
  EXPECT_GE(s["oldest_queued_age_s"].get<double>(), 0.0);
  EXPECT_TRUE(s["last_puback"].is_null());
  text = lab.agent({"sync", "status"});
  EXPECT_EQ(text.exit_code, 0) << text.err;
  EXPECT_NE(text.out.find("not running"), std::string::npos) << text.out;

  // Bad usage is a usage error.
  EXPECT_EQ(lab.agent({"sync"}).exit_code, 2);
  EXPECT_EQ(lab.agent({"sync", "status", "--bogus"}).exit_code, 2);
}

// --- birth, goodbye, last will -------------------------------------------------

TEST(SyncStatusMessage, SigtermSaysGoodbyeBeforeDisconnectingAndKillLeavesTheWill) {
  SyncLab lab;
  Broker broker;
  lab.configure(broker.uri(), broker.uri());
  auto agent = lab.start_agent();
  json birth;
  ASSERT_TRUE(wait_until([&] {
    birth = json::parse(retained(broker.port(), kStatusTopic), nullptr, false);
    return birth.is_object() && birth["online"] == true;
  })) << logs_of(*agent);
  EXPECT_EQ(birth["store"], "store-sync");
  EXPECT_EQ(birth["version"], STOREWATCH_VERSION);
  EXPECT_TRUE(birth["config_hash"].get<std::string>().starts_with("sha256:"));
  EXPECT_TRUE(birth["open"].is_object());
  EXPECT_TRUE(birth["queued"].is_number_integer());
  EXPECT_FALSE(birth.contains("reason"));

  // SIGTERM: the agent itself publishes offline (a clean disconnect would
  // not fire the will, and the will says "connection_lost").
  ASSERT_EQ(agent->stop(SIGTERM), 0) << logs_of(*agent);
  json bye = json::parse(retained(broker.port(), kStatusTopic), nullptr, false);
  ASSERT_TRUE(bye.is_object()) << logs_of(*agent);
  EXPECT_EQ(bye["online"], false);
  EXPECT_EQ(bye["reason"], "shutdown");
  EXPECT_EQ(bye["session"], birth["session"]);
  EXPECT_EQ(bye["config_hash"], birth["config_hash"]);

  // A new run connects with a higher session; kill -9 leaves the will.
  agent = lab.start_agent();
  json second;
  ASSERT_TRUE(wait_until([&] {
    second = json::parse(retained(broker.port(), kStatusTopic), nullptr, false);
    return second.is_object() && second["online"] == true;
  })) << logs_of(*agent);
  EXPECT_GT(second["session"].get<std::int64_t>(), birth["session"].get<std::int64_t>());
  ASSERT_EQ(agent->stop(SIGKILL), 128 + SIGKILL);
  json will;
  ASSERT_TRUE(wait_until([&] {
    will = json::parse(retained(broker.port(), kStatusTopic), nullptr, false);
    return will.is_object() && will["online"] == false;
  }));
  EXPECT_EQ(will["reason"], "connection_lost");
  EXPECT_EQ(will["session"], second["session"]);

  // A changed config changes the hash.
  write_file(lab.agent_config, read_file(lab.agent_config) + "\n# edited\n");
  agent = lab.start_agent();
  json third;
  ASSERT_TRUE(wait_until([&] {
    third = json::parse(retained(broker.port(), kStatusTopic), nullptr, false);
    return third.is_object() && third["online"] == true;
  })) << logs_of(*agent);
  EXPECT_NE(third["config_hash"], birth["config_hash"]);
}

// --- websockets -----------------------------------------------------------------

TEST(SyncTransport, AgentReachesHqOverWebsockets) {
  const int tcp_port = free_port();
  const int ws_port = free_port();
  OwnBroker broker(fmt::format("listener {} 127.0.0.1\nlistener {} 127.0.0.1\nprotocol websockets",
                               tcp_port, ws_port),
                   ws_port);
  SyncLab lab;
  lab.configure(fmt::format("ws://127.0.0.1:{}", ws_port),
                fmt::format("tcp://127.0.0.1:{}", tcp_port));
  EXPECT_EQ(lab.one_incident_reaches_hq(broker), "");
}

// --- TLS and identity ------------------------------------------------------------

// mosquitto with a TLS listener that requires a client certificate, takes
// its CN as the user name, and lets each store write only under its own id
// (pattern ACL %u). A store configured with another store's id is refused
// every publish (PUBACK 0x87), keeps its events and says so.
TEST(SyncTls, AStoreCanPublishOnlyUnderItsOwnId) {
  TestPki pki({"store-a", "hq"});
  const int port = free_port();
  TempDir conf;
  write_file(conf / "acl",
             "user hq\ntopic readwrite storewatch/v1/#\n\n"
             "pattern readwrite storewatch/v1/stores/%u/#\n");
  // `user root`: a broker started as root would otherwise drop to the
  // mosquitto user, which cannot read the test's private key.
  OwnBroker broker(
      fmt::format("listener {} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\n"
                  "require_certificate true\nuse_identity_as_username true\n"
                  "acl_file {}\nuser root",
                  port, pki.ca(), pki.cert("server"), pki.key("server"), (conf / "acl").string()),
      port);
  const std::string uri = fmt::format("ssl://127.0.0.1:{}", port);

  // store-a with its own id: delivered.
  SyncLab good;
  good.store = "store-a";
  good.hq_extra = pki.keys("hq");
  good.configure(uri, uri, pki.keys("store-a"));
  auto hq = good.start_hq();
  auto agent_a = good.start_agent();
  good.device.down();
  ASSERT_TRUE(wait_until([&] { return good.hq_acked() == 1; }))
      << logs_of(*agent_a) << logs_of(*hq) << broker.log();
  EXPECT_EQ(good.hq_difference(), "");

  // store-a's certificate, but configured as store-b: every publish denied.
  SyncLab bad;
  bad.store = "store-b";
  bad.configure(uri, uri, pki.keys("store-a"));
  auto agent_b = bad.start_agent();
  bad.device.down();
  json s;
  ASSERT_TRUE(wait_until([&] {
    s = bad.sync_status();
    return s.is_object() && s["connected"] == true && s["queued"] == 1 &&
           s["last_error"].get<std::string>().find("0x87") != std::string::npos;
  })) << s.dump()
      << logs_of(*agent_b);
  EXPECT_NE(s["last_error"].get<std::string>().find("not authorized"), std::string::npos)
      << s.dump();
  EXPECT_EQ(s["hq_acked_seq"], 0);
  EXPECT_NE(agent_b->err().find("not authorized"), std::string::npos) << logs_of(*agent_b);
  // Nothing of store-b reached HQ, and its event is still in its outbox.
  EXPECT_TRUE(bad.hq_events().empty());
  EXPECT_EQ(bad.agent_events().size(), 1u);
  // After ack_timeout it tries again, and is refused again: still kept.
  auto refusals = [&] {
    const std::string log = agent_b->err();
    const std::string needle = "not authorized by the broker to publish as store store-b";
    int n = 0;
    for (auto at = log.find(needle); at != std::string::npos; at = log.find(needle, at + 1)) ++n;
    return n;
  };
  ASSERT_TRUE(wait_until([&] { return refusals() >= 2; }, 15s)) << logs_of(*agent_b);
  EXPECT_EQ(bad.sync_status()["queued"], 1);

  // Server verification is on by default: without the CA the store does not
  // connect at all.
  SyncLab unverified;
  unverified.store = "store-a";
  unverified.configure(uri, uri,
                       fmt::format("cert_file = \"{}\"\nkey_file = \"{}\"\n", pki.cert("store-a"),
                                   pki.key("store-a")));
  auto agent_c = unverified.start_agent();
  ASSERT_TRUE(wait_until([&] {
    s = unverified.sync_status();
    return s.is_object() && s["reconnect_attempts"] >= 1;
  })) << logs_of(*agent_c);
  EXPECT_EQ(s["connected"], false);
  EXPECT_NE(s["last_error"], "");
}

// --- fault tests ------------------------------------------------------------------

// (a) The broker stops while incidents open and resolve, and comes back with
// nothing (persistence off: no retained ack, no session). HQ ends with every
// event exactly once, the same uids in the same seqs.
TEST(SyncFault, BrokerDownWhileIncidentsHappenThenBackEmpty) {
  SyncLab lab;
  Broker broker;
  lab.configure(broker.uri(), broker.uri());
  auto hq = lab.start_hq();
  auto agent = lab.start_agent();
  lab.device.down();
  ASSERT_TRUE(wait_until([&] { return lab.hq_acked() == 1; })) << logs_of(*agent);

  broker.stop();
  ASSERT_TRUE(wait_until([&] {
    json s = lab.sync_status();
    return s.is_object() && s["connected"] == false;
  }));
  // Flap the device a few times: each round resolves and reopens.
  for (int i = 0; i < 4; ++i) {
    const auto before = lab.agent_events().size();
    lab.device.up();
    ASSERT_TRUE(wait_until([&] { return lab.agent_events().size() > before; }));
    const auto middle = lab.agent_events().size();
    lab.device.down();
    ASSERT_TRUE(wait_until([&] { return lab.agent_events().size() > middle; }));
  }
  const auto produced = lab.agent_events().size();
  ASSERT_GE(produced, 9u);
  EXPECT_EQ(lab.hq_acked(), 1);

  broker.start();
  ASSERT_TRUE(
      wait_until([&] { return lab.hq_acked() >= static_cast<std::int64_t>(produced); }, 60s))
      << "HQ acked " << lab.hq_acked() << " of " << produced << "\n"
      << logs_of(*agent) << logs_of(*hq);
  lab.device.up();
  ASSERT_TRUE(wait_until([&] {
    json s = lab.sync_status();
    return s.is_object() && s["queued"] == 0 &&
           s["hq_acked_seq"] == static_cast<std::int64_t>(lab.agent_events().size());
  }));
  EXPECT_EQ(lab.hq_difference(), "");
  EXPECT_TRUE(agent->running());
  EXPECT_TRUE(hq->running());
}

// (b) kill -9 the agent again and again while it drains a backlog of thousands
// of events: HQ ends with seq 1..N, each once, nothing lost.
TEST(SyncFault, KillNineWhileDrainingABacklogLosesNothing) {
  constexpr int kMidDrainKills = 5;
  constexpr int kMaxRuns = 16;
  constexpr int kMaxEvents = 100'000;
  SyncLab lab;
  Broker broker;
  // One event per batch and one batch in flight, so the drain takes one
  // round trip per event and the kills land in the middle of it. How long
  // that is depends on the machine: a run that finishes the drain before
  // its kill gets a backlog twice as big added for the next run.
  lab.configure(broker.uri(), broker.uri(), "batch_max_events = 1\ninflight_batches = 1");
  int backlog = 3000;
  lab.seed_backlog(backlog);
  std::int64_t n = static_cast<std::int64_t>(lab.agent_events().size());
  ASSERT_EQ(n, backlog);
  auto hq = lab.start_hq();

  std::mt19937 rng(std::random_device{}());
  int mid_drain = 0;
  const auto budget = std::chrono::steady_clock::now() + 90s;
  for (int k = 0;
       k < kMaxRuns && mid_drain < kMidDrainKills && std::chrono::steady_clock::now() < budget;
       ++k) {
    const std::int64_t before = lab.hq_acked();
    auto agent = lab.start_agent();
    // Kill once HQ has moved on in this run (or at once when it is done).
    wait_until([&] { return lab.hq_acked() > before || lab.hq_acked() >= n; }, 20s);
    std::this_thread::sleep_for(std::chrono::milliseconds(rng() % 40));
    const std::int64_t at_kill = lab.hq_acked();
    ASSERT_EQ(agent->stop(SIGKILL), 128 + SIGKILL);
    std::cout << "kill " << k + 1 << ": HQ acked " << at_kill << " of " << n << "\n";
    if (at_kill < n) {
      ++mid_drain;
    } else if (backlog < kMaxEvents) {
      backlog *= 2;
      lab.seed_backlog(backlog);
      n = static_cast<std::int64_t>(lab.agent_events().size());
      std::cout << "  the drain beat the kill: " << backlog << " more events\n";
    }
  }
  std::cout << mid_drain << " kills landed while the backlog was draining\n";
  EXPECT_GE(mid_drain, kMidDrainKills) << "the drain was too fast for the test to prove anything";

  auto agent = lab.start_agent();
  ASSERT_TRUE(wait_until([&] { return lab.hq_acked() == n; }, 90s))
      << "HQ acked " << lab.hq_acked() << " of " << n << "\n"
      << logs_of(*agent);
  ASSERT_TRUE(wait_until([&] {
    json s = lab.sync_status();
    return s.is_object() && s["queued"] == 0 && s["hq_acked_seq"] == n;
  }));
  EXPECT_EQ(lab.hq_difference(), "");
  EXPECT_EQ(agent->stop(SIGTERM), 0) << logs_of(*agent);
}

// (e) Latency and loss between the agent and the broker: the agent runs in a
// network namespace behind a veth pair with netem on both ends. Needs root,
// iproute2 and the kernel's netem qdisc; skipped with the reason otherwise.
class NetNs {
 public:
  NetNs() {
    const int id = static_cast<int>(::getpid() % 200) + 20;
    name_ = fmt::format("swsync{}", ::getpid());
    host_if_ = fmt::format("swh{}", ::getpid());
    ns_if_ = fmt::format("swn{}", ::getpid());
    host_ip_ = fmt::format("10.213.{}.1", id);
    ns_ip_ = fmt::format("10.213.{}.2", id);
  }
  ~NetNs() {
    if (created_) {
      run({"ip", "link", "del", host_if_});
      run({"ip", "netns", "del", name_});
    }
  }

  /// "" when set up, else why not.
  std::string create() {
    if (::geteuid() != 0) return "not root";
    if (run({"ip", "netns", "add", name_}).exit_code != 0) return "ip netns add failed";
    created_ = true;
    for (auto argv : std::vector<std::vector<std::string>>{
             {"ip", "link", "add", host_if_, "type", "veth", "peer", "name", ns_if_},
             {"ip", "link", "set", ns_if_, "netns", name_},
             {"ip", "addr", "add", host_ip_ + "/24", "dev", host_if_},
             {"ip", "link", "set", host_if_, "up"},
             {"ip", "-n", name_, "addr", "add", ns_ip_ + "/24", "dev", ns_if_},
             {"ip", "-n", name_, "link", "set", ns_if_, "up"},
             {"ip", "-n", name_, "link", "set", "lo", "up"},
         }) {
      auto r = run(argv);
      if (r.exit_code != 0) return fmt::format("{} failed: {}", fmt::join(argv, " "), r.err);
    }
    return "";
  }
  /// Sets (or changes) netem on both ends; "" or the failure.
  std::string netem(const std::string& spec) {
    const char* verb = netem_set_ ? "change" : "add";
    std::vector<std::string> args;
    for (std::size_t b = 0, e = 0; b < spec.size(); b = e + 1) {
      e = spec.find(' ', b);
      if (e == std::string::npos) e = spec.size();
      args.push_back(spec.substr(b, e - b));
    }
    std::vector<std::string> host{"tc", "qdisc", verb, "dev", host_if_, "root", "netem"};
    std::vector<std::string> ns{"ip", "netns", "exec", name_,  "tc",   "qdisc",
                                verb, "dev",   ns_if_, "root", "netem"};
    host.insert(host.end(), args.begin(), args.end());
    ns.insert(ns.end(), args.begin(), args.end());
    for (auto& argv : {host, ns}) {
      auto r = run(argv);
      if (r.exit_code != 0) return "tc netem: " + r.err;
    }
    netem_set_ = true;
    return "";
  }
  /// Takes the host end of the veth down or up: a partition without netem.
  void link(bool up) { run({"ip", "link", "set", host_if_, up ? "up" : "down"}); }
  const std::string& name() const { return name_; }
  const std::string& host_ip() const { return host_ip_; }

 private:
  std::string name_, host_if_, ns_if_, host_ip_, ns_ip_;
  bool created_ = false;
  bool netem_set_ = false;
};

TEST(SyncFault, LatencyAndLossBetweenAgentAndBroker) {
  NetNs ns;
  if (auto why = ns.create(); !why.empty()) {
    std::cout << "skipped: needs a network namespace: " << why << "\n";
    GTEST_SKIP() << why;
  }
  // Without netem (a kernel without sch_netem) the namespace still gives a
  // real partition, by taking the link down; latency and random loss are
  // then not tested, and the test says so.
  const std::string no_netem = ns.netem("delay 80ms 20ms loss 10%");
  if (!no_netem.empty()) {
    std::cout << "netem is not available (" << no_netem
              << "): testing a partition (link down) only, no latency or random loss\n";
  }
  auto partition = [&](bool on) {
    if (no_netem.empty()) {
      ASSERT_EQ(ns.netem(on ? "loss 100%" : "delay 80ms 20ms loss 10%"), "");
    } else {
      ns.link(!on);
    }
  };
  const int port = free_port();
  const int local_port = free_port();
  OwnBroker broker(
      fmt::format("listener {} {}\nlistener {} 127.0.0.1", port, ns.host_ip(), local_port),
      local_port);
  SyncLab lab;
  lab.agent_prefix = {"ip", "netns", "exec", ns.name()};
  lab.configure(fmt::format("tcp://{}:{}", ns.host_ip(), port),
                fmt::format("tcp://127.0.0.1:{}", local_port),
                "keepalive = \"2s\"\nbatch_max_events = 20");
  lab.seed_backlog(400);
  auto hq = lab.start_hq();
  auto agent = lab.start_agent();
  ASSERT_TRUE(wait_until([&] { return lab.hq_acked() > 0; }, 60s)) << logs_of(*agent);
  // A partition of a few seconds while the store keeps producing (its probe
  // cannot reach the device from inside the namespace: an incident opens).
  partition(true);
  ASSERT_TRUE(wait_until(
      [&] {
        json s = lab.sync_status();
        return s.is_object() && s["connected"] == false;
      },
      30s));
  const auto during = lab.agent_events().size();
  partition(false);
  ASSERT_TRUE(wait_until(
      [&] {
        auto n = static_cast<std::int64_t>(lab.agent_events().size());
        return n > 400 && lab.hq_acked() == n;
      },
      90s))
      << "HQ acked " << lab.hq_acked() << " of " << lab.agent_events().size() << "\n"
      << logs_of(*agent);
  std::cout << during << " events when the partition ended\n";
  EXPECT_EQ(lab.hq_difference(), "");
}

}  // namespace
}  // namespace storewatch::test
