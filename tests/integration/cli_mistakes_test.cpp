// Issue 20, items 2, 6, 7 and 8: what a technician's mistakes get. A
// mistyped command names the closest ones and exits 2; every usage error has
// the prefix `storewatch: `; durations have one wording; `config check`
// checks HQ's config too; scripts/demo.sh checks its argument before it
// installs or builds anything, and shows the build's progress.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>

#include "tests/support/daemon.h"
#include "tests/support/support.h"

namespace storewatch::test {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

/// `storewatch ARGS` with no config at all: a mistake in the command words
/// is caught before any config is read.
RunResult mistaken(std::vector<std::string> args) {
  return run(storewatch_command(std::move(args)));
}

class CliMistakes : public ::testing::Test {
 protected:
  TempDir dir;
  std::filesystem::path agent_config = dir / "storewatch.toml";
  std::filesystem::path hq_config = dir / "hq.toml";

  void SetUp() override {
    auto c = DaemonConfig::in(dir, "store-typo");
    c.body = tcp_probe_toml("lane-01-pos", 1);
    c.write(agent_config);
    write_file(hq_config,
               "[hq]\n"
               "broker = \"tcp://127.0.0.1:1883\"\n"
               "database = \"" +
                   (dir / "hq.db").string() +
                   "\"\n"
                   "enroll = \"list\"\n"
                   "stores = [\"store-0042\", \"store-0043\"]\n");
  }
};

TEST(CliMistakesCommands, AnUnknownCommandNamesTheClosestAndExits2) {
  struct Case {
    std::vector<std::string> args;
    std::string typed, suggestion, help;
  };
  const Case cases[] = {
      {{"statu"}, "statu", "status", "storewatch --help"},
      {{"incidnets"}, "incidnets", "incidents", "storewatch --help"},
      {{"hq", "storez"}, "hq storez", "hq stores", "storewatch hq --help"},
      {{"sync", "statu"}, "sync statu", "sync status", "storewatch sync --help"},
      {{"silence", "ad"}, "silence ad", "silence add", "storewatch silence --help"},
      {{"probe", "rn"}, "probe rn", "probe run", "storewatch probe --help"},
      {{"config", "chek"}, "config chek", "config check", "storewatch config --help"},
      {{"incident", "sho"}, "incident sho", "incident show", "storewatch incident --help"},
      // After the global options, which take a value.
      {{"--config", "/nowhere.toml", "hq", "storez"},
       "hq storez",
       "hq stores",
       "storewatch hq --help"},
  };
  for (const auto& c : cases) {
    auto r = mistaken(c.args);
    EXPECT_EQ(r.exit_code, 2) << c.typed << "\n" << r.err;
    EXPECT_THAT(r.err, StartsWith("storewatch: unknown command '" + c.typed + "'")) << c.typed;
    EXPECT_THAT(r.err, HasSubstr("did you mean: " + c.suggestion)) << r.err;
    EXPECT_THAT(r.err, HasSubstr("`" + c.help + "`")) << r.err;
    EXPECT_THAT(r.err, Not(HasSubstr("A subcommand is required"))) << r.err;
    EXPECT_EQ(r.out, "") << c.typed;
  }
}

TEST(CliMistakesCommands, AWordNothingIsCloseToGetsNoGuess) {
  auto r = mistaken({"frobnicate"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, StartsWith("storewatch: unknown command 'frobnicate'"));
  EXPECT_THAT(r.err, Not(HasSubstr("did you mean")));
  EXPECT_THAT(r.err, HasSubstr("`storewatch --help`"));
}

TEST(CliMistakesCommands, AGroupWithoutACommandListsItsCommands) {
  auto r = mistaken({"hq"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, StartsWith("storewatch: `storewatch hq` needs a command: "));
  EXPECT_THAT(r.err, HasSubstr("stores"));
  auto top = mistaken({});
  EXPECT_EQ(top.exit_code, 2);
  EXPECT_THAT(top.err, StartsWith("storewatch: `storewatch` needs a command: "));
  EXPECT_THAT(top.err, HasSubstr("status"));
}

TEST(CliMistakesCommands, VersionIsACommandToo) {
  auto flag = mistaken({"--version"});
  auto cmd = mistaken({"version"});
  EXPECT_EQ(flag.exit_code, 0);
  EXPECT_EQ(cmd.exit_code, 0) << cmd.err;
  EXPECT_THAT(cmd.out, StartsWith("storewatch "));
  EXPECT_EQ(cmd.out, flag.out);
  auto help = mistaken({"--help"});
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_THAT(help.out, HasSubstr("version"));
  EXPECT_THAT(help.out, HasSubstr("2 usage or config error"));
}

TEST(CliMistakesCommands, HelpOfAGroupStillWorks) {
  auto r = mistaken({"hq", "--help"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("stores"));
  EXPECT_THAT(r.out, HasSubstr("config"));
}

TEST(CliMistakesCommands, CliElevenErrorsHaveTheOnePrefix) {
  // An unknown option, a missing required one, a missing argument.
  const std::vector<std::vector<std::string>> cases = {
      {"status", "--bogus"},
      {"silence", "add", "--match", "x", "--reason", "y"},
      {"incident", "show"},
  };
  for (const auto& args : cases) {
    auto r = mistaken(args);
    EXPECT_EQ(r.exit_code, 2) << args[0] << "\n" << r.err;
    EXPECT_THAT(r.err, StartsWith("storewatch: ")) << r.err;
    EXPECT_THAT(r.err, HasSubstr("--help`")) << r.err;
    EXPECT_THAT(r.err, Not(HasSubstr("Run with --help"))) << r.err;
  }
  // Not CLI11's but a usage error all the same (exit 2).
  TempDir dir;
  auto c = DaemonConfig::in(dir, "store-typo");
  c.write(dir / "storewatch.toml");
  auto no_channel = run_cli(dir / "storewatch.toml", {"notify", "test", "slak"});
  EXPECT_EQ(no_channel.exit_code, 2);
  EXPECT_THAT(no_channel.err, StartsWith("storewatch: no [[notify]] channel \"slak\""));

  auto missing_for = mistaken({"silence", "add", "--match", "x", "--reason", "y"});
  EXPECT_THAT(missing_for.err, HasSubstr("--for is required"));
  EXPECT_THAT(missing_for.err, HasSubstr("`storewatch silence add --help`"));
}

TEST_F(CliMistakes, DurationsHaveOneWording) {
  auto zero = run_cli(agent_config,
                      {"silence", "add", "--match", "lane-*", "--for", "0s", "--reason", "r"});
  EXPECT_EQ(zero.exit_code, 2);
  EXPECT_EQ(zero.err, "storewatch: --for 0s must be positive, e.g. 2h\n");

  auto no_unit =
      run_cli(agent_config, {"silence", "add", "--match", "lane-*", "--for", "2", "--reason", "r"});
  EXPECT_EQ(no_unit.exit_code, 2);
  EXPECT_EQ(no_unit.err,
            "storewatch: --for 2 is not a duration: it has no unit; write e.g. \"2s\" or "
            "\"2ms\"\n");

  // The same hint, whatever the option.
  const std::string how = "write a whole number and a unit (ms, s, m, h, d)";
  for (const auto& args : std::vector<std::vector<std::string>>{
           {"silence", "add", "--match", "x", "--for", "2x", "--reason", "r"},
           {"incidents", "--since", "2x"},
           {"report", "--since", "2x"},
           {"doctor", "--timeout", "2x"},
       }) {
    auto r = run_cli(agent_config, args);
    EXPECT_EQ(r.exit_code, 2) << args[0] << "\n" << r.err;
    EXPECT_THAT(r.err, StartsWith("storewatch: --")) << r.err;
    EXPECT_THAT(r.err, HasSubstr(" 2x is not a duration: " + how)) << r.err;
  }
  auto doctor = run_cli(agent_config, {"doctor", "--timeout", "0s"});
  EXPECT_EQ(doctor.exit_code, 2);
  EXPECT_EQ(doctor.err, "storewatch: --timeout 0s must be positive, e.g. 3s\n");
}

TEST_F(CliMistakes, ConfigCheckKnowsAnHqConfig) {
  for (auto args :
       std::vector<std::vector<std::string>>{{"config", "check"}, {"hq", "config", "check"}}) {
    args.insert(args.begin(), {"--config", hq_config.string()});
    auto r = run(storewatch_command(args));
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_THAT(r.out, StartsWith(hq_config.string() + ": ok — HQ config")) << r.out;
    EXPECT_THAT(r.out, HasSubstr("enroll list (2 stores)"));
    EXPECT_THAT(r.err, Not(HasSubstr("unknown table")));
  }
  // $STOREWATCH_HQ_CONFIG is hq config check's default.
  auto by_env = run(storewatch_command({"hq", "config", "check"}),
                    {{"STOREWATCH_HQ_CONFIG", hq_config.string()}});
  EXPECT_EQ(by_env.exit_code, 0) << by_env.err;
  // The agent's config checks as before.
  auto agent = run_cli(agent_config, {"config", "check"});
  EXPECT_EQ(agent.exit_code, 0) << agent.err;
  EXPECT_THAT(agent.out, HasSubstr(": ok — store store-typo"));
}

TEST_F(CliMistakes, AnHqConfigsErrorsAreFileLineColumn) {
  write_file(hq_config,
             "[hq]\n"
             "broker = \"tcp://127.0.0.1:1883\"\n"
             "enroll = \"sometimes\"\n"
             "colour = \"blue\"\n");
  auto r = run(storewatch_command({"--config", hq_config.string(), "config", "check"}));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr(hq_config.string() + ":3:")) << r.err;
  EXPECT_THAT(r.err, HasSubstr(hq_config.string() + ":4:1: error")) << r.err;
  EXPECT_THAT(r.err, HasSubstr(hq_config.string() + ": 2 errors")) << r.err;
  EXPECT_THAT(r.err, Not(HasSubstr("unknown table [hq]"))) << r.err;
  EXPECT_EQ(r.out, "");
}

TEST_F(CliMistakes, AFileMixingHqAndTheAgentIsToldToSplit) {
  write_file(hq_config, "[store]\nid = \"store-0042\"\n\n[hq]\nbroker = \"tcp://127.0.0.1:1\"\n");
  auto r = run(storewatch_command({"--config", hq_config.string(), "config", "check"}));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, StartsWith(hq_config.string() + ":4:"));
  EXPECT_THAT(r.err, HasSubstr("[hq] is HQ's table"));
  EXPECT_THAT(r.err, HasSubstr("[store] (at " + hq_config.string() + ":1:"));
  EXPECT_THAT(r.err, HasSubstr("two files"));
}

/// scripts/demo.sh run with `cmake`, `ninja`, `sudo`, `apt-get` and
/// `dpkg-query` replaced by stubs that leave a mark: were the argument not
/// checked first, the stubs would show it tried to install or build.
class DemoScript : public ::testing::Test {
 protected:
  TempDir dir;
  std::filesystem::path bin = dir / "bin";
  std::filesystem::path mark = dir / "started";
  std::filesystem::path demo = std::filesystem::path(STOREWATCH_TEST_SOURCE_DIR) / "scripts";

  void SetUp() override {
    std::filesystem::create_directories(bin);
    for (const char* tool : {"cmake", "ninja", "sudo", "apt-get", "dpkg-query"}) {
      write_file(bin / tool, "#!/bin/sh\necho \"$0 $*\" >> '" + mark.string() + "'\nexit 1\n");
      std::filesystem::permissions(bin / tool, std::filesystem::perms::owner_all);
    }
  }

  RunResult demo_sh(std::vector<std::string> args) {
    std::vector<std::string> argv{(demo / "demo.sh").string()};
    argv.insert(argv.end(), args.begin(), args.end());
    const char* path = std::getenv("PATH");
    return run(argv, {{"PATH", bin.string() + ":" + (path != nullptr ? path : "/usr/bin:/bin")}},
               std::chrono::seconds(20));
  }
};

TEST_F(DemoScript, HelpPrintsUsageAndTheDevicesAndBuildsNothing) {
  auto started = std::chrono::steady_clock::now();
  auto r = demo_sh({"--help"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(10));
  EXPECT_THAT(r.out, StartsWith("usage: scripts/demo.sh [DEVICE]"));
  for (const char* device : {"lan-switch", "payment-gw", "lane-02-pos", "printer-01"}) {
    EXPECT_THAT(r.out, HasSubstr(device));
  }
  EXPECT_THAT(r.out, Not(HasSubstr("gateway-disk")));  // the gateway, not a device
  EXPECT_FALSE(std::filesystem::exists(mark)) << read_file(mark);
  EXPECT_EQ(demo_sh({"-h"}).exit_code, 0);
}

TEST_F(DemoScript, AnUnknownDeviceListsTheDevicesAndExits2AtOnce) {
  for (const char* wrong : {"no-such-device", "printer-1"}) {
    auto r = demo_sh({wrong});
    EXPECT_EQ(r.exit_code, 2) << r.out << r.err;
    EXPECT_THAT(r.err, HasSubstr(std::string("no device \"") + wrong + "\""));
    EXPECT_THAT(r.err, HasSubstr("printer-01"));
    EXPECT_THAT(r.err, HasSubstr("lane-02-pos"));
    EXPECT_EQ(r.out, "");
  }
  EXPECT_EQ(demo_sh({"lane-01-pos", "extra"}).exit_code, 2);
  EXPECT_EQ(demo_sh({"--bogus"}).exit_code, 2);
  EXPECT_FALSE(std::filesystem::exists(mark)) << read_file(mark);
}

TEST_F(DemoScript, TheBuildShowsItsProgress) {
  // What demo.sh pipes its build through: ninja's status lines become a line
  // per 5 %, compiler messages pass whole.
  std::string ninja;
  for (int i = 1; i <= 200; ++i) {
    ninja += "[" + std::to_string(i) + "/200] Building CXX object f" + std::to_string(i) + ".o\n";
    if (i == 50) ninja += "f50.cpp:1:1: warning: something\n";
  }
  write_file(dir / "ninja.out", ninja);
  auto r =
      run({"/bin/sh", "-c",
           (demo / "build_progress.sh").string() + " < '" + (dir / "ninja.out").string() + "'"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("[10/200]   5% Building CXX object f10.o\n"));
  EXPECT_THAT(r.out, HasSubstr("[100/200]  50%"));
  EXPECT_THAT(r.out, HasSubstr("[200/200] 100%"));
  EXPECT_THAT(r.out, HasSubstr("f50.cpp:1:1: warning: something\n"));
  std::size_t lines = 0;
  for (char c : r.out) lines += c == '\n';
  EXPECT_GE(lines, 20u);
  EXPECT_LE(lines, 23u);

  // With a log (as demo.sh runs it): the compiler's messages go there, and
  // one line says where, so false alarms do not bury the progress.
  const auto log = dir / "build.log";
  r = run({"/bin/sh", "-c",
           (demo / "build_progress.sh").string() + " '" + log.string() + "' < '" +
               (dir / "ninja.out").string() + "'"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("[200/200] 100%"));
  EXPECT_THAT(r.out, Not(HasSubstr("warning: something")));
  EXPECT_THAT(r.out, HasSubstr("compiler messages (1 lines): " + log.string()));
  EXPECT_EQ(read_file(log), "f50.cpp:1:1: warning: something\n");
}

}  // namespace
}  // namespace storewatch::test
