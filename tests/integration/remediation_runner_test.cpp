// The remediation actions for real: child processes (exec), the fake systemd
// on a private dbus-daemon (systemd-restart), the store simulator's http
// device (http).

#include "agent/remediation_runner.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>

#include <boost/asio/io_context.hpp>

#include <fmt/format.h>

#include <cerrno>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "tests/support/store_lab.h"
#include "tests/support/support.h"
#include "tests/support/systemd_lab.h"

namespace storewatch::test {
namespace {

using agent::ActionOutcome;
using config::RemediationConfig;
using config::RemediationType;
using std::chrono::steady_clock;
using ::testing::AllOf;
using ::testing::Each;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

/// Processes of group `pgid` that are not zombies (a zombie is dead: whoever
/// adopted it may be slow to reap it, and it runs nothing).
int live_in_group(pid_t pgid) {
  int n = 0;
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    const std::string name = entry.path().filename();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream in(entry.path() / "stat");
    std::string stat;
    if (!std::getline(in, stat)) continue;
    // pid (comm) state ppid pgrp ...; comm may hold spaces and parentheses.
    const auto close = stat.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream rest(stat.substr(close + 1));
    char state = 0;
    long ppid = 0, pgrp = 0;
    if (!(rest >> state >> ppid >> pgrp)) continue;
    if (pgrp == pgid && state != 'Z' && state != 'X') ++n;
  }
  return n;
}

bool alive(pid_t pid) {
  std::ifstream in(fmt::format("/proc/{}/stat", pid));
  std::string stat;
  if (!std::getline(in, stat)) return false;
  const auto close = stat.rfind(')');
  return close != std::string::npos && close + 2 < stat.size() && stat[close + 2] != 'Z';
}

/// The runner on a loop of the test's own.
class RunnerLoop {
 public:
  RunnerLoop() : runner(agent::make_remediation_runner(io)) {}

  /// Runs the loop until `done` or `limit` passes.
  bool run_until(const std::function<bool()>& done, std::chrono::milliseconds limit = 20s) {
    const auto deadline = steady_clock::now() + limit;
    while (!done() && steady_clock::now() < deadline) {
      io.restart();
      io.run_one_for(20ms);
    }
    return done();
  }

  struct Run {
    std::optional<ActionOutcome> outcome;
    int calls = 0;
  };

  /// Starts `r`; the returned record fills in when its `done` runs.
  std::shared_ptr<Run> start(const RemediationConfig& r) {
    auto run = std::make_shared<Run>();
    runner->run(r, [run](ActionOutcome o) {
      ++run->calls;
      run->outcome = std::move(o);
    });
    return run;
  }

  /// Runs `r` to its end (or `limit`).
  std::optional<ActionOutcome> run(const RemediationConfig& r,
                                   std::chrono::milliseconds limit = 20s) {
    auto run = start(r);
    run_until([&] { return run->calls > 0; }, limit);
    return run->outcome;
  }

  boost::asio::io_context io;
  std::unique_ptr<agent::RemediationRunner> runner;
};

RemediationConfig exec(std::vector<std::string> argv, Millis timeout = 10s) {
  RemediationConfig r;
  r.name = "fix";
  r.type = RemediationType::exec;
  r.command = std::move(argv);
  r.timeout = timeout;
  return r;
}

RemediationConfig restart(const std::string& unit, Millis timeout = 5s) {
  RemediationConfig r;
  r.name = "restart";
  r.type = RemediationType::systemd_restart;
  r.unit = unit;
  r.timeout = timeout;
  return r;
}

RemediationConfig http(const std::string& url, const std::string& method = "POST",
                       int expect_status = 200, Millis timeout = 5s) {
  RemediationConfig r;
  r.name = "reset";
  r.type = RemediationType::http;
  r.url = url;
  r.method = method;
  r.expect_status = expect_status;
  r.timeout = timeout;
  return r;
}

// ---------------------------------------------------------------------------
// exec

TEST(RemediationExec, ExitZeroIsOkWithItsOutput) {
  RunnerLoop loop;
  auto o = loop.run(exec({"/bin/sh", "-c", "echo restarted lane 01; echo note >&2"}));
  ASSERT_TRUE(o);
  EXPECT_TRUE(o->ok) << o->detail;
  EXPECT_EQ(o->exit_code, 0);
  EXPECT_EQ(o->detail, "exit 0");
  EXPECT_EQ(o->output, "restarted lane 01\nnote\n");
  EXPECT_FALSE(o->output_truncated);
  EXPECT_LT(o->took, 10s);
}

TEST(RemediationExec, ACommandOnThePathRunsWithoutAShell) {
  RunnerLoop loop;
  // With a shell, the ';' would start a second command.
  auto o = loop.run(exec({"echo", "a;", "b", "$HOME"}));
  ASSERT_TRUE(o);
  EXPECT_TRUE(o->ok) << o->detail;
  EXPECT_EQ(o->output, "a; b $HOME\n");
}

TEST(RemediationExec, NonZeroExitFails) {
  RunnerLoop loop;
  auto o = loop.run(exec({"/bin/sh", "-c", "echo lane busy; exit 3"}));
  ASSERT_TRUE(o);
  EXPECT_FALSE(o->ok);
  EXPECT_EQ(o->exit_code, 3);
  EXPECT_EQ(o->detail, "exit 3");
  EXPECT_EQ(o->output, "lane busy\n");
}

TEST(RemediationExec, KilledBySignalFails) {
  RunnerLoop loop;
  auto o = loop.run(exec({"/bin/sh", "-c", "kill -TERM $$"}));
  ASSERT_TRUE(o);
  EXPECT_FALSE(o->ok);
  EXPECT_FALSE(o->exit_code);
  EXPECT_THAT(o->detail, StartsWith("killed by signal 15"));
}

TEST(RemediationExec, AHangIsKilledWithItsWholeGroupAtTheTimeout) {
  RunnerLoop loop;
  TempDir dir;
  const auto pid_file = dir / "pid";
  // A grandchild in the background and the shell itself both hang.
  auto o = loop.run(exec(
      {"/bin/sh", "-c", fmt::format("echo $$ > {}; sleep 60 & sleep 60; wait", pid_file.string())},
      500ms));
  ASSERT_TRUE(o);
  EXPECT_FALSE(o->ok);
  EXPECT_FALSE(o->exit_code);
  EXPECT_EQ(o->detail, "timed out after 500ms, killed");
  EXPECT_GE(o->took, 500ms);
  EXPECT_LT(o->took, 5s);
  const pid_t pgid = std::stoi(read_file(pid_file));
  EXPECT_TRUE(wait_until([&] { return live_in_group(pgid) == 0; }, 5s))
      << live_in_group(pgid) << " processes left in group " << pgid;
}

TEST(RemediationExec, TenMegabytesOfOutputAreReadAndFourKilobytesKept) {
  RunnerLoop loop;
  auto o =
      loop.run(exec({"/bin/sh", "-c", "head -c 10485760 /dev/zero | tr '\\0' x; echo done >&2"}));
  ASSERT_TRUE(o);
  EXPECT_TRUE(o->ok) << o->detail;
  EXPECT_EQ(o->detail, "exit 0");
  EXPECT_EQ(o->output.size(), agent::kActionOutputKept);
  EXPECT_THAT(o->output, Each('x'));
  EXPECT_TRUE(o->output_truncated);
}

TEST(RemediationExec, EndlessOutputIsKilledAndFails) {
  RunnerLoop loop;
  auto o = loop.run(exec({"yes", "storewatch"}, 60s), 60s);
  ASSERT_TRUE(o);
  EXPECT_FALSE(o->ok);
  EXPECT_FALSE(o->exit_code);
  EXPECT_EQ(o->detail, "output over 64 MB, killed");
  EXPECT_EQ(o->output.size(), agent::kActionOutputKept);
  EXPECT_THAT(o->output, StartsWith("storewatch\nstorewatch\n"));
  EXPECT_TRUE(o->output_truncated);
  EXPECT_LT(o->took, 60s);
}

TEST(RemediationExec, AMissingCommandFailsClearly) {
  RunnerLoop loop;
  auto absolute = loop.run(exec({"/usr/bin/storewatch-no-such-remedy", "--now"}));
  ASSERT_TRUE(absolute);
  EXPECT_FALSE(absolute->ok);
  EXPECT_FALSE(absolute->exit_code);
  EXPECT_EQ(absolute->detail, "not found: /usr/bin/storewatch-no-such-remedy");

  auto on_path = loop.run(exec({"storewatch-no-such-remedy"}));
  ASSERT_TRUE(on_path);
  EXPECT_FALSE(on_path->ok);
  EXPECT_EQ(on_path->detail, "not found: storewatch-no-such-remedy");

  auto empty = loop.run(exec({}));
  ASSERT_TRUE(empty);
  EXPECT_FALSE(empty->ok);
  EXPECT_EQ(empty->detail, "empty command");
}

TEST(RemediationExec, ANonExecutableFileFailsClearly) {
  RunnerLoop loop;
  TempDir dir;
  const auto script = dir / "fix-lane.sh";
  write_file(script, "#!/bin/sh\necho fixed\n");
  ::chmod(script.c_str(), 0644);
  auto o = loop.run(exec({script.string()}));
  ASSERT_TRUE(o);
  EXPECT_FALSE(o->ok);
  EXPECT_FALSE(o->exit_code);
  EXPECT_THAT(o->detail, AllOf(StartsWith("not executable: "), HasSubstr(script.string())));
}

TEST(RemediationExec, ABackgroundChildDoesNotHoldTheRunner) {
  RunnerLoop loop;
  // The child exits at once; its background grandchild keeps the output pipe
  // open. The runner ends after a short grace and kills the group.
  auto o = loop.run(exec({"/bin/sh", "-c", "sleep 60 & echo $!"}, 30s));
  ASSERT_TRUE(o);
  EXPECT_TRUE(o->ok) << o->detail;
  EXPECT_LT(o->took, 5s);
  const pid_t sleeper = std::stoi(o->output);
  EXPECT_TRUE(wait_until([&] { return !alive(sleeper); }, 5s)) << "pid " << sleeper << " lives";
}

TEST(RemediationExec, ADetachedChildDoesNotHoldTheRunner) {
  RunnerLoop loop;
  // setsid leaves the group, so it is not killed — but it still holds the
  // pipe, and that must not keep the action from ending.
  auto o = loop.run(exec({"/bin/sh", "-c", "setsid sleep 60 & echo $!"}, 30s));
  ASSERT_TRUE(o);
  EXPECT_TRUE(o->ok) << o->detail;
  EXPECT_LT(o->took, 5s);
  const pid_t detached = std::stoi(o->output);
  if (alive(detached)) ::kill(detached, SIGKILL);
}

TEST(RemediationExec, StopKillsTheGroupAndReportsOnce) {
  RunnerLoop loop;
  TempDir dir;
  const auto pid_file = dir / "pid";
  auto run = loop.start(exec({"/bin/sh", "-c",
                              fmt::format("echo $$ > {}.tmp && mv {}.tmp {}; sleep 60 & sleep 60",
                                          pid_file.string(), pid_file.string(), pid_file.string())},
                             60s));
  ASSERT_TRUE(loop.run_until([&] { return std::filesystem::exists(pid_file); }, 10s));
  const pid_t pgid = std::stoi(read_file(pid_file));
  EXPECT_EQ(run->calls, 0);
  EXPECT_TRUE(loop.run_until([&] { return live_in_group(pgid) == 3; }, 10s))
      << "the shell and its two sleeps: " << live_in_group(pgid);
  loop.runner->stop();
  EXPECT_EQ(run->calls, 0) << "done ran inside stop()";
  ASSERT_TRUE(loop.run_until([&] { return run->calls > 0 && live_in_group(pgid) == 0; }, 10s))
      << live_in_group(pgid) << " processes left";
  EXPECT_EQ(run->calls, 1);
  EXPECT_FALSE(run->outcome->ok);
  EXPECT_EQ(run->outcome->detail, "cancelled");
  // Nothing more comes: a second stop() and more turns of the loop add no call.
  loop.runner->stop();
  loop.io.restart();
  loop.io.poll();
  EXPECT_EQ(run->calls, 1);
}

TEST(RemediationExec, DestroyingTheRunnerKillsWithoutCallingDone) {
  RunnerLoop loop;
  TempDir dir;
  const auto pid_file = dir / "pid";
  auto run = loop.start(exec({"/bin/sh", "-c",
                              fmt::format("echo $$ > {}.tmp && mv {}.tmp {}; sleep 60",
                                          pid_file.string(), pid_file.string(), pid_file.string())},
                             60s));
  ASSERT_TRUE(loop.run_until([&] { return std::filesystem::exists(pid_file); }, 10s));
  const pid_t pgid = std::stoi(read_file(pid_file));
  EXPECT_GT(live_in_group(pgid), 0);
  loop.runner.reset();
  EXPECT_TRUE(loop.run_until([&] { return live_in_group(pgid) == 0; }, 10s));
  loop.io.restart();
  loop.io.poll();
  EXPECT_EQ(run->calls, 0);
}

TEST(RemediationExec, ActionsRunSideBySide) {
  RunnerLoop loop;
  auto slow = loop.start(exec({"/bin/sh", "-c", "sleep 1; echo slow"}));
  auto fast = loop.start(exec({"/bin/sh", "-c", "echo fast; exit 2"}));
  ASSERT_TRUE(loop.run_until([&] { return fast->calls > 0; }, 10s));
  EXPECT_EQ(slow->calls, 0) << "the fast action waited for the slow one";
  EXPECT_EQ(fast->outcome->detail, "exit 2");
  ASSERT_TRUE(loop.run_until([&] { return slow->calls > 0; }, 10s));
  EXPECT_TRUE(slow->outcome->ok);
  EXPECT_EQ(slow->outcome->output, "slow\n");
  EXPECT_EQ(fast->calls, 1);
}

// ---------------------------------------------------------------------------
// systemd-restart

class RemediationSystemd : public ::testing::Test {
 protected:
  SystemdLab lab;
};

TEST_F(RemediationSystemd, ARestartWhoseJobIsDoneIsOk) {
  lab.set_units("pos-agent.service active running\n");
  RunnerLoop loop;
  auto o = loop.run(restart("pos-agent.service"));
  ASSERT_TRUE(o);
  EXPECT_TRUE(o->ok) << o->detail;
  EXPECT_EQ(o->detail, "job done");
  EXPECT_FALSE(o->exit_code);
  EXPECT_THAT(lab.restarts(), ElementsAre("pos-agent.service replace"));
}

TEST_F(RemediationSystemd, ANameWithoutTypeRestartsTheService) {
  lab.set_units("pos-agent.service active running\n");
  RunnerLoop loop;
  auto o = loop.run(restart("pos-agent"));
  ASSERT_TRUE(o);
  EXPECT_TRUE(o->ok) << o->detail;
  EXPECT_THAT(lab.restarts(), ElementsAre("pos-agent.service replace"));
}

TEST_F(RemediationSystemd, AJobThatEndsBeforeTheReplyIsStillSeen) {
  lab.set_units("pos-agent.service active running restart=done signal-first\n");
  RunnerLoop loop;
  auto o = loop.run(restart("pos-agent.service"));
  ASSERT_TRUE(o);
  EXPECT_TRUE(o->ok) << o->detail;
  EXPECT_EQ(o->detail, "job done");
}

TEST_F(RemediationSystemd, AFailedJobFailsWithItsResult) {
  lab.set_units("pos-agent.service failed failed restart=failed\n");
  RunnerLoop loop;
  auto o = loop.run(restart("pos-agent.service"));
  ASSERT_TRUE(o);
  EXPECT_FALSE(o->ok);
  EXPECT_EQ(o->detail, "job failed");
  EXPECT_THAT(lab.restarts(), ElementsAre("pos-agent.service replace"));
}

TEST_F(RemediationSystemd, AnUnknownUnitFailsWithTheBusError) {
  lab.set_units("pos-agent.service active running\n");
  RunnerLoop loop;
  auto o = loop.run(restart("ghost.service"));
  ASSERT_TRUE(o);
  EXPECT_FALSE(o->ok);
  EXPECT_EQ(o->detail, "unit not found: ghost.service: Unit ghost.service not found.");
  EXPECT_THAT(lab.restarts(), ElementsAre("ghost.service replace"));
}

TEST_F(RemediationSystemd, AccessDeniedFailsWithTheBusError) {
  lab.set_units("pos-agent.service active running restart=denied\n");
  RunnerLoop loop;
  auto o = loop.run(restart("pos-agent.service"));
  ASSERT_TRUE(o);
  EXPECT_FALSE(o->ok);
  EXPECT_EQ(o->detail, "access denied: Access denied to restart pos-agent.service (fake)");
}

TEST_F(RemediationSystemd, AJobThatNeverEndsTimesOut) {
  lab.set_units("pos-agent.service active running restart=never\n");
  RunnerLoop loop;
  auto o = loop.run(restart("pos-agent.service", 500ms));
  ASSERT_TRUE(o);
  EXPECT_FALSE(o->ok);
  EXPECT_THAT(o->detail,
              StartsWith("timed out after 500ms waiting for job /org/freedesktop/systemd1/job/"));
  EXPECT_GE(o->took, 500ms);
  EXPECT_LT(o->took, 5s);
  EXPECT_THAT(lab.restarts(), ElementsAre("pos-agent.service replace"));
}

TEST_F(RemediationSystemd, ASilentSystemdTimesOut) {
  lab.set_units("pos-agent.service active running\n");
  ::kill(lab.systemd().pid(), SIGSTOP);
  RunnerLoop loop;
  auto o = loop.run(restart("pos-agent.service", 500ms));
  ::kill(lab.systemd().pid(), SIGCONT);
  ASSERT_TRUE(o);
  EXPECT_FALSE(o->ok);
  EXPECT_EQ(o->detail, "timed out after 500ms waiting for systemd to take the job");
}

TEST_F(RemediationSystemd, NoBusFailsClearly) {
  lab.stop_bus();
  RunnerLoop loop;
  auto o = loop.run(restart("pos-agent.service", 2s));
  ASSERT_TRUE(o);
  EXPECT_FALSE(o->ok);
  EXPECT_THAT(o->detail, StartsWith("system bus unavailable: "));
  EXPECT_LT(o->took, 2s);
}

TEST_F(RemediationSystemd, RestartsOfTwoUnitsRunSideBySide) {
  lab.set_units("stuck.service active running restart=never\npos-agent.service active running\n");
  RunnerLoop loop;
  auto stuck = loop.start(restart("stuck.service", 30s));
  auto quick = loop.start(restart("pos-agent.service"));
  ASSERT_TRUE(loop.run_until([&] { return quick->calls > 0; }, 10s));
  EXPECT_TRUE(quick->outcome->ok) << quick->outcome->detail;
  EXPECT_EQ(stuck->calls, 0);
  loop.runner->stop();
  ASSERT_TRUE(loop.run_until([&] { return stuck->calls > 0; }, 5s));
  EXPECT_EQ(stuck->outcome->detail, "cancelled");
  EXPECT_EQ(quick->calls, 1);
}

// ---------------------------------------------------------------------------
// http

class RemediationHttp : public ::testing::Test {
 protected:
  static inline int port = 0;
  static inline std::unique_ptr<StoreLab> lab;

  static void SetUpTestSuite() {
    port = free_port();
    lab = std::make_unique<StoreLab>(fmt::format(
        "[[device]]\nname = \"lane\"\nkind = \"http\"\nhost = \"127.0.0.1\"\nport = {}\n", port));
  }
  static void TearDownTestSuite() { lab.reset(); }
  void TearDown() override { lab->fault("lane", "none"); }

  static std::string url(const std::string& path = "/reset") {
    return fmt::format("http://127.0.0.1:{}{}", port, path);
  }
  static int requests() { return lab->stats("lane").value("requests", -1); }
};

TEST_F(RemediationHttp, TheExpectedStatusIsOk) {
  RunnerLoop loop;
  const int before = requests();
  auto o = loop.run(http(url("/lane/reset")));
  ASSERT_TRUE(o);
  EXPECT_TRUE(o->ok) << o->detail;
  EXPECT_EQ(o->detail, "HTTP 200");
  EXPECT_FALSE(o->exit_code);
  EXPECT_THAT(o->output, HasSubstr("\"status\": \"ok\""));
  EXPECT_FALSE(o->output_truncated);
  EXPECT_EQ(requests(), before + 1);
  EXPECT_EQ(lab->stats("lane").value("last_request", ""), "POST /lane/reset");
}

TEST_F(RemediationHttp, TheConfiguredMethodIsSent) {
  RunnerLoop loop;
  for (const char* method : {"GET", "PUT", "DELETE"}) {
    auto o = loop.run(http(url("/m"), method));
    ASSERT_TRUE(o);
    EXPECT_TRUE(o->ok) << method << ": " << o->detail;
    EXPECT_EQ(lab->stats("lane").value("last_request", ""), fmt::format("{} /m", method));
  }
}

TEST_F(RemediationHttp, AnotherStatusFails) {
  lab->fault("lane", "http503");
  RunnerLoop loop;
  auto o = loop.run(http(url()));
  ASSERT_TRUE(o);
  EXPECT_FALSE(o->ok);
  EXPECT_EQ(o->detail, "HTTP 503, expected 200");
  EXPECT_THAT(o->output, HasSubstr("unavailable"));

  auto expected = loop.run(http(url(), "POST", 503));
  ASSERT_TRUE(expected);
  EXPECT_TRUE(expected->ok) << expected->detail;
  EXPECT_EQ(expected->detail, "HTTP 503");
}

TEST_F(RemediationHttp, ARefusedConnectionFailsClearly) {
  lab->fault("lane", "down");
  RunnerLoop loop;
  auto o = loop.run(http(url()));
  ASSERT_TRUE(o);
  EXPECT_FALSE(o->ok);
  EXPECT_EQ(o->detail, fmt::format("connection refused by 127.0.0.1:{}", port));
}

TEST_F(RemediationHttp, AHangingServerTimesOut) {
  lab->fault("lane", "hang");
  RunnerLoop loop;
  auto o = loop.run(http(url(), "POST", 200, 500ms));
  ASSERT_TRUE(o);
  EXPECT_FALSE(o->ok);
  EXPECT_THAT(o->detail, StartsWith("timed out after 500ms"));
  EXPECT_GE(o->took, 450ms);
  EXPECT_LT(o->took, 5s);
}

TEST_F(RemediationHttp, AnEndlessBodyStopsAtTheOutputKeptNotAtTheTimeout) {
  // The answer's status is what counts; an endless body is read no further
  // than the output an action keeps.
  lab->fault("lane", "endless");
  RunnerLoop loop;
  auto o = loop.run(http(url(), "POST", 200, 20s));
  ASSERT_TRUE(o);
  EXPECT_TRUE(o->ok) << o->detail;
  EXPECT_EQ(o->detail, "HTTP 200");
  EXPECT_THAT(o->output, HasSubstr("\"status\": \"ok\""));
  EXPECT_EQ(o->output.size(), agent::kActionOutputKept);
  EXPECT_TRUE(o->output_truncated);
  EXPECT_LT(o->took, 5s) << "read until the timeout?";
}

TEST_F(RemediationHttp, OnlyHttpUrlsAndPlainMethods) {
  RunnerLoop loop;
  TempDir dir;
  write_file(dir / "secret", "do not read");
  auto file = loop.run(http("file://" + (dir / "secret").string(), "GET"));
  ASSERT_TRUE(file);
  EXPECT_FALSE(file->ok);
  EXPECT_THAT(file->output, Not(HasSubstr("do not read")));

  const int before = requests();
  auto injected = loop.run(http(url(), "POST /x HTTP/1.1\r\nX-Evil: 1\r\n\r\nGET"));
  ASSERT_TRUE(injected);
  EXPECT_FALSE(injected->ok);
  EXPECT_THAT(injected->detail, HasSubstr("is not an HTTP method"));

  auto not_url = loop.run(http("::not a url::"));
  ASSERT_TRUE(not_url);
  EXPECT_FALSE(not_url->ok);
  EXPECT_THAT(not_url->detail, HasSubstr("is not a URL"));
  EXPECT_EQ(requests(), before);
}

TEST_F(RemediationHttp, StopCancelsATransferAndReportsOnce) {
  lab->fault("lane", "hang");
  RunnerLoop loop;
  auto run = loop.start(http(url(), "POST", 200, 60s));
  ASSERT_TRUE(
      loop.run_until([&] { return lab->stats("lane").value("open_connections", 0) > 0; }, 10s));
  loop.runner->stop();
  ASSERT_TRUE(loop.run_until([&] { return run->calls > 0; }, 5s));
  EXPECT_EQ(run->outcome->detail, "cancelled");
  EXPECT_FALSE(run->outcome->ok);
  EXPECT_TRUE(wait_until([&] { return lab->stats("lane").value("open_connections", 1) == 0; }, 10s))
      << "the cancelled transfer's connection is still open";
  loop.io.restart();
  loop.io.poll();
  EXPECT_EQ(run->calls, 1);
}

}  // namespace
}  // namespace storewatch::test
