// The systemd probe against a fake org.freedesktop.systemd1 (tests/support/
// fake_systemd.cpp) on a private dbus-daemon this test starts: CI machines
// have no systemd as PID 1 and no system bus.

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <boost/asio/io_context.hpp>

#include <cstdlib>
#include <optional>

#include "tests/integration/probe_harness.h"
#include "tests/support/systemd_lab.h"

namespace storewatch::test {
namespace {

using std::chrono::steady_clock;
using ::testing::HasSubstr;
using ::testing::StartsWith;

std::uint64_t realtime_usec_ago(std::chrono::seconds ago) {
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(
                                        (std::chrono::system_clock::now() - ago).time_since_epoch())
                                        .count());
}

/// Probes on one io_context of the test's own, as the scheduler runs them.
class Loop {
 public:
  std::unique_ptr<probes::Probe> probe(const std::string& toml) {
    return probes::create(probe_config(toml), io.get_executor());
  }

  /// Runs the loop until `done` or `limit` passes.
  bool run_until(const std::function<bool()>& done, std::chrono::milliseconds limit = 10s) {
    const auto deadline = steady_clock::now() + limit;
    while (!done() && steady_clock::now() < deadline) {
      io.restart();
      io.run_one_for(20ms);
    }
    return done();
  }

  /// One check of `p` on this loop; cancelled (as the scheduler does) and
  /// nullopt when it takes longer than `limit`.
  std::optional<probes::ProbeResult> check(probes::Probe& p,
                                           std::chrono::milliseconds limit = 10s) {
    std::optional<probes::ProbeResult> result;
    p.start([&](probes::ProbeResult r) { result = std::move(r); });
    if (!run_until([&] { return result.has_value(); }, limit)) p.cancel();
    return result;
  }

  boost::asio::io_context io;
};

class SystemdProbeLab : public ::testing::Test {
 protected:
  SystemdLab lab;
};

TEST_F(SystemdProbeLab, ActiveRunningServiceIsOk) {
  lab.set_units(fmt::format("pos-sync.service active running restarts=2 since={}\n",
                            realtime_usec_ago(std::chrono::seconds(120))));
  auto r = run_probe("type = \"systemd\"\nunit = \"pos-sync.service\"");
  EXPECT_EQ(status_of(r), "ok") << r.message;
  EXPECT_EQ(r.message, "pos-sync.service active (running), restarted 2 times");
  EXPECT_EQ(r.metrics.at("active"), 1.0);
  EXPECT_EQ(r.metrics.at("n_restarts"), 2.0);
  EXPECT_GE(r.metrics.at("active_seconds"), 119.0);
  EXPECT_LT(r.metrics.at("active_seconds"), 600.0);
}

TEST_F(SystemdProbeLab, ANameWithoutTypeIsAService) {
  lab.set_units("pos-sync.service active running\n");
  auto r = run_probe("type = \"systemd\"\nunit = \"pos-sync\"");
  EXPECT_EQ(status_of(r), "ok") << r.message;
  EXPECT_THAT(r.message, StartsWith("pos-sync.service active (running)"));
}

TEST_F(SystemdProbeLab, FailedServiceFailsWithItsResult) {
  lab.set_units("backup.service failed failed result=exit-code restarts=5\n");
  auto r = run_probe("type = \"systemd\"\nunit = \"backup.service\"");
  EXPECT_EQ(status_of(r), "fail");
  EXPECT_EQ(r.message, "backup.service failed (exit-code), restarted 5 times");
  EXPECT_EQ(r.metrics.at("active"), 0.0);
  EXPECT_EQ(r.metrics.at("n_restarts"), 5.0);
}

TEST_F(SystemdProbeLab, InactiveServiceFails) {
  lab.set_units("pos-sync.service inactive dead\n");
  auto r = run_probe("type = \"systemd\"\nunit = \"pos-sync.service\"");
  EXPECT_EQ(status_of(r), "fail");
  EXPECT_EQ(r.message, "pos-sync.service inactive (dead)");
}

TEST_F(SystemdProbeLab, ActivatingServiceWarns) {
  lab.set_units("pos-sync.service activating start-pre\n");
  auto r = run_probe("type = \"systemd\"\nunit = \"pos-sync.service\"");
  EXPECT_EQ(status_of(r), "warn");
  EXPECT_EQ(r.message, "pos-sync.service activating (start-pre)");
}

TEST_F(SystemdProbeLab, TimerUnitsWork) {
  lab.set_units("backup.timer active waiting\n");
  auto r = run_probe("type = \"systemd\"\nunit = \"backup.timer\"");
  EXPECT_EQ(status_of(r), "ok") << r.message;
  EXPECT_EQ(r.message, "backup.timer active (waiting)");
  EXPECT_EQ(r.metrics.count("n_restarts"), 0u);
}

TEST_F(SystemdProbeLab, UnknownUnitIsNotFound) {
  lab.set_units("pos-sync.service active running\n");
  auto r = run_probe("type = \"systemd\"\nunit = \"no-such-thing.service\"");
  EXPECT_EQ(status_of(r), "fail");
  EXPECT_EQ(r.message, "unit no-such-thing.service not found");
}

TEST_F(SystemdProbeLab, BadUnitNamesAreConfigErrors) {
  try {
    probe_config("type = \"systemd\"\nunit = \"getty@.service\"");
    ADD_FAILURE() << "a template was accepted";
  } catch (const std::runtime_error& e) {
    EXPECT_THAT(e.what(), HasSubstr("template"));
  }
  EXPECT_THROW(probe_config("type = \"systemd\"\nunit = \"pos sync\""), std::runtime_error);
  EXPECT_THROW(probe_config("type = \"systemd\""), std::runtime_error);
}

TEST_F(SystemdProbeLab, NoBusAtTheAddressIsUnknown) {
  TempDir nowhere;
  ::setenv("DBUS_SYSTEM_BUS_ADDRESS", ("unix:path=" + (nowhere / "bus").string()).c_str(), 1);
  auto r = run_probe("type = \"systemd\"\nunit = \"pos-sync.service\"\ntimeout = \"2s\"");
  EXPECT_EQ(status_of(r), "unknown");
  EXPECT_THAT(r.message, StartsWith("system bus unavailable: No such file or directory"));
  EXPECT_LT(r.latency, std::chrono::seconds(1));
}

TEST_F(SystemdProbeLab, NoSystemdOnTheBusIsUnknown) {
  lab.systemd().stop(SIGTERM);
  auto r = run_probe("type = \"systemd\"\nunit = \"pos-sync.service\"\ntimeout = \"2s\"");
  EXPECT_EQ(status_of(r), "unknown");
  EXPECT_THAT(r.message, HasSubstr("systemd is not on the system bus"));
}

TEST_F(SystemdProbeLab, BusGoingAwayIsUnknownAndTheNextCheckReconnects) {
  lab.set_units("pos-sync.service active running\n");
  Loop loop;
  auto p = loop.probe("type = \"systemd\"\nunit = \"pos-sync.service\"\ntimeout = \"2s\"");
  auto first = loop.check(*p);
  ASSERT_TRUE(first);
  EXPECT_EQ(status_of(*first), "ok") << first->message;

  lab.stop_bus();
  auto down = loop.check(*p);
  ASSERT_TRUE(down) << "no result within the timeout";
  EXPECT_EQ(status_of(*down), "unknown");
  EXPECT_THAT(down->message, StartsWith("system bus unavailable: "));
  EXPECT_LT(down->latency, std::chrono::seconds(2));

  lab.start_bus();
  lab.start_systemd();
  auto again = loop.check(*p);
  ASSERT_TRUE(again);
  EXPECT_EQ(status_of(*again), "ok") << again->message;
}

TEST_F(SystemdProbeLab, AUnitWhoseQueryHangsTimesOut) {
  lab.set_units("stuck.service active running hang\n");
  const auto started = steady_clock::now();
  auto r = run_probe("type = \"systemd\"\nunit = \"stuck.service\"\ntimeout = \"1s\"");
  EXPECT_EQ(status_of(r), "fail");
  EXPECT_EQ(r.message, "timed out after 1s");
  EXPECT_LT(steady_clock::now() - started, std::chrono::seconds(3));
}

TEST_F(SystemdProbeLab, AStoppedSystemdTimesOut) {
  lab.set_units("pos-sync.service active running\n");
  ::kill(lab.systemd().pid(), SIGSTOP);
  auto r = run_probe("type = \"systemd\"\nunit = \"pos-sync.service\"\ntimeout = \"1s\"");
  EXPECT_EQ(status_of(r), "fail");
  EXPECT_EQ(r.message, "timed out after 1s");
}

TEST_F(SystemdProbeLab, AHungUnitDelaysNoOtherOnTheSharedConnection) {
  lab.set_units("stuck.service active running hang\npos-sync.service active running\n");
  Loop loop;
  auto stuck = loop.probe("type = \"systemd\"\nunit = \"stuck.service\"");
  auto healthy = loop.probe("type = \"systemd\"\nunit = \"pos-sync.service\"");
  bool stuck_done = false;
  stuck->start([&](probes::ProbeResult) { stuck_done = true; });
  auto r = loop.check(*healthy, 2s);
  ASSERT_TRUE(r);
  EXPECT_EQ(status_of(*r), "ok");
  EXPECT_FALSE(stuck_done);
  stuck->cancel();
}

TEST_F(SystemdProbeLab, ACancelledCheckNeverReports) {
  lab.set_units("pos-sync.service active running\n");
  Loop loop;
  auto p = loop.probe("type = \"systemd\"\nunit = \"pos-sync.service\"");
  auto other = loop.probe("type = \"systemd\"\nunit = \"pos-sync.service\"");
  ASSERT_TRUE(loop.check(*p));  // connected

  ::kill(lab.systemd().pid(), SIGSTOP);
  bool reported = false;
  p->start([&](probes::ProbeResult) { reported = true; });
  loop.run_until([] { return false; }, 200ms);  // the call is out, unanswered
  p->cancel();
  ::kill(lab.systemd().pid(), SIGCONT);
  // The late reply comes in before the answer to this later call.
  auto r = loop.check(*other);
  ASSERT_TRUE(r);
  EXPECT_EQ(status_of(*r), "ok");
  loop.run_until([] { return false; }, 100ms);
  EXPECT_FALSE(reported);
}

TEST_F(SystemdProbeLab, AStateChangeIsSeenByTheNextCheck) {
  lab.set_units("pos-sync.service active running\n");
  Loop loop;
  auto p = loop.probe("type = \"systemd\"\nunit = \"pos-sync.service\"");
  auto before = loop.check(*p);
  ASSERT_TRUE(before);
  EXPECT_EQ(status_of(*before), "ok");
  lab.set_units("pos-sync.service failed failed result=signal restarts=1\n");
  auto after = loop.check(*p);
  ASSERT_TRUE(after);
  EXPECT_EQ(status_of(*after), "fail");
  EXPECT_EQ(after->message, "pos-sync.service failed (signal), restarted 1 time");
}

TEST_F(SystemdProbeLab, AHundredProbesShareOneConnection) {
  std::string units;
  for (int i = 0; i < 100; ++i) units += fmt::format("lane-{:02}.service active running\n", i);
  lab.set_units(units);
  const int before = lab.connections();  // the fake and the count itself

  Loop loop;
  std::vector<std::unique_ptr<probes::Probe>> probes;
  std::vector<std::optional<probes::ProbeResult>> results(100);
  for (int i = 0; i < 100; ++i) {
    probes.push_back(loop.probe(fmt::format("type = \"systemd\"\nunit = \"lane-{:02}\"", i)));
    probes.back()->start([&results, i](probes::ProbeResult r) { results[i] = std::move(r); });
  }
  auto all_done = [&] {
    return std::all_of(results.begin(), results.end(), [](const auto& r) { return r.has_value(); });
  };
  ASSERT_TRUE(loop.run_until(all_done, 20s));
  for (int i = 0; i < 100; ++i) {
    EXPECT_EQ(status_of(*results[i]), "ok") << results[i]->message;
    EXPECT_EQ(results[i]->message, fmt::format("lane-{:02}.service active (running)", i));
  }
  EXPECT_EQ(lab.connections(), before + 1);

  // And again on the same connection.
  results.assign(100, std::nullopt);
  for (int i = 0; i < 100; ++i) {
    probes[i]->start([&results, i](probes::ProbeResult r) { results[i] = std::move(r); });
  }
  ASSERT_TRUE(loop.run_until(all_done, 20s));
  EXPECT_EQ(lab.connections(), before + 1);
}

TEST_F(SystemdProbeLab, AnIdleConnectionLetsTheLoopReturn) {
  // The daemon stops by cancelling its work so that io_context::run()
  // returns: the shared connection must not hold it between checks.
  lab.set_units("pos-sync.service active running\n");
  Loop loop;
  auto p = loop.probe("type = \"systemd\"\nunit = \"pos-sync.service\"");
  ASSERT_TRUE(loop.check(*p));
  EXPECT_TRUE(loop.run_until([&] { return loop.io.stopped(); }, 2s));
  EXPECT_EQ(lab.connections(), 3);  // the fake, the probes' (still open), this count
  auto again = loop.check(*p);
  ASSERT_TRUE(again);
  EXPECT_EQ(status_of(*again), "ok");
}

TEST_F(SystemdProbeLab, ProbeRunPrintsTheResult) {
  lab.set_units("pos-sync.service active running restarts=1\n");
  TempDir dir;
  const auto file = dir / "probe-run.toml";
  write_file(file, fmt::format("[store]\nid = \"store-lab\"\n\n[agent]\ndata_dir = \"{}\"\n\n"
                               "[[probe]]\nname = \"p\"\ntype = \"systemd\"\nunit = \"pos-sync\"\n",
                               (dir / "data").string()));
  const std::map<std::string, std::string> env{{"DBUS_SYSTEM_BUS_ADDRESS", lab.address()}};
  auto r = run(storewatch_command({"--config", file.string(), "probe", "run", "p", "--json"}), env);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto json = nlohmann::json::parse(r.out);
  EXPECT_EQ(json["name"], "p");
  EXPECT_EQ(json["type"], "systemd");
  EXPECT_EQ(json["status"], "ok");
  EXPECT_EQ(json["message"], "pos-sync.service active (running), restarted 1 time");
  EXPECT_EQ(json["metrics"]["active"], 1);
  EXPECT_EQ(json["metrics"]["n_restarts"], 1);
  EXPECT_TRUE(json["latency_ms"].is_number());

  lab.set_units("pos-sync.service failed failed result=timeout\n");
  auto failed =
      run(storewatch_command({"--config", file.string(), "probe", "run", "p", "--json"}), env);
  EXPECT_EQ(failed.exit_code, 1) << failed.err;
  auto failed_json = nlohmann::json::parse(failed.out, nullptr, false);
  ASSERT_FALSE(failed_json.is_discarded()) << failed.out;
  EXPECT_EQ(failed_json["status"], "fail");
  EXPECT_EQ(failed_json["message"], "pos-sync.service failed (timeout)");
}

}  // namespace
}  // namespace storewatch::test
