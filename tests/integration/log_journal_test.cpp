// The real daemon's log lines: with JOURNAL_STREAM naming its stderr (as
// systemd sets it) every line carries an sd-daemon priority prefix and no
// timestamp; with JOURNAL_STREAM naming something else, plain timestamped
// lines. And no line per probe result at info.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <csignal>
#include <memory>
#include <regex>
#include <sstream>

#include "tests/support/daemon.h"
#include "tests/support/store_lab.h"
#include "tests/support/support.h"

namespace storewatch::test {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;
using namespace std::chrono_literals;

/// Runs `args` with JOURNAL_STREAM set to the device and inode of the
/// stderr it gets, as systemd does for a unit whose stderr is the journal.
std::vector<std::string> under_journal(std::vector<std::string> args) {
  std::vector<std::string> cmd = {
      "/bin/sh", "-c",
      "JOURNAL_STREAM=$(stat -L -c %d:%i /proc/self/fd/2) || exit 99; export JOURNAL_STREAM; "
      "exec \"$@\"",
      "sh"};
  cmd.insert(cmd.end(), args.begin(), args.end());
  return cmd;
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

/// The daemon's own lines: up to its last one, `last` (a sanitizer build
/// may report after it, e.g. LeakSanitizer's "Suppressions used").
std::string up_to(const std::string& err, const std::string& last) {
  const std::size_t at = err.find(last);
  if (at == std::string::npos) return err;
  const std::size_t eol = err.find('\n', at);
  return err.substr(0, eol == std::string::npos ? err.size() : eol + 1);
}

std::size_t count_prefix(const std::string& text, const std::string& prefix) {
  std::size_t n = 0;
  for (const auto& l : lines_of(text)) n += l.rfind(prefix, 0) == 0 ? 1 : 0;
  return n;
}

class JournalLog : public ::testing::Test {
 protected:
  JournalLog()
      : lane_port(free_port()),
        lab(fmt::format("[[device]]\nname = \"lane-01\"\nkind = \"tcp\"\nhost = \"127.0.0.1\"\n"
                        "port = {}\n",
                        lane_port)) {}

  /// A config with one answering lane and one critical probe of a port
  /// nothing listens on (an incident opens: a warning).
  void write_config(const std::string& level, const std::string& data_dir = "") {
    config = dir / "storewatch.toml";
    auto c = DaemonConfig::in(dir, "store-0042");
    if (!data_dir.empty()) c.data_dir = data_dir;
    c.agent_keys = fmt::format("log_level = \"{}\"\n", level);
    c.broker = broker.uri();
    const std::string fast = "interval = \"100ms\"\ntimeout = \"100ms\"\n";
    c.body = tcp_probe_toml("lane-01", lane_port, fast) + "\n" +
             tcp_probe_toml("payment-gw", free_port(),
                            fast + "fail_after = 1\nseverity = \"critical\"\n");
    c.write(config);
  }

  std::vector<std::string> daemon_args() { return daemon_command(config); }

  json status() {
    auto r = run_cli(config, {"status", "--json"});
    return json::parse(r.out, nullptr, false);
  }

  std::int64_t checks() {
    auto s = status();
    if (!s.is_object() || !s.contains("agent") || !s["agent"].contains("schedule")) return -1;
    return s["agent"]["schedule"].value("checks", std::int64_t{-1});
  }

  TempDir dir;
  int lane_port;
  StoreLab lab;
  Broker broker;
  std::filesystem::path config;
};

TEST_F(JournalLog, EveryLineCarriesItsPriorityAndNoTimestamp) {
  write_config("debug");
  Child daemon(under_journal(daemon_args()), dir / "logs");
  ASSERT_TRUE(wait_until([&] {
    const std::string err = daemon.err();
    return err.find("<6>storewatch ") != std::string::npos &&  // started: info
           err.find("<4>incident ") != std::string::npos &&    // payment-gw: warning
           err.find("<7>probe lane-01") != std::string::npos;  // a state change: debug
  })) << daemon.err();
  EXPECT_EQ(daemon.stop(SIGTERM), 0);
  const std::regex prefixed(R"(^<[3467]>\S.*)");
  const std::regex timestamp(R"(^<\d>\d{4}-\d\d-\d\dT)");
  EXPECT_THAT(daemon.err(), HasSubstr("<6>stopped\n"));
  const auto lines = lines_of(up_to(daemon.err(), "<6>stopped"));
  ASSERT_GT(lines.size(), 3u);
  for (const auto& l : lines) {
    EXPECT_TRUE(std::regex_match(l, prefixed)) << l;
    EXPECT_FALSE(std::regex_search(l, timestamp)) << l;
  }
  EXPECT_GE(count_prefix(daemon.err(), "<6>"), 1u);
}

TEST_F(JournalLog, ErrorsAreLevelThree) {
  // A data_dir that is a file: the daemon cannot start, and says so as an error.
  write_file(dir / "not-a-dir", "x");
  write_config("info", (dir / "not-a-dir").string());
  Child daemon(under_journal(daemon_args()), dir / "logs");
  EXPECT_NE(daemon.wait(20s), 0);
  EXPECT_THAT(daemon.err(), HasSubstr("<3>cannot create data dir"));
}

TEST_F(JournalLog, AnInheritedJournalStreamThatIsNotStderrGivesPlainLines) {
  // What a child of a systemd service sees when its stderr was redirected to
  // a file: JOURNAL_STREAM is set, but names another stream.
  write_config("info");
  Child daemon(daemon_args(), dir / "logs", {{"JOURNAL_STREAM", "1:1"}});
  ASSERT_TRUE(wait_until([&] {
    return daemon.err().find(" info: storewatch ") != std::string::npos;
  })) << daemon.err();
  EXPECT_EQ(daemon.stop(SIGTERM), 0);
  const std::regex plain(R"(^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (debug|info|warn|error): .+)");
  EXPECT_THAT(daemon.err(), HasSubstr(" info: stopped\n"));
  for (const auto& l : lines_of(up_to(daemon.err(), " info: stopped"))) {
    EXPECT_TRUE(std::regex_match(l, plain)) << l;
  }
}

TEST_F(JournalLog, NoLinePerProbeResultAtInfo) {
  write_config("info");
  Child daemon(under_journal(daemon_args()), dir / "logs");
  // Two probes every 100 ms: by 20 checks the start-up lines are out...
  ASSERT_TRUE(wait_until([&] { return checks() >= 20; })) << daemon.err();
  ASSERT_TRUE(wait_until([&] { return daemon.err().find("<4>incident ") != std::string::npos; }))
      << daemon.err();
  const std::string early = daemon.err();
  // ...and 100 checks later, nothing more was logged.
  const std::int64_t from = checks();
  ASSERT_TRUE(wait_until([&] { return checks() >= from + 100; }, 30s)) << daemon.err();
  const std::string late = daemon.err();
  EXPECT_EQ(lines_of(late).size(), lines_of(early).size()) << late;
  EXPECT_EQ(count_prefix(late, "<7>"), 0u);
  daemon.stop(SIGTERM);
}

}  // namespace
}  // namespace storewatch::test
