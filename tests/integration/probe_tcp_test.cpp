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

}  // namespace
}  // namespace storewatch::test
