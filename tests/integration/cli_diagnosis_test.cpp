// Issue 20, item 1: `status`, `sync status` and `incidents` say why the
// daemon did not answer, as `doctor` does — a control socket that refuses
// the user (run as nobody, outside the socket's group), a daemon that is
// hung (SIGSTOP), a data directory the user may not enter (0750), and a
// daemon that is down (exit 3) — through the real binary and a real daemon.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <filesystem>
#include <memory>

#include "tests/support/daemon.h"
#include "tests/support/support.h"

namespace storewatch::test {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;
using ::testing::Not;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

class CliDiagnosis : public ::testing::Test {
 protected:
  CliDiagnosis() {
    auto c = DaemonConfig::in(dir, "store-diag");
    c.body = tcp_probe_toml("lane-01-pos", free_port());
    c.write(config);
    data_dir = c.data_dir;
    socket = c.control_socket;
  }

  ~CliDiagnosis() override {
    if (daemon && daemon->running()) {
      ::kill(daemon->pid(), SIGCONT);
      daemon->stop(SIGTERM);
    }
  }

  void start_daemon() {
    daemon = launch_daemon(config, dir / "logs");
    ASSERT_TRUE(wait_until([&] { return daemon_is_running(config); })) << logs_of(*daemon);
  }

  /// The daemon has run once (the database exists), and is down again.
  void run_daemon_once() {
    start_daemon();
    ASSERT_EQ(daemon->stop(SIGTERM), 0) << logs_of(*daemon);
  }

  /// `storewatch --config … args` as user nobody (group nogroup, no others).
  RunResult as_nobody(std::vector<std::string> args) {
    std::vector<std::string> cmd = {"setpriv", "--reuid=nobody", "--regid=nogroup",
                                    "--clear-groups"};
    args.insert(args.begin(), {"--config", config.string()});
    for (auto& a : storewatch_command(args)) cmd.push_back(std::move(a));
    return run(cmd);
  }

  /// Why this test cannot run commands as nobody, or empty.
  static std::string cannot_be_nobody() {
    if (::geteuid() != 0) return "needs root to run the CLI as another user (nobody)";
    if (run({"setpriv", "--version"}).exit_code != 0) return "no setpriv";
    return nobody_cannot_run_storewatch();
  }

  /// Lets nobody reach the config and the socket's directory.
  void open_the_test_dir() {
    fs::permissions(dir.path(), fs::perms(0755));
    fs::permissions(config, fs::perms(0644));
  }

  TempDir dir;
  fs::path config = dir / "storewatch.toml";
  fs::path data_dir;
  fs::path socket;
  std::unique_ptr<Child> daemon;
};

// The daemon runs, its socket (0660, root's group) refuses nobody: not "not
// running", but permission denied, the fix, and what the database shows.
TEST_F(CliDiagnosis, ASocketThatRefusesYouIsPermissionDeniedNotADaemonDown) {
  if (auto why = cannot_be_nobody(); !why.empty()) GTEST_SKIP() << why;
  open_the_test_dir();
  start_daemon();
  fs::permissions(data_dir, fs::perms(0755));

  auto r = as_nobody({"status"});
  EXPECT_EQ(r.exit_code, 4) << r.out << r.err;
  EXPECT_THAT(r.out, Not(HasSubstr("not running"))) << r.out;
  EXPECT_THAT(r.out, HasSubstr("you (nobody) may not use its control socket " + socket.string() +
                               " (permission denied)"))
      << r.out;
  EXPECT_THAT(r.out, HasSubstr("sudo usermod -aG storewatch nobody")) << r.out;
  EXPECT_THAT(r.out, HasSubstr("lane-01-pos")) << r.out << r.err;  // the database's view
  EXPECT_THAT(r.out, HasSubstr("sync: unknown")) << r.out;
  EXPECT_THAT(r.out, Not(HasSubstr("sync: offline"))) << r.out;

  r = as_nobody({"status", "--json"});
  EXPECT_EQ(r.exit_code, 4) << r.err;
  auto doc = json::parse(r.out, nullptr, false);
  ASSERT_TRUE(doc.is_object()) << r.out << r.err;
  EXPECT_EQ(doc["daemon"]["state"], "permission_denied");
  EXPECT_EQ(doc["daemon"]["socket"], socket.string());
  EXPECT_EQ(doc["store"], "store-diag");
  ASSERT_EQ(doc["probes"].size(), 1u);

  r = as_nobody({"sync", "status"});
  EXPECT_THAT(r.out, HasSubstr("may not use its control socket")) << r.out << r.err;
  EXPECT_THAT(r.out, Not(HasSubstr("not running"))) << r.out;
  r = as_nobody({"sync", "status", "--json"});
  doc = json::parse(r.out, nullptr, false);
  ASSERT_TRUE(doc.is_object()) << r.out << r.err;
  EXPECT_EQ(doc["daemon"]["state"], "permission_denied");
}

// A daemon stopped with SIGSTOP takes the connection and never answers:
// "not answering (pid N)", within a second (2 s under sanitizers), exit 3.
TEST_F(CliDiagnosis, AHungDaemonIsNotAnsweringWithItsPidWithinASecond) {
  start_daemon();
  ASSERT_EQ(::kill(daemon->pid(), SIGSTOP), 0);
  const std::string pid = std::to_string(daemon->pid());

  auto started = std::chrono::steady_clock::now();
  auto r = run_cli(config, {"status"});
  auto took = std::chrono::steady_clock::now() - started;
  EXPECT_LT(took, 2s);
  EXPECT_EQ(r.exit_code, 3) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("not answering (pid " + pid + ")")) << r.out;
  EXPECT_THAT(r.out, Not(HasSubstr("not running"))) << r.out;
  EXPECT_THAT(r.out, HasSubstr("lane-01-pos")) << r.out << r.err;

  started = std::chrono::steady_clock::now();
  r = run_cli(config, {"status", "--json"});
  took = std::chrono::steady_clock::now() - started;
  EXPECT_LT(took, 2s);
  EXPECT_EQ(r.exit_code, 3);
  auto doc = json::parse(r.out, nullptr, false);
  ASSERT_TRUE(doc.is_object()) << r.out << r.err;
  EXPECT_EQ(doc["daemon"]["state"], "not_answering");
  EXPECT_EQ(doc["daemon"]["pid"], daemon->pid());

  started = std::chrono::steady_clock::now();
  r = run_cli(config, {"sync", "status"});
  took = std::chrono::steady_clock::now() - started;
  EXPECT_LT(took, 2s);
  EXPECT_THAT(r.out, HasSubstr("not answering (pid " + pid + ")")) << r.out << r.err;

  // And it answers again once it runs on.
  ASSERT_EQ(::kill(daemon->pid(), SIGCONT), 0);
  ASSERT_TRUE(wait_until([&] { return run_cli(config, {"status"}).exit_code == 0; }));
  doc = json::parse(run_cli(config, {"status", "--json"}).out, nullptr, false);
  ASSERT_TRUE(doc.is_object());
  EXPECT_EQ(doc["daemon"]["state"], "running");
  EXPECT_EQ(doc["daemon"]["pid"], daemon->pid());
}

// The data directory as the package makes it (0750, root's group here) and
// a user outside the group: permission denied on the path, who, and the fix —
// not "no database".
TEST_F(CliDiagnosis, ADataDirYouMayNotEnterIsPermissionDeniedNotNoDatabase) {
  if (auto why = cannot_be_nobody(); !why.empty()) GTEST_SKIP() << why;
  open_the_test_dir();
  run_daemon_once();
  fs::permissions(data_dir, fs::perms(0750));

  for (std::vector<std::string> args : {std::vector<std::string>{"status"},
                                        {"incidents"},
                                        {"sync", "status"},
                                        {"silence", "list"}}) {
    auto r = as_nobody(args);
    const std::string said = r.out + r.err;
    EXPECT_THAT(said, Not(HasSubstr("no database"))) << args[0] << ": " << said;
    EXPECT_THAT(r.err,
                HasSubstr("permission denied: you (nobody) may not enter " + data_dir.string()))
        << args[0] << ": " << said;
    EXPECT_THAT(r.err, HasSubstr("sudo usermod -aG storewatch nobody")) << said;
    EXPECT_NE(r.exit_code, 0) << args[0];
  }
  auto r = as_nobody({"status"});
  EXPECT_EQ(r.exit_code, 3) << r.out << r.err;  // the daemon is down: that decides
  EXPECT_THAT(r.out, HasSubstr("daemon not running")) << r.out;

  // The daemon up as well: the socket refuses too, exit 4, and both are said.
  start_daemon();
  r = as_nobody({"status"});
  EXPECT_EQ(r.exit_code, 4) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("may not use its control socket")) << r.out;
  EXPECT_THAT(r.err, HasSubstr("permission denied: you (nobody) may not enter")) << r.err;
  // --json prints nothing it cannot give the whole shape of; the exit code
  // says why.
  r = as_nobody({"status", "--json"});
  EXPECT_EQ(r.exit_code, 4) << r.out << r.err;
  EXPECT_EQ(r.out, "");
  EXPECT_THAT(r.err, HasSubstr("permission denied")) << r.err;
}

// `status` exits 3 with the daemon down, as `systemctl status` does, and
// --json carries daemon.state either way.
TEST_F(CliDiagnosis, StatusExitsThreeWithTheDaemonDown) {
  start_daemon();
  auto r = run_cli(config, {"status", "--json"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  auto doc = json::parse(r.out, nullptr, false);
  ASSERT_TRUE(doc.is_object()) << r.out << r.err;
  EXPECT_EQ(doc["daemon"]["state"], "running");
  EXPECT_EQ(doc["daemon"]["pid"], daemon->pid());
  ASSERT_EQ(daemon->stop(SIGTERM), 0) << logs_of(*daemon);

  r = run_cli(config, {"status"});
  EXPECT_EQ(r.exit_code, 3) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("daemon not running")) << r.out;
  EXPECT_THAT(r.out, HasSubstr("sudo systemctl start storewatch")) << r.out;
  r = run_cli(config, {"status", "--json"});
  EXPECT_EQ(r.exit_code, 3) << r.err;
  doc = json::parse(r.out, nullptr, false);
  ASSERT_TRUE(doc.is_object()) << r.out << r.err;
  EXPECT_EQ(doc["daemon"]["state"], "not_running");
  EXPECT_FALSE(doc["daemon"].contains("pid"));
  EXPECT_EQ(doc["agent"]["running"], false);
  ASSERT_EQ(doc["probes"].size(), 1u);

  // No database either: still exit 3, and it says there is none.
  fs::remove_all(data_dir);
  r = run_cli(config, {"status"});
  EXPECT_EQ(r.exit_code, 3) << r.out << r.err;
  EXPECT_THAT(r.err, HasSubstr("no database at")) << r.err;
}

}  // namespace
}  // namespace storewatch::test
