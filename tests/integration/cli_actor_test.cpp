// Issue 20, items 5 and 6: the technician's actions through the real CLI and
// the real daemon record the person (under sudo, the one who ran sudo — and
// only a root peer may say so) and say what happens next: a resolve the
// probe contradicts warns (and on a terminal waits for --force), a resolve
// without a note says who resolved it, a second ack says by whom and when.
// The tests run as root; sudo is simulated with SUDO_USER.

#include <unistd.h>

#include <gtest/gtest.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <memory>
#include <regex>

#include "tests/support/daemon.h"
#include "tests/support/support.h"
#include "tests/support/tcp_device.h"

namespace storewatch::test {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

/// Plain runs say so: a SUDO_USER of the shell running the tests must not
/// leak into them.
const std::map<std::string, std::string> kNoSudo = {{"SUDO_USER", ""}};

std::map<std::string, std::string> sudo_by(const std::string& user) {
  return {{"SUDO_USER", user}};
}

class CliActor : public ::testing::Test {
 protected:
  void SetUp() override {
    config = dir / "storewatch.toml";
    DaemonConfig c = DaemonConfig::in(dir, "store-actor");
    // fail_after 1: a resolved incident whose probe still fails reopens at
    // its next check, as the warning says.
    c.body = tcp_probe_toml("lane-01-pos", device.port(),
                            "interval = \"200ms\"\ntimeout = \"150ms\"\nfail_after = 1\n"
                            "recover_after = 2\n");
    c.write(config);
    daemon = launch_daemon(config, dir / "logs");
    ASSERT_TRUE(wait_until([&] { return daemon_is_running(config); })) << daemon->err();
  }

  RunResult cli(std::vector<std::string> args,
                const std::map<std::string, std::string>& env = kNoSudo) {
    return run_cli(config, std::move(args), env);
  }

  /// The lane's unresolved incident (after taking the device down).
  std::string failing_incident() {
    device.down();
    std::string uid;
    EXPECT_TRUE(wait_until(
        [&] {
          auto list = json::parse(cli({"incidents", "--json"}).out, nullptr, false);
          if (!list.is_array() || list.empty()) return false;
          uid = list[0].value("uid", "");
          return true;
        },
        20s))
        << daemon->err();
    return uid;
  }

  json show(const std::string& uid) {
    return json::parse(cli({"incident", "show", uid, "--json"}).out, nullptr, false);
  }

  /// The newest event of `type` of the incident, waiting for it.
  json last_event(const std::string& uid, const std::string& type) {
    json found;
    wait_until([&] {
      json j = show(uid);
      if (!j.is_object()) return false;
      for (const auto& e : j["events"]) {
        if (e.value("type", "") == type) found = e;
      }
      return found.is_object();
    });
    return found;
  }

  TempDir dir;
  TcpDevice device;
  std::filesystem::path config;
  std::unique_ptr<Child> daemon;
};

TEST_F(CliActor, UnderSudoTheActorIsThePersonWhoRanSudo) {
  const std::string uid = failing_incident();
  ASSERT_FALSE(uid.empty());

  auto ack = cli({"ack", uid}, sudo_by("dana"));
  ASSERT_EQ(ack.exit_code, 0) << ack.err;
  EXPECT_NE(ack.out.find("by cli:dana (via sudo)"), std::string::npos) << ack.out;
  json acked = last_event(uid, "acknowledged");
  EXPECT_EQ(acked.value("actor", ""), "cli:dana") << acked.dump();
  EXPECT_EQ(acked["body"].value("via", ""), "sudo") << acked.dump();
  EXPECT_EQ(acked["body"].value("sudo_user", ""), "dana") << acked.dump();

  // --by wins, and the event still says it came through sudo, and whose.
  auto note = cli({"note", uid, "--by", "olga", "--note", "for olga"}, sudo_by("dana"));
  ASSERT_EQ(note.exit_code, 0) << note.err;
  json noted = last_event(uid, "note");
  EXPECT_EQ(noted.value("actor", ""), "cli:olga") << noted.dump();
  EXPECT_EQ(noted["body"].value("via", ""), "sudo") << noted.dump();
  EXPECT_EQ(noted["body"].value("sudo_user", ""), "dana") << noted.dump();

  // Without sudo: root is root, and nothing says sudo.
  auto plain = cli({"note", uid, "--note", "as root"});
  ASSERT_EQ(plain.exit_code, 0) << plain.err;
  wait_until([&] { return last_event(uid, "note")["body"].value("note", "") == "as root"; });
  json as_root = last_event(uid, "note");
  EXPECT_EQ(as_root.value("actor", ""), "cli:root") << as_root.dump();
  EXPECT_FALSE(as_root["body"].contains("via")) << as_root.dump();

  auto text = cli({"incident", "show", uid});
  ASSERT_EQ(text.exit_code, 0) << text.err;
  EXPECT_NE(text.out.find("cli:dana (via sudo)"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("cli:olga (via sudo by dana)"), std::string::npos) << text.out;

  // A SUDO_USER storewatch cannot record is refused, not recorded as root.
  auto bad = cli({"note", uid, "--note", "x"}, sudo_by("two words"));
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.err.find("SUDO_USER"), std::string::npos) << bad.err;

  // Silences record the person too.
  auto silence =
      cli({"silence", "add", "--match", "lane-*", "--for", "10m", "--reason", "fix", "--json"},
          sudo_by("dana"));
  ASSERT_EQ(silence.exit_code, 0) << silence.err;
  EXPECT_EQ(json::parse(silence.out).value("created_by", ""), "cli:dana") << silence.out;
}

// Only root may speak for someone else: a peer of another uid that sends a
// sudo user (its own SUDO_USER, say after `sudo -u`) is recorded as itself.
TEST_F(CliActor, APeerThatIsNotRootCannotNameASudoUser) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to run the CLI as nobody";
  if (auto why = nobody_cannot_run_storewatch(); !why.empty()) GTEST_SKIP() << why;
  const std::string uid = failing_incident();
  ASSERT_FALSE(uid.empty());
  // nobody reaches the socket (mode 0660) through the daemon's group.
  std::filesystem::permissions(dir.path(), std::filesystem::perms(0755));
  std::vector<std::string> cmd = {"setpriv", "--reuid=nobody",
                                  fmt::format("--regid={}", ::getegid()), "--clear-groups"};
  for (auto& a :
       storewatch_command({"--config", config.string(), "note", uid, "--note", "not dana"})) {
    cmd.push_back(a);
  }
  auto r = run(cmd, sudo_by("dana"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  json noted = last_event(uid, "note");
  EXPECT_EQ(noted.value("actor", ""), "cli:nobody") << noted.dump();
  EXPECT_FALSE(noted["body"].contains("via")) << noted.dump();
  EXPECT_FALSE(noted["body"].contains("sudo_user")) << noted.dump();
}

TEST_F(CliActor, AResolveWhileTheProbeStillFailsWarnsAndTheIncidentReopens) {
  const std::string uid = failing_incident();
  ASSERT_FALSE(uid.empty());
  // Off a terminal (a script): done, with the warning on stderr.
  auto r = cli({"resolve", uid}, sudo_by("dana"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(
      std::regex_search(r.err, std::regex("lane-01-pos still fails \\(.+ at (\\d{4}-\\d\\d-\\d\\d "
                                          ")?\\d\\d:\\d\\d:\\d\\dZ\\); the engine "
                                          "will reopen it at the next check")))
      << r.err;
  EXPECT_NE(r.out.find("resolved"), std::string::npos) << r.out;
  // The warning is true: it reopens.
  ASSERT_TRUE(wait_until([&] {
    json j = show(uid);
    return j.is_object() && j.value("state", "") == "open" && j.value("reopen_count", 0) >= 1;
  })) << daemon->err();

  // Resolved without a note: the event says who resolved it, not the failure.
  json resolved = last_event(uid, "resolved");
  EXPECT_EQ(resolved["body"].value("message", ""), "resolved by cli:dana (via sudo)")
      << resolved.dump();
  auto text = cli({"incident", "show", uid});
  EXPECT_NE(text.out.find("resolved by cli:dana (via sudo)"), std::string::npos) << text.out;
}

// On a terminal the resolve waits for --force. `script` gives the CLI one.
TEST_F(CliActor, OnATerminalAResolveWhileTheProbeStillFailsNeedsForce) {
  if (run({"script", "--version"}).exit_code != 0) GTEST_SKIP() << "no script(1)";
  const std::string uid = failing_incident();
  ASSERT_FALSE(uid.empty());
  auto on_terminal = [&](std::vector<std::string> args) {
    std::string line;
    for (const auto& a : storewatch_command({})) line += "'" + a + "' ";
    line += "--config '" + config.string() + "'";
    for (const auto& a : args) line += " '" + a + "'";
    line += "; echo \"rc=$?\"";
    return run({"script", "-qec", line, "/dev/null"}, kNoSudo);
  };
  auto asked = on_terminal({"resolve", uid, "--by", "dana"});
  EXPECT_NE(asked.out.find("lane-01-pos still fails ("), std::string::npos) << asked.out;
  EXPECT_NE(asked.out.find("run again with --force"), std::string::npos) << asked.out;
  EXPECT_NE(asked.out.find("rc=1"), std::string::npos) << asked.out;
  EXPECT_EQ(show(uid).value("state", ""), "open");

  auto forced = on_terminal({"resolve", uid, "--by", "dana", "--force"});
  EXPECT_NE(forced.out.find("still fails"), std::string::npos) << forced.out;
  EXPECT_NE(forced.out.find("rc=0"), std::string::npos) << forced.out;
  EXPECT_EQ(last_event(uid, "resolved").value("actor", ""), "cli:dana");
}

TEST_F(CliActor, ASecondAckSaysByWhomAndWhen) {
  const std::string uid = failing_incident();
  ASSERT_FALSE(uid.empty());
  auto first = cli({"ack", uid, "--by", "olga"});
  ASSERT_EQ(first.exit_code, 0) << first.err;
  ASSERT_TRUE(last_event(uid, "acknowledged").is_object());
  // Exit 1, as for every refused change: nothing changed.
  auto second = cli({"ack", uid}, sudo_by("dana"));
  EXPECT_EQ(second.exit_code, 1);
  EXPECT_TRUE(std::regex_search(
      second.err, std::regex("already acknowledged by cli:olga at (\\d{4}-\\d\\d-\\d\\d "
                             ")?\\d\\d:\\d\\d:\\d\\dZ; nothing changed")))
      << second.err;
  json j = show(uid);
  int acks = 0;
  for (const auto& e : j["events"]) acks += e.value("type", "") == "acknowledged" ? 1 : 0;
  EXPECT_EQ(acks, 1);
}

// The engine's last check failed, but the technician has just fixed the
// device: the CLI checks the probe now, and a probe that passes is resolved
// without a warning that it will reopen (the engine's next check is 30 s
// away here, so the daemon's own view is still the failure).
TEST(CliResolveFresh, AProbeThatPassesNowIsResolvedWithoutTheWarning) {
  TempDir dir;
  TcpDevice device;
  const auto config = dir / "storewatch.toml";
  DaemonConfig c = DaemonConfig::in(dir, "store-fresh");
  c.body = tcp_probe_toml("lane-02-pos", device.port(),
                          "interval = \"30s\"\ntimeout = \"500ms\"\nfail_after = 1\n");
  c.write(config);
  device.down();
  auto daemon = launch_daemon(config, dir / "logs");
  std::string uid;
  ASSERT_TRUE(wait_until(
      [&] {
        auto list =
            json::parse(run_cli(config, {"incidents", "--json"}, kNoSudo).out, nullptr, false);
        if (!list.is_array() || list.empty()) return false;
        uid = list[0].value("uid", "");
        return true;
      },
      20s))
      << daemon->err();
  device.up();
  auto r = run_cli(config, {"resolve", uid, "--by", "dana"}, kNoSudo);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("lane-02-pos passes now"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("still fails"), std::string::npos) << r.err;
  EXPECT_NE(r.out.find("resolved"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace storewatch::test
