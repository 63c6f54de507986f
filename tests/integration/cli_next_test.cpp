// The CLI says what happens next (issue 20, item 6): a reopened incident
// says when it reopened and the report leaves out the time it was up; a
// probe not checked yet says when its check comes instead of an earlier
// check's message; `probe run --all` counts by status and calls only a
// device that gave no answer "not answering". The real daemon, real sockets.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <csignal>
#include <memory>

#include "agent/scheduler.h"
#include "base/clock.h"
#include "tests/support/daemon.h"
#include "tests/support/support.h"
#include "tests/support/tcp_device.h"

namespace storewatch::test {
namespace {

using nlohmann::json;
using testing::HasSubstr;
using testing::Not;
using namespace std::chrono_literals;

class CliNext : public ::testing::Test {
 protected:
  void start(const std::string& body) {
    daemon_config = DaemonConfig::in(dir, "store-next");
    daemon_config.broker = fmt::format("tcp://127.0.0.1:{}", free_port());
    daemon_config.body = body;
    daemon_config.write(config);
    launch();
  }
  void launch() {
    daemon = launch_daemon(config, dir / "logs");
    ASSERT_TRUE(wait_until([&] { return daemon_is_running(config); })) << daemon->err();
  }

  RunResult cli(std::vector<std::string> args) {
    return run_cli(config, std::move(args), {{"NO_COLOR", "1"}});
  }

  json cli_json(std::vector<std::string> args) {
    auto r = cli(std::move(args));
    return json::parse(r.out, nullptr, false);
  }

  json incident_of(const std::string& probe) {
    auto list = cli_json({"incidents", "--all", "--json"});
    if (!list.is_array()) return json::object();
    for (const auto& i : list) {
      if (i.value("probe", "") == probe) return i;
    }
    return json::object();
  }

  json probe_status(const std::string& probe) {
    auto s = cli_json({"status", "--json"});
    if (!s.is_object()) return json::object();
    for (const auto& p : s["probes"]) {
      if (p.value("name", "") == probe) return p;
    }
    return json::object();
  }

  TempDir dir;
  std::filesystem::path config = dir / "storewatch.toml";
  DaemonConfig daemon_config;
  std::unique_ptr<Child> daemon;
};

/// A name whose slot offset in `interval` is at most `max` (the scheduler's
/// offsets are a stable hash of the name).
std::string name_with_offset_below(const std::string& stem, Millis interval, Millis max) {
  for (int k = 0; k < 1000; ++k) {
    std::string name = fmt::format("{}-{}", stem, k);
    if (agent::Scheduler::offset_of(name, interval) <= max) return name;
  }
  ADD_FAILURE() << "no name with a small offset";
  return stem;
}

TEST_F(CliNext, AReopenedIncidentSaysWhenAndTheReportLeavesOutTheTimeItWasUp) {
  TcpDevice device;
  start(tcp_probe_toml("lane-01", device.port(),
                       "interval = \"200ms\"\ntimeout = \"150ms\"\nfail_after = 2\n"
                       "recover_after = 2\n"));
  device.down();
  ASSERT_TRUE(wait_until([&] { return incident_of("lane-01").value("state", "") == "open"; }, 20s))
      << daemon->err();
  device.up();
  ASSERT_TRUE(
      wait_until([&] { return incident_of("lane-01").value("state", "") == "resolved"; }, 20s));
  device.down();
  json inc;
  ASSERT_TRUE(wait_until(
      [&] {
        inc = incident_of("lane-01");
        return inc.value("reopen_count", 0) == 1 && inc.value("state", "") == "open";
      },
      20s));
  const std::string uid = inc["uid"];

  // incident show: the header says when it reopened.
  auto show = cli({"incident", "show", uid});
  ASSERT_EQ(show.exit_code, 0) << show.err;
  EXPECT_THAT(show.out, testing::ContainsRegex("reopened +20[0-9-]+ [0-9:]+Z \\("));
  auto shown = cli_json({"incident", "show", uid, "--json"});
  ASSERT_TRUE(shown["t_reopened"].is_string()) << shown.dump();
  // The incidents table: how long ago.
  auto table = cli({"incidents"});
  EXPECT_THAT(table.out, testing::ContainsRegex("reopened 1x (just now|[0-9]+s ago)")) << table.out;

  device.up();
  ASSERT_TRUE(
      wait_until([&] { return incident_of("lane-01").value("state", "") == "resolved"; }, 20s));
  // The reopened event says when the restore before it was and when the
  // new fault began; the report's downtime leaves that span out.
  shown = cli_json({"incident", "show", uid, "--json"});
  json reopened;
  for (const auto& e : shown["events"]) {
    if (e["type"] == "reopened") reopened = e["body"];
  }
  ASSERT_TRUE(reopened.is_object()) << shown.dump();
  auto t = [](const json& v) { return *parse_rfc3339(v.get<std::string>()); };
  const WallTime fault = t(shown["t_fault"]), restored = t(shown["t_restored"]);
  const WallTime up_from = t(reopened["restored_at"]), up_to = t(reopened["fault_at"]);
  ASSERT_LT(fault, up_from);
  ASSERT_LT(up_from, up_to);
  ASSERT_LT(up_to, restored);
  const double expected =
      static_cast<double>(((restored - fault) - (up_to - up_from)).count()) / 1000.0;

  auto report = cli_json({"report", "--json"});
  ASSERT_EQ(report["top_by_downtime"].size(), 1u) << report.dump();
  EXPECT_DOUBLE_EQ(report["top_by_downtime"][0]["downtime_s"].get<double>(), expected)
      << report.dump();
  EXPECT_DOUBLE_EQ(report["mttr"]["mean_s"].get<double>(), expected);
}

TEST_F(CliNext, AProbeNotCheckedSinceAResolveIsPendingWithItsNextCheck) {
  TcpDevice device;
  // Checked once at start, then every 20 s: after the resolve below its next
  // check is many seconds away.
  const std::string name = name_with_offset_below("lane", 20s, 250ms);
  device.down();
  start(tcp_probe_toml(name, device.port(),
                       "interval = \"20s\"\ntimeout = \"1s\"\nfail_after = 1\n"));
  json inc;
  ASSERT_TRUE(wait_until(
      [&] {
        inc = incident_of(name);
        return inc.value("state", "") == "open";
      },
      20s))
      << daemon->err();
  json before = probe_status(name);
  EXPECT_FALSE(before.value("pending", true)) << before.dump();
  ASSERT_THAT(before.value("message", ""), HasSubstr("refused"));

  auto resolved = cli({"resolve", inc["uid"], "--by", "ann"});
  ASSERT_EQ(resolved.exit_code, 0) << resolved.err;
  json p = probe_status(name);
  EXPECT_TRUE(p.value("pending", false)) << p.dump();
  ASSERT_TRUE(p["next_check"].is_string()) << p.dump();
  EXPECT_GT(*parse_rfc3339(p["next_check"].get<std::string>()), SystemClock().wall_now());

  auto status = cli({"status"});
  ASSERT_EQ(status.exit_code, 0) << status.err;
  EXPECT_THAT(status.out, testing::ContainsRegex("pending \\(first check at [0-9:]+Z\\)"))
      << status.out;
  EXPECT_THAT(status.out, Not(HasSubstr("refused"))) << "the earlier check's message";
}

TEST_F(CliNext, AtStartUpAProbeNotCheckedYetIsPendingNotItsLastMessage) {
  // A check that runs 3 s and times out: in flight for that long after a
  // start, whenever the scheduler starts it.
  start(
      "[[probe]]\nname = \"slow-disk\"\ntype = \"exec\"\ncommand = [\"/bin/sleep\", \"30\"]\n"
      "interval = \"2s\"\ntimeout = \"3s\"\n");
  ASSERT_TRUE(wait_until(
      [&] { return probe_status("slow-disk").value("message", "").starts_with("timed out"); },
      20s));
  ASSERT_EQ(daemon->stop(SIGTERM), 0) << daemon->err();
  launch();

  json p = probe_status("slow-disk");
  EXPECT_TRUE(p.value("pending", false)) << p.dump();
  auto status = cli({"status"});
  ASSERT_EQ(status.exit_code, 0) << status.err;
  EXPECT_THAT(status.out,
              testing::ContainsRegex("pending \\((first check at [0-9:]+Z|checking now)\\)"))
      << status.out;
  EXPECT_THAT(status.out, Not(HasSubstr("timed out"))) << "the last life's message";
}

TEST_F(CliNext, ProbeRunAllCountsByStatusAndCallsOnlySilenceNotAnswering) {
  TcpDevice up;
  TcpDevice refused;
  refused.down();
  // A UDP socket that never reads: a DNS server that gives no answer.
  const int silent = ::socket(AF_INET, SOCK_DGRAM, 0);
  ASSERT_GE(silent, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(silent, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  socklen_t len = sizeof addr;
  ASSERT_EQ(::getsockname(silent, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  const int silent_port = ntohs(addr.sin_port);
  daemon_config = DaemonConfig::in(dir, "store-next");
  daemon_config.body =
      tcp_probe_toml("lane-01", up.port()) + tcp_probe_toml("lane-02", refused.port()) +
      fmt::format(
          "[[probe]]\nname = \"dns-1\"\ntype = \"dns\"\nserver = \"127.0.0.1:{}\"\n"
          "query = \"pos.store.example\"\ntimeout = \"500ms\"\n",
          silent_port);
  daemon_config.write(config);

  auto r = cli({"probe", "run", "--all"});
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_THAT(r.out, HasSubstr("3 probes: 1 ok, 1 failing, 1 not answering")) << r.out;
  ::close(silent);
}

}  // namespace
}  // namespace storewatch::test
