// The tcp probe and `storewatch probe run` against the store simulator.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/integration/probe_harness.h"
#include "tests/support/store_lab.h"

namespace storewatch::test {
namespace {

using ::testing::HasSubstr;

class TcpProbeLab : public ::testing::Test {
 protected:
  int port = free_port();
  StoreLab lab{fmt::format(R"([[device]]
name = "terminal"
kind = "tcp"
host = "127.0.0.1"
port = {}
)",
                           port)};
  std::string probe = fmt::format(
      "type = \"tcp\"\nhost = \"127.0.0.1\"\nport = {}\n"
      "timeout = \"2s\"",
      port);
};

TEST_F(TcpProbeLab, ConnectsToADeviceThatIsUp) {
  auto r = run_probe(probe);
  EXPECT_EQ(status_of(r), "ok") << r.message;
  EXPECT_THAT(r.message, HasSubstr(fmt::format("connected to 127.0.0.1:{}", port)));
  EXPECT_EQ(r.metrics.count("connect_ms"), 1u);
}

TEST_F(TcpProbeLab, RefusedWhenTheDeviceIsDown) {
  lab.fault("terminal", "down");
  auto r = run_probe(probe);
  EXPECT_EQ(status_of(r), "fail");
  EXPECT_THAT(r.message, HasSubstr("refused"));
}

TEST_F(TcpProbeLab, NameThatDoesNotResolveFailsSayingSo) {
  auto r = run_probe("type = \"tcp\"\nhost = \"no-such-device.invalid\"\nport = 9100");
  EXPECT_EQ(status_of(r), "fail");
  EXPECT_THAT(r.message, HasSubstr("no-such-device.invalid"));
}

TEST_F(TcpProbeLab, ProbeRunPrintsTheDesignShape) {
  TempDir dir;
  auto r = run_probe_cli(dir, probe);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_TRUE(r.result.is_object()) << r.err;
  EXPECT_EQ(r.result["name"], "p");
  EXPECT_EQ(r.result["type"], "tcp");
  EXPECT_EQ(r.result["status"], "ok");
  EXPECT_TRUE(r.result["latency_ms"].is_number());
  EXPECT_TRUE(r.result["message"].is_string());
  EXPECT_TRUE(r.result["metrics"]["connect_ms"].is_number());

  lab.fault("terminal", "down");
  auto down = run_probe_cli(dir, probe);
  EXPECT_EQ(down.exit_code, 1);
  EXPECT_EQ(down.result["status"], "fail");
}

TEST_F(TcpProbeLab, ProbeRunNamesTheProbesWhenTheNameIsUnknown) {
  TempDir dir;
  write_file(dir / "c.toml",
             "[store]\nid = \"s\"\n\n[[probe]]\nname = \"lane-01\"\ntype = "
             "\"tcp\"\nhost = \"127.0.0.1\"\nport = 1\n");
  auto r = run(storewatch_command({"--config", (dir / "c.toml").string(), "probe", "run", "x"}));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("no probe \"x\""));
  EXPECT_THAT(r.err, HasSubstr("lane-01"));
}

TEST_F(TcpProbeLab, ProbeRunAllChecksEveryProbeAtOnce) {
  TempDir dir;
  std::string probes;
  // Forty probes, every other one at a port where nothing listens.
  for (int i = 0; i < 40; ++i) {
    probes += fmt::format(
        "[[probe]]\nname = \"t{:02}\"\ntype = \"tcp\"\nhost = \"127.0.0.1\"\n"
        "port = {}\ntimeout = \"2s\"\n\n",
        i, i % 2 == 0 ? port : 1);
  }
  write_file(dir / "c.toml", "[store]\nid = \"s\"\n\n" + probes);
  auto r = run(storewatch_command(
      {"--config", (dir / "c.toml").string(), "probe", "run", "--all", "--json"}));
  EXPECT_EQ(r.exit_code, 1) << r.err;  // the refused ones fail
  auto list = nlohmann::json::parse(r.out, nullptr, false);
  ASSERT_TRUE(list.is_array()) << r.out;
  ASSERT_EQ(list.size(), 40u);
  for (std::size_t i = 0; i < list.size(); ++i) {
    EXPECT_EQ(list[i]["name"], fmt::format("t{:02}", i));
    EXPECT_EQ(list[i]["status"], i % 2 == 0 ? "ok" : "fail") << list[i].dump();
  }

  auto two = run(storewatch_command(
      {"--config", (dir / "c.toml").string(), "probe", "run", "t00", "t02", "--json"}));
  EXPECT_EQ(two.exit_code, 0) << two.err;
  auto pair = nlohmann::json::parse(two.out, nullptr, false);
  ASSERT_TRUE(pair.is_array());
  EXPECT_EQ(pair.size(), 2u);

  auto table = run(
      storewatch_command({"--config", (dir / "c.toml").string(), "probe", "run", "t00", "t01"}));
  EXPECT_EQ(table.exit_code, 1);
  EXPECT_THAT(table.out, HasSubstr("2 probes: 1 ok, 1 failing"));

  auto both = run(
      storewatch_command({"--config", (dir / "c.toml").string(), "probe", "run", "t00", "--all"}));
  EXPECT_EQ(both.exit_code, 2);
  EXPECT_THAT(both.err, HasSubstr("not both"));
}

TEST(ProbeTypes, ListsEveryTypeWithItsKeys) {
  auto r = run(storewatch_command({"probe", "types", "--json"}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto list = nlohmann::json::parse(r.out, nullptr, false);
  ASSERT_TRUE(list.is_array()) << r.out;
  auto tcp = std::find_if(list.begin(), list.end(),
                          [](const nlohmann::json& t) { return t["type"] == "tcp"; });
  ASSERT_NE(tcp, list.end());
  ASSERT_EQ((*tcp)["keys"].size(), 2u);
  EXPECT_EQ((*tcp)["keys"][0]["name"], "host");
  EXPECT_EQ((*tcp)["keys"][0]["required"], true);
  EXPECT_FALSE((*tcp)["keys"][0]["description"].get<std::string>().empty());
}

}  // namespace
}  // namespace storewatch::test
