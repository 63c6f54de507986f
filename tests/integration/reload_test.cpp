// Config reload on SIGHUP, against the real `storewatch run` and real config
// files: a probe added by a reload runs, a changed interval applies, a bad
// config (syntax, a depends_on cycle, a key that needs a restart) is refused
// with its errors in the log while the old config keeps running, and open
// incidents and probe state survive a reload; a probe removed by a reload
// stops and its incident is resolved, saying why. A hostile config (nesting
// that crashed the TOML parser) is refused and the daemon stays up; the
// child process that checks a new config first (ReloadPreflight) refuses a
// reload when that child crashes, hangs or cannot start.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <csignal>
#include <memory>
#include <optional>

#include "agent/reload.h"
#include "config/config.h"
#include "tests/support/support.h"

namespace storewatch::test {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

/// An exec probe that is always ok, or always critical (exit 2, as a
/// monitoring plugin says it).
std::string probe(const std::string& name, bool ok, const std::string& interval = "200ms",
                  const std::string& extra = "") {
  return fmt::format(
      "[[probe]]\nname = \"{}\"\ntype = \"exec\"\ncommand = [\"/bin/sh\", \"-c\", \"{}\"]\n"
      "interval = \"{}\"\ntimeout = \"2s\"\nfail_after = 2\nrecover_after = 2\n{}\n",
      name, ok ? "echo OK; exit 0" : "echo CRITICAL - down; exit 2", interval, extra);
}

std::size_t count_of(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

class Reload : public ::testing::Test {
 protected:
  std::string file(const std::string& body, const std::string& store = "store-0042") {
    return fmt::format(R"([store]
id = "{}"

[agent]
data_dir = "{}"
control_socket = "{}"

[sync]
broker = "tcp://127.0.0.1:{}"

{})",
                       store, (dir / "data").string(), (dir / "control.sock").string(), broker_port,
                       body);
  }

  void start(const std::string& body) {
    config = dir / "storewatch.toml";
    write_file(config, file(body));
    auto check = cli({"config", "check"});
    ASSERT_EQ(check.exit_code, 0) << check.err;
    daemon = std::make_unique<Child>(storewatch_command({"--config", config.string(), "run"}),
                                     dir / "logs");
    ASSERT_TRUE(wait_until([&] {
      json s = status();
      return s.contains("agent") && s["agent"].value("running", false);
    })) << daemon->err();
  }

  /// Writes the new config and sends SIGHUP; waits for the daemon to say
  /// how the reload went (`what` in its log, once more than before).
  void reload(const std::string& text, const std::string& what) {
    write_file(config, text);
    const auto before = count_of(daemon->err(), what);
    ASSERT_EQ(::kill(daemon->pid(), SIGHUP), 0);
    ASSERT_TRUE(wait_until([&] { return count_of(daemon->err(), what) > before; }))
        << "no \"" << what << "\" in the log:\n"
        << daemon->err();
  }

  RunResult cli(std::vector<std::string> args) {
    std::vector<std::string> full = {"--config", config.string()};
    full.insert(full.end(), args.begin(), args.end());
    return run(storewatch_command(full));
  }

  json status() {
    auto j = json::parse(cli({"status", "--json"}).out, nullptr, false);
    return j.is_object() ? j : json::object();
  }

  /// The probe's entry of `status --json`; {} when it is not listed.
  json probe_status(const std::string& name) {
    for (const auto& p : status().value("probes", json::array())) {
      if (p.value("name", "") == name) return p;
    }
    return json::object();
  }

  json incidents() {
    auto j = json::parse(cli({"incidents", "--all", "--json"}).out, nullptr, false);
    return j.is_array() ? j : json::array();
  }

  json incident_of(const std::string& probe_name) {
    for (const auto& i : incidents()) {
      if (i.value("probe", "") == probe_name) return i;
    }
    return json::object();
  }

  json events(const std::string& uid) {
    auto j = json::parse(cli({"incident", "show", uid, "--json"}).out, nullptr, false);
    return j.is_object() ? j.value("events", json::array()) : json::array();
  }

  /// Waits until `name` has been checked `n` more times (its last_check moved).
  bool checked_again(const std::string& name, int n, std::chrono::milliseconds timeout = 20s) {
    std::string last = probe_status(name).value("last_check", json()).dump();
    int seen = 0;
    return wait_until(
        [&] {
          auto now = probe_status(name).value("last_check", json()).dump();
          if (now != last && now != "null") {
            last = now;
            ++seen;
          }
          return seen >= n;
        },
        timeout);
  }

  TempDir dir;
  int broker_port = free_port();  // nothing listens: sync stays offline, which is fine here
  std::filesystem::path config;
  std::unique_ptr<Child> daemon;
};

TEST_F(Reload, AProbeAddedByAReloadRunsAndAChangedIntervalApplies) {
  // "slow" checks once an hour: after its first check it stays quiet.
  start(probe("lane-01", true) + probe("slow", true, "1h"));
  ASSERT_TRUE(checked_again("lane-01", 2)) << daemon->err();
  json before = status();
  const std::string hash = before["agent"]["config"]["hash"];
  EXPECT_TRUE(hash.starts_with("sha256:")) << before.dump();

  reload(file(probe("lane-01", true) + probe("slow", true, "200ms") + probe("lane-02", true)),
         "SIGHUP: config reloaded");
  EXPECT_NE(daemon->err().find("probes: 1 added (lane-02), 0 removed, 1 changed (slow)"),
            std::string::npos)
      << daemon->err();
  // The new probe is listed and runs; the faster interval applies.
  ASSERT_TRUE(wait_until([&] { return probe_status("lane-02").value("last_status", "") == "ok"; }))
      << status().dump() << daemon->err();
  EXPECT_TRUE(checked_again("slow", 2, 10s)) << daemon->err();
  EXPECT_TRUE(checked_again("lane-01", 1)) << daemon->err();
  json after = status();
  EXPECT_EQ(after["probes"].size(), 3u);
  EXPECT_NE(after["agent"]["config"]["hash"], hash) << after.dump();
  EXPECT_EQ(after["agent"]["config"]["reloads"], 1);
  EXPECT_EQ(after["agent"]["config"]["last_reload_error"], "");
  EXPECT_EQ(after["agent"]["pid"], before["agent"]["pid"]);

  // And back to an hour: "slow" starts over on an hourly grid and goes quiet.
  reload(file(probe("lane-01", true) + probe("slow", true, "1h") + probe("lane-02", true)),
         "1 changed (slow)");
  // Let a check that was already running when the reload came finish.
  ASSERT_TRUE(checked_again("lane-01", 2)) << daemon->err();
  const auto quiet = probe_status("slow")["last_check"];
  EXPECT_TRUE(checked_again("lane-01", 3));
  EXPECT_EQ(probe_status("slow")["last_check"], quiet) << "an hourly probe ran again";
}

TEST_F(Reload, ABadConfigIsRefusedWithItsErrorsAndTheOldOneKeepsRunning) {
  const std::string good = probe("lane-01", true) + probe("lane-02", true);
  start(good);
  ASSERT_TRUE(checked_again("lane-01", 1)) << daemon->err();
  const std::string hash = status()["agent"]["config"]["hash"];

  // 1. A syntax error: the log names the file and line.
  reload(file(good + "[[probe]]\nname = \"lane-03\n"), "SIGHUP: config refused");
  EXPECT_NE(daemon->err().find("SIGHUP: " + config.string() + ":"), std::string::npos)
      << daemon->err();
  // 2. A depends_on cycle.
  reload(file(probe("lane-01", true, "200ms", "depends_on = [\"lane-02\"]") +
              probe("lane-02", true, "200ms", "depends_on = [\"lane-01\"]")),
         "SIGHUP: config refused");
  EXPECT_NE(daemon->err().find("cycle"), std::string::npos) << daemon->err();
  // 3. A key that needs a restart.
  write_file(config, file(good + probe("lane-09", true), "store-0043"));
  {
    const auto before = count_of(daemon->err(), "needs a restart");
    ASSERT_EQ(::kill(daemon->pid(), SIGHUP), 0);
    ASSERT_TRUE(wait_until([&] { return count_of(daemon->err(), "needs a restart") > before; }))
        << daemon->err();
    EXPECT_NE(daemon->err().find("store.id changed, which needs a restart"), std::string::npos)
        << daemon->err();
  }

  // The old config still runs: same probes, still checked, nothing added.
  EXPECT_TRUE(daemon->running());
  EXPECT_TRUE(checked_again("lane-02", 2)) << daemon->err();
  json s = status();
  ASSERT_EQ(s["probes"].size(), 2u) << s.dump();
  EXPECT_TRUE(probe_status("lane-09").empty());
  EXPECT_EQ(s["store"], "store-0042");
  EXPECT_EQ(s["agent"]["config"]["hash"], hash);
  EXPECT_EQ(s["agent"]["config"]["reloads"], 0);
  EXPECT_EQ(s["agent"]["config"]["refused"], 3);
  EXPECT_NE(s["agent"]["config"]["last_reload_error"].get<std::string>().find("store.id"),
            std::string::npos)
      << s.dump();
  EXPECT_EQ(count_of(daemon->err(), "SIGHUP: config reloaded"), 0u);
  // The plain table says so too, with what to do.
  auto table = cli({"status"});
  EXPECT_NE(table.out.find("config: " + hash.substr(0, 19) + "… loaded "), std::string::npos)
      << table.out;
  EXPECT_NE(table.out.find("reloads: 0 accepted, 3 refused"), std::string::npos) << table.out;
  EXPECT_NE(table.out.find("last reload refused"), std::string::npos) << table.out;
  EXPECT_NE(table.out.find("store.id changed"), std::string::npos) << table.out;

  // A good one after the bad ones is taken, and clears the error.
  reload(file(good + probe("lane-03", true)), "SIGHUP: config reloaded");
  ASSERT_TRUE(wait_until([&] { return probe_status("lane-03").value("last_status", "") == "ok"; }))
      << daemon->err();
  s = status();
  EXPECT_EQ(s["agent"]["config"]["last_reload_error"], "");
  EXPECT_EQ(s["agent"]["config"]["reloads"], 1);
}

TEST_F(Reload, OpenIncidentsAndProbeStateSurviveAReload) {
  start(probe("lane-01", true) + probe("lane-02", false));
  json inc;
  ASSERT_TRUE(wait_until([&] {
    inc = incident_of("lane-02");
    return inc.value("state", "") == "open";
  })) << daemon->err();
  const std::string uid = inc["uid"];
  ASSERT_EQ(probe_status("lane-02")["state"], "hard_fail");

  // A reload that adds a probe and changes the failing one's settings (not its check).
  reload(file(probe("lane-01", true) + probe("lane-02", false, "200ms", "severity = \"high\"") +
              probe("lane-03", true)),
         "SIGHUP: config reloaded");
  // Still hard-failing right away (its state was kept), the same incident open.
  EXPECT_EQ(probe_status("lane-02")["state"], "hard_fail");
  ASSERT_TRUE(checked_again("lane-02", 3)) << daemon->err();
  EXPECT_EQ(probe_status("lane-02")["state"], "hard_fail");
  json now = incident_of("lane-02");
  EXPECT_EQ(now["uid"], uid) << now.dump();
  EXPECT_EQ(now["state"], "open");
  std::vector<std::string> types;
  for (const auto& e : events(uid)) types.push_back(e.value("type", ""));
  EXPECT_EQ(std::count(types.begin(), types.end(), "opened"), 1) << json(types).dump();
  EXPECT_EQ(std::count(types.begin(), types.end(), "resolved"), 0) << json(types).dump();
  EXPECT_EQ(incidents().size(), 1u) << incidents().dump();

  // A reload that removes the probe: it stops, and its incident is resolved, saying why.
  reload(file(probe("lane-01", true) + probe("lane-03", true)), "1 removed (lane-02)");
  ASSERT_TRUE(wait_until([&] { return incident_of("lane-02").value("state", "") == "resolved"; }))
      << incident_of("lane-02").dump() << daemon->err();
  bool said = false;
  for (const auto& e : events(uid)) {
    if (e.value("type", "") == "resolved") {
      said = e.dump().find("the probe was removed from the config") != std::string::npos;
    }
  }
  EXPECT_TRUE(said) << events(uid).dump();
  EXPECT_TRUE(probe_status("lane-02").empty());
  EXPECT_EQ(status()["probes"].size(), 2u);
}

TEST_F(Reload, AHostileConfigIsRefusedAndTheDaemonStaysUp) {
  // Issue 18: a 40,000-level table header or a 50,000-part dotted key made
  // the TOML parser overflow its stack, and SIGHUP with such a file killed
  // the daemon. Each is refused with its place, and the old config runs on.
  const std::string good = probe("lane-01", true);
  start(good);
  ASSERT_TRUE(checked_again("lane-01", 1)) << daemon->err();
  const std::string hash = status()["agent"]["config"]["hash"];
  std::string header = "[";
  for (int i = 0; i < 40000; ++i) header += i == 0 ? "a" : ".a";
  std::string dotted = "x";
  for (int i = 0; i < 50000; ++i) dotted += ".x";
  const std::string base = file(good + probe("lane-02", true));
  const int lines = static_cast<int>(count_of(base, "\n"));

  reload(base + header + "]\n", "SIGHUP: config refused");
  EXPECT_NE(daemon->err().find(fmt::format("SIGHUP: {}:{}:66: error: table header nests more "
                                           "than 32 levels deep",
                                           config.string(), lines + 1)),
            std::string::npos)
      << daemon->err().substr(0, 4000);
  reload(base + "[agent2]\n" + dotted + " = 1\n", "SIGHUP: config refused");
  EXPECT_NE(daemon->err().find(fmt::format("SIGHUP: {}:{}:63: error: dotted key nests more",
                                           config.string(), lines + 2)),
            std::string::npos)
      << daemon->err().substr(0, 4000);

  EXPECT_TRUE(daemon->running());
  // The CLI reads the config file too (for the control socket): put the
  // running one back, without a SIGHUP, to ask the daemon.
  write_file(config, file(good));
  EXPECT_TRUE(checked_again("lane-01", 2)) << daemon->err();
  json s = status();
  EXPECT_EQ(s["probes"].size(), 1u) << s.dump();
  EXPECT_TRUE(probe_status("lane-02").empty());
  EXPECT_EQ(s["agent"]["config"]["hash"], hash);
  EXPECT_EQ(s["agent"]["config"]["refused"], 2);
  EXPECT_EQ(s["agent"]["config"]["reloads"], 0);
  EXPECT_NE(s["agent"]["config"]["last_reload_error"].get<std::string>().find(
                "1 error in the new config"),
            std::string::npos)
      << s.dump();

  // The same files are `config check` errors, exit 2, not a crash.
  write_file(dir / "hostile.toml", base + header + "]\n");
  auto check =
      run(storewatch_command({"--config", (dir / "hostile.toml").string(), "config", "check"}));
  EXPECT_EQ(check.exit_code, 2) << check.err.substr(0, 2000);
  EXPECT_NE(check.err.find(fmt::format("hostile.toml:{}:66: error: table header", lines + 1)),
            std::string::npos)
      << check.err.substr(0, 2000);

  // And a good config after them is taken.
  reload(file(good + probe("lane-02", true)), "SIGHUP: config reloaded");
  ASSERT_TRUE(wait_until([&] { return probe_status("lane-02").value("last_status", "") == "ok"; }))
      << daemon->err();
}

/// What ReloadPreflight says of one child run of `argv`.
std::optional<std::string> preflight_verdict(std::vector<std::string> argv,
                                             Millis timeout = std::chrono::seconds(20)) {
  boost::asio::io_context io;
  agent::ReloadPreflight preflight(io.get_executor(), std::move(argv), timeout);
  std::optional<std::optional<std::string>> verdict;
  preflight.run([&](std::optional<std::string> v) { verdict = std::move(v); });
  io.run_for(std::chrono::seconds(30));
  EXPECT_TRUE(verdict.has_value()) << "no verdict";
  return verdict.value_or(std::optional<std::string>("no verdict"));
}

TEST(ReloadPreflightChild, OnlyAnAnswerOfConfigCheckMakesItSafeToLoad) {
  using ::testing::HasSubstr;
  // config check's two answers: valid, or errors (which the daemon's own load reports).
  EXPECT_EQ(preflight_verdict({"/bin/sh", "-c", "exit 0"}), std::nullopt);
  EXPECT_EQ(preflight_verdict({"/bin/sh", "-c", "echo 'f:1:1: error: x' >&2; exit 2"}),
            std::nullopt);
  // A parser that crashes crashes the child.
  auto v = preflight_verdict({"/bin/sh", "-c", "kill -SEGV $$"});
  ASSERT_TRUE(v);
  EXPECT_THAT(*v, HasSubstr("`config check` crashed (killed by signal 11 (SIGSEGV))"));
  EXPECT_THAT(*v, HasSubstr("the daemon did not load it"));
  // One that hangs is killed at the timeout, its whole group with it.
  const auto started = std::chrono::steady_clock::now();
  v = preflight_verdict({"/bin/sh", "-c", "sleep 30 & exec sleep 30"},
                        std::chrono::milliseconds(300));
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(10));
  ASSERT_TRUE(v);
  EXPECT_THAT(*v, HasSubstr("`config check` timed out after"));
  // Anything else is no answer either.
  v = preflight_verdict({"/bin/sh", "-c", "exit 1"});
  ASSERT_TRUE(v);
  EXPECT_THAT(*v, HasSubstr("`config check` exited with code 1, not 0 or 2"));
  // A binary that cannot be run at all (exec fails; under qemu-user without
  // binfmt_misc the child exits 127) leaves the load to the daemon, with a
  // warning: refusing every reload would leave the store without one.
  EXPECT_EQ(preflight_verdict({"/nonexistent/storewatch", "config", "check"}), std::nullopt);
  EXPECT_EQ(preflight_verdict({"/bin/sh", "-c", "echo 'cannot execute' >&2; exit 127"}),
            std::nullopt);
}

TEST(ReloadPreflightChild, TheRealBinaryAnswersOnAHostileFile) {
  TempDir dir;
  std::string header = "[store]\nid = \"s\"\n[";
  for (int i = 0; i < 40000; ++i) header += i == 0 ? "a" : ".a";
  write_file(dir / "hostile.toml", header + "]\n");
  EXPECT_EQ(preflight_verdict(
                storewatch_command({"--config", (dir / "hostile.toml").string(), "--conf-dir",
                                    (dir / "conf.d").string(), "config", "check"})),
            std::nullopt);
}

TEST(ReloadPreflightChild, ChecksTheFilesTheRunningConfigCameFromWithThisBinary) {
  TempDir dir;
  write_file(dir / "storewatch.toml", "[store]\nid = \"s\"\n");
  config::LoadOptions options;
  options.conf_dir = dir / "drop-ins";
  auto loaded = config::load(dir / "storewatch.toml", options);
  ASSERT_TRUE(loaded.ok());
  EXPECT_EQ(
      agent::ReloadPreflight::check_command(*loaded.config),
      (std::vector<std::string>{"/proc/self/exe", "--config", (dir / "storewatch.toml").string(),
                                "--conf-dir", (dir / "drop-ins").string(), "config", "check"}));
  // Without --conf-dir, the default one next to the file.
  loaded = config::load(dir / "storewatch.toml", config::LoadOptions{});
  ASSERT_TRUE(loaded.ok());
  EXPECT_EQ(agent::ReloadPreflight::check_command(*loaded.config)[4], (dir / "conf.d").string());
}

TEST(ReloadPreflightChild, ASighupDuringACheckChecksAgainAfterIt) {
  boost::asio::io_context io;
  agent::ReloadPreflight preflight(io.get_executor(), {"/bin/sh", "-c", "sleep 0.2"},
                                   std::chrono::seconds(20));
  std::vector<std::string> calls;
  preflight.run(
      [&](std::optional<std::string> v) { calls.push_back(v ? "first: " + *v : "first"); });
  preflight.run([&](std::optional<std::string>) { calls.emplace_back("second"); });
  preflight.run(
      [&](std::optional<std::string> v) { calls.push_back(v ? "third: " + *v : "third"); });
  io.run_for(std::chrono::seconds(30));
  // The second waited and was replaced by the third, which ran after the first.
  EXPECT_EQ(calls, (std::vector<std::string>{"first", "third"}));

  // Cancelled: no call, and the child is gone.
  calls.clear();
  io.restart();
  preflight.run([&](std::optional<std::string>) { calls.emplace_back("cancelled"); });
  preflight.cancel();
  io.run_for(std::chrono::seconds(30));
  EXPECT_TRUE(calls.empty());
}

}  // namespace
}  // namespace storewatch::test
