// End to end, with real processes: a real mosquitto, a TCP listener as the
// device, `storewatch hq run` and `storewatch run`. The device goes down and
// comes back; the incident must open and resolve locally and at HQ.

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <fmt/format.h>

#include <csignal>

#include "base/clock.h"
#include "tests/support/support.h"
#include "tests/support/tcp_device.h"

namespace storewatch::test {
namespace {

using nlohmann::json;

constexpr int kIntervalMs = 200;
constexpr int kTimeoutMs = 300;
constexpr int kFailAfter = 2;

struct Fleet {
  TempDir dir;
  Broker broker;
  TcpDevice device;

  std::filesystem::path agent_config = dir / "storewatch.toml";
  std::filesystem::path hq_config = dir / "hq.toml";

  Fleet() {
    write_file(agent_config, fmt::format(R"(
[store]
id = "store-e2e"
name = "Integration Market"

[agent]
data_dir = "{0}/agent"
control_socket = "{0}/agent/control.sock"
log_level = "debug"

[sync]
broker = "{1}"
reconnect_max = "1s"
ack_timeout = "2s"

[[probe]]
name = "lane-01-pos"
type = "tcp"
host = "127.0.0.1"
port = {2}
interval = "{3}ms"
timeout = "{4}ms"
fail_after = {5}
recover_after = 2
severity = "high"
)",
                                         dir.path().string(), broker.uri(), device.port(),
                                         kIntervalMs, kTimeoutMs, kFailAfter));
    write_file(hq_config, fmt::format(R"(
[hq]
broker = "{}"
database = "{}/hq/hq.db"
reconnect_max = "1s"
)",
                                      broker.uri(), dir.path().string()));
  }

  RunResult agent(std::vector<std::string> args) {
    std::vector<std::string> full{"--config", agent_config.string()};
    full.insert(full.end(), args.begin(), args.end());
    return run(storewatch_command(full));
  }
  RunResult hq(std::vector<std::string> args) {
    std::vector<std::string> full{"hq", "--config", hq_config.string()};
    full.insert(full.end(), args.begin(), args.end());
    return run(storewatch_command(full));
  }
  std::unique_ptr<Child> start_agent() {
    return std::make_unique<Child>(storewatch_command({"--config", agent_config.string(), "run"}),
                                   dir / "logs");
  }
  std::unique_ptr<Child> start_hq() {
    return std::make_unique<Child>(
        storewatch_command({"hq", "--config", hq_config.string(), "run"}), dir / "logs");
  }

  /// The incident of lane-01-pos in `list`, or null.
  static json find(const json& list) {
    for (const auto& i : list) {
      if (i.value("probe", "") == "lane-01-pos") return i;
    }
    return nullptr;
  }
  json local_incident() {
    auto r = agent({"incidents", "--all", "--json"});
    if (r.exit_code != 0) return nullptr;
    return find(json::parse(r.out, nullptr, false));
  }
  json hq_incident() {
    auto r = hq({"incidents", "--json"});
    if (r.exit_code != 0) return nullptr;
    return find(json::parse(r.out, nullptr, false));
  }
  json status() {
    auto r = agent({"status", "--json"});
    if (r.exit_code != 0) return nullptr;
    return json::parse(r.out, nullptr, false);
  }
};

TEST(EndToEnd, DeviceDownAndUpOpensAndResolvesTheIncidentLocallyAndAtHq) {
  Fleet f;
  auto hq = f.start_hq();
  auto agent = f.start_agent();

  ASSERT_TRUE(wait_until([&] {
    json s = f.status();
    return s.is_object() && s["sync"]["connected"] == true && s["probes"][0]["state"] == "ok";
  })) << logs_of(*agent);

  f.device.down();
  const WallTime t_down = SystemClock().wall_now();
  json local;
  ASSERT_TRUE(wait_until([&] {
    local = f.local_incident();
    return local.is_object() && local["state"] == "open";
  })) << logs_of(*agent);
  EXPECT_EQ(local["severity"], "high");
  EXPECT_EQ(local["priority"], "P2");
  for (const char* key :
       {"uid", "probe", "state", "severity", "priority", "t_fault", "t_detect", "t_ack",
        "t_restored", "t_resolved", "t_closed", "self_healed", "suppressed_by", "flapping",
        "in_maintenance", "reopen_count", "summary"}) {
    EXPECT_TRUE(local.contains(key)) << key;
  }
  // Detected after fail_after failing checks. The latency target itself
  // (fail_after × interval + timeout) is measured by tests/bench/e2e_latency.py;
  // here only a gross miss fails, so a loaded CI machine cannot flake it.
  auto t_detect = parse_rfc3339(local["t_detect"].get<std::string>());
  ASSERT_TRUE(t_detect.has_value());
  auto detect_ms = (*t_detect - t_down).count();
  std::cout << "detected " << detect_ms << " ms after the device went down\n";
  EXPECT_LE(detect_ms, kFailAfter * kIntervalMs + kTimeoutMs + 5000);

  json at_hq;
  ASSERT_TRUE(wait_until([&] {
    at_hq = f.hq_incident();
    return at_hq.is_object() && at_hq["state"] == "open";
  })) << logs_of(*hq);
  EXPECT_EQ(at_hq["uid"], local["uid"]);
  EXPECT_EQ(at_hq["store"], "store-e2e");
  const WallTime t_at_hq = SystemClock().wall_now();
  std::cout << "seen at HQ " << (t_at_hq - *t_detect).count() << " ms after detection\n";

  f.device.up();
  ASSERT_TRUE(wait_until([&] {
    local = f.local_incident();
    return local.is_object() && local["state"] == "resolved";
  })) << logs_of(*agent);
  EXPECT_FALSE(local["t_restored"].is_null());
  EXPECT_FALSE(local["t_resolved"].is_null());
  ASSERT_TRUE(wait_until([&] {
    at_hq = f.hq_incident();
    return at_hq.is_object() && at_hq["state"] == "resolved";
  })) << logs_of(*hq);

  // Open-only views are empty again, everything was acknowledged by HQ.
  EXPECT_EQ(json::parse(f.agent({"incidents", "--json"}).out), json::array());
  EXPECT_EQ(json::parse(f.hq({"incidents", "--open", "--json"}).out), json::array());
  ASSERT_TRUE(wait_until([&] {
    json s = f.status();
    return s.is_object() && s["sync"]["queued"] == 0 && s["sync"]["hq_acked_seq"] == 2;
  }));
  json stores = json::parse(f.hq({"stores", "--json"}).out);
  ASSERT_EQ(stores.size(), 1u);
  EXPECT_EQ(stores[0]["store"], "store-e2e");
  EXPECT_EQ(stores[0]["online"], true);
  EXPECT_EQ(stores[0]["acked_seq"], 2);
  EXPECT_EQ(stores[0]["open_incidents"], 0);

  // The timeline names the events.
  auto show = f.agent({"incident", "show", local["uid"].get<std::string>()});
  EXPECT_EQ(show.exit_code, 0) << show.err;
  EXPECT_NE(show.out.find("opened"), std::string::npos);
  EXPECT_NE(show.out.find("resolved"), std::string::npos);

  // SIGTERM: the agent says goodbye and HQ marks the store offline.
  EXPECT_EQ(agent->stop(SIGTERM), 0) << logs_of(*agent);
  ASSERT_TRUE(wait_until([&] {
    json s = json::parse(f.hq({"stores", "--json"}).out, nullptr, false);
    return s.is_array() && s.size() == 1 && s[0]["online"] == false;
  }));
  EXPECT_EQ(hq->stop(SIGTERM), 0) << logs_of(*hq);
}

TEST(EndToEnd, BrokerDownAtStartupQueuesIncidentsAndDeliversThemLater) {
  Fleet f;
  f.broker.stop();
  auto agent = f.start_agent();
  // With no broker the daemon still probes and opens the incident locally.
  ASSERT_TRUE(wait_until([&] {
    json s = f.status();
    return s.is_object() && s["probes"][0]["state"] == "ok";
  })) << logs_of(*agent);
  EXPECT_EQ(f.status()["sync"]["connected"], false);
  f.device.down();
  ASSERT_TRUE(wait_until([&] {
    json i = f.local_incident();
    return i.is_object() && i["state"] == "open";
  })) << logs_of(*agent);
  EXPECT_EQ(f.status()["sync"]["queued"], 1);
  EXPECT_TRUE(agent->running());

  // The broker and HQ come up: the queued event arrives and is acked.
  f.broker.start();
  auto hq = f.start_hq();
  ASSERT_TRUE(wait_until([&] {
    json i = f.hq_incident();
    return i.is_object() && i["state"] == "open";
  })) << logs_of(*agent)
      << logs_of(*hq);
  ASSERT_TRUE(wait_until([&] {
    json s = f.status();
    return s.is_object() && s["sync"]["queued"] == 0 && s["sync"]["connected"] == true;
  })) << logs_of(*agent);
}

TEST(EndToEnd, RestartResumesTheOpenIncidentInsteadOfOpeningAnother) {
  Fleet f;
  f.device.down();
  auto agent = f.start_agent();
  json first;
  ASSERT_TRUE(wait_until([&] {
    first = f.local_incident();
    return first.is_object() && first["state"] == "open";
  })) << logs_of(*agent);
  ASSERT_EQ(agent->stop(SIGKILL), 128 + SIGKILL);

  agent = f.start_agent();
  ASSERT_TRUE(wait_until([&] {
    json s = f.status();
    return s.is_object() && s["agent"]["running"] == true &&
           s["probes"][0]["state"] == "hard_fail" && s["probes"][0]["last_check"] != nullptr;
  })) << logs_of(*agent);
  f.device.up();
  json resolved;
  ASSERT_TRUE(wait_until([&] {
    resolved = f.local_incident();
    return resolved.is_object() && resolved["state"] == "resolved";
  })) << logs_of(*agent);
  EXPECT_EQ(resolved["uid"], first["uid"]);
  auto all = json::parse(f.agent({"incidents", "--all", "--json"}).out);
  EXPECT_EQ(all.size(), 1u);
}

}  // namespace
}  // namespace storewatch::test
