// Bad input at start-up: each case gets a one-line error that says what and
// where, and the daemon either keeps running or exits non-zero. Nothing
// crashes.

#include <gtest/gtest.h>

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <csignal>
#include <cstring>

#include "tests/support/daemon.h"
#include "tests/support/support.h"
#include "tests/support/tcp_device.h"

namespace storewatch::test {
namespace {

using nlohmann::json;

std::size_t lines(const std::string& s) {
  std::size_t n = 0;
  for (char c : s) n += c == '\n';
  return n;
}

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

class BadInput : public ::testing::Test {
 protected:
  TempDir dir;
  std::filesystem::path config = dir / "storewatch.toml";
  std::filesystem::path data_dir = dir / "data";
  std::filesystem::path socket = dir / "run" / "control.sock";
  TcpDevice device;  // up: the probe stays ok, so no incident opens by itself
  int device_port = device.port();

  void write_config(const std::string& data, const std::string& sock,
                    const std::string& broker = "tcp://127.0.0.1:1") {
    DaemonConfig c;
    c.store_id = "store-bad";
    c.data_dir = data;
    c.control_socket = sock;
    c.broker = broker;
    c.body =
        tcp_probe_toml("lane-01-pos", device_port, "interval = \"200ms\"\ntimeout = \"100ms\"\n");
    c.write(config);
  }
  void SetUp() override { write_config(data_dir.string(), socket.string()); }

  RunResult sw(std::vector<std::string> args) { return run_cli(config, std::move(args)); }
  std::unique_ptr<Child> start() { return launch_daemon(config, dir / "logs"); }
  bool daemon_answers() { return daemon_is_running(config); }
};

TEST_F(BadInput, MissingConfigIsAUsageErrorNamingTheFile) {
  auto r = run(storewatch_command({"--config", (dir / "nope.toml").string(), "run"}));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(lines(r.err), 1u) << r.err;
  EXPECT_TRUE(contains(r.err, (dir / "nope.toml").string())) << r.err;
}

TEST_F(BadInput, NonTomlConfigIsRejectedWithFileLineColumn) {
  write_file(config, "[store]\nid = \"ok\"\nthis is not toml\n");
  auto r = sw({"config", "check"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_TRUE(contains(r.err, config.string() + ":3:")) << r.err;
}

TEST_F(BadInput, HostileNestingIsAConfigErrorNotACrash) {
  // Issue 18: `config check` died of SIGSEGV inside the TOML parser on these.
  auto joined = [](const std::string& part, int n) {
    std::string out = part;
    for (int i = 1; i < n; ++i) out += "." + part;
    return out;
  };
  const std::string deep_array = std::string(50000, '[') + std::string(50000, ']');
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"[store]\nid = \"s\"\n[" + joined("a", 40000) + "]\n", ":3:66: error: table header nests"},
      {"[store]\nid = \"s\"\n" + joined("a", 50000) + " = 1\n", ":3:63: error: dotted key nests"},
      {"[store]\nid = \"s\"\nx = " + deep_array + "\n", ":3:35: error: array nests"},
      {"[store]\nid = \"s\"\n" + std::string(100000, 'k') + " = 1\n",
       ":3:1: error: a key of 100000 bytes"},
  };
  for (const auto& [text, where] : cases) {
    write_file(config, text);
    auto r = sw({"config", "check"});
    EXPECT_EQ(r.exit_code, 2) << where << "\n" << r.err.substr(0, 1000);
    EXPECT_TRUE(contains(r.err, config.string() + where)) << where << "\n" << r.err.substr(0, 1000);
  }
  // And no [store] at all is reported at the file's start.
  write_file(config, "[agent]\nlog_level = \"info\"\n");
  auto r = sw({"config", "check"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_TRUE(
      contains(r.err, config.string() + ":1:1: error: [store]: missing required key \"id\""))
      << r.err;
}

TEST_F(BadInput, ConfigCheckReportsEveryErrorAndCreatesNothing) {
  write_file(config, R"([store]
id = "../etc"

[agent]
data_dir = ")" + data_dir.string() +
                         R"("
colour = "blue"

[[probe]]
name = "lane 01"
type = "tcp"
host = "127.0.0.1"
port = 70000
interval = "5x"
fail_after = 0
)");
  auto r = sw({"config", "check"});
  EXPECT_EQ(r.exit_code, 2);
  for (const char* where : {":2:", ":6:", ":9:", ":12:", ":13:", ":14:"}) {
    EXPECT_TRUE(contains(r.err, config.string() + where)) << where << "\n" << r.err;
  }
  EXPECT_FALSE(std::filesystem::exists(data_dir));

  write_config(data_dir.string(), socket.string());
  r = sw({"config", "check"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_FALSE(std::filesystem::exists(data_dir));
  EXPECT_FALSE(std::filesystem::exists(socket.parent_path()));
}

TEST_F(BadInput, DataDirThatCannotBeCreatedStopsTheDaemon) {
  write_file(dir / "a-file", "not a directory\n");
  write_config((dir / "a-file" / "data").string(), socket.string());
  auto r = sw({"run"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(lines(r.err), 1u) << r.err;
  EXPECT_TRUE(contains(r.err, (dir / "a-file" / "data").string())) << r.err;
}

TEST_F(BadInput, CorruptDatabaseStopsTheDaemon) {
  write_file(data_dir / "storewatch.db", std::string(10000, '\x5a'));
  auto r = sw({"run"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(lines(r.err), 1u) << r.err;
  EXPECT_TRUE(contains(r.err, (data_dir / "storewatch.db").string())) << r.err;
  EXPECT_TRUE(contains(r.err, "corrupt")) << r.err;
  // Reads fail the same way, cleanly.
  EXPECT_EQ(sw({"incidents"}).exit_code, 1);
}

TEST_F(BadInput, DatabaseFromANewerReleaseIsRefused) {
  std::filesystem::create_directories(data_dir);
  auto r = run({"sqlite3", (data_dir / "storewatch.db").string(), "PRAGMA user_version = 999;"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = sw({"run"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(lines(r.err), 1u) << r.err;
  EXPECT_TRUE(contains(r.err, "newer")) << r.err;
}

TEST_F(BadInput, SecondDaemonOnTheSameDataDirIsRefused) {
  auto first = start();
  ASSERT_TRUE(wait_until([&] { return daemon_answers(); })) << first->err();
  // Another socket path, so only the lock can stop it.
  write_config(data_dir.string(), (dir / "other.sock").string());
  auto r = sw({"run"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(lines(r.err), 1u) << r.err;
  EXPECT_TRUE(contains(r.err, "another storewatch daemon")) << r.err;
  EXPECT_TRUE(contains(r.err, std::to_string(first->pid()))) << r.err;
  EXPECT_TRUE(first->running());
  EXPECT_EQ(first->stop(SIGTERM), 0);
}

TEST_F(BadInput, StaleControlSocketIsReplaced) {
  std::filesystem::create_directories(socket.parent_path());
  int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, socket.c_str(), sizeof addr.sun_path - 1);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ::close(fd);  // left behind, as by a crash
  ASSERT_TRUE(std::filesystem::is_socket(socket));

  auto daemon = start();
  ASSERT_TRUE(wait_until([&] { return daemon_answers(); })) << daemon->err();
  EXPECT_EQ(daemon->stop(SIGTERM), 0);
  EXPECT_FALSE(std::filesystem::exists(socket));  // removed on a clean stop
}

TEST_F(BadInput, SomethingElseAtTheSocketPathIsNotRemoved) {
  write_file(socket, "precious\n");
  auto r = sw({"run"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(lines(r.err), 1u) << r.err;
  EXPECT_TRUE(contains(r.err, socket.string())) << r.err;
  EXPECT_EQ(read_file(socket), "precious\n");
}

TEST_F(BadInput, BrokerDownAtStartupKeepsTheDaemonRunning) {
  auto daemon = start();  // the config's broker port 1 refuses
  json s;
  // The first connection attempt fails asynchronously: wait for its verdict.
  ASSERT_TRUE(wait_until([&] {
    if (!daemon_answers()) return false;
    s = json::parse(sw({"status", "--json"}).out);
    return !s["sync"]["last_error"].get<std::string>().empty();
  })) << daemon->err();
  EXPECT_EQ(s["sync"]["connected"], false);
  EXPECT_TRUE(daemon->running());
  EXPECT_EQ(daemon->stop(SIGTERM), 0);
}

TEST_F(BadInput, ReadsWorkWithTheDaemonDown) {
  auto daemon = start();
  ASSERT_TRUE(wait_until([&] { return daemon_answers(); })) << daemon->err();
  EXPECT_EQ(daemon->stop(SIGTERM), 0);
  auto r = sw({"status", "--json"});
  ASSERT_EQ(r.exit_code, 3) << r.err;  // not running, as `systemctl status` says it
  json s = json::parse(r.out);
  EXPECT_EQ(s["agent"]["running"], false);
  EXPECT_EQ(s["store"], "store-bad");
  ASSERT_EQ(s["probes"].size(), 1u);
  EXPECT_EQ(s["probes"][0]["name"], "lane-01-pos");
  for (const char* key : {"name", "type", "state", "last_check", "latency_ms", "message"}) {
    EXPECT_TRUE(s["probes"][0].contains(key)) << key;
  }
  for (const char* key : {"connected", "queued", "hq_acked_seq"}) {
    EXPECT_TRUE(s["sync"].contains(key)) << key;
  }
  r = sw({"status"});
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_TRUE(contains(r.out, "lane-01-pos"));
  EXPECT_TRUE(contains(r.out, "not running"));
  EXPECT_EQ(sw({"incidents", "--json"}).out, "[]\n");
}

// Every agent command with the daemon stopped: the reads answer from the
// database, the probe and config commands need no daemon, and every change
// fails with exit 1, says the daemon is not running and how to start it, and
// changes nothing.
TEST_F(BadInput, EveryCommandWithTheDaemonDownAnswersOrSaysHowToStartIt) {
  auto daemon = start();
  ASSERT_TRUE(wait_until([&] { return daemon_answers(); })) << daemon->err();
  device.down();
  std::string uid;
  ASSERT_TRUE(wait_until([&] {
    json list = json::parse(sw({"incidents", "--json"}).out, nullptr, false);
    if (!list.is_array() || list.empty()) return false;
    uid = list[0]["uid"].get<std::string>();
    return true;
  })) << daemon->err();
  auto added = sw({"silence", "add", "--match", "lane-*", "--for", "2h", "--reason", "paper jam",
                   "--by", "dana", "--json"});
  ASSERT_EQ(added.exit_code, 0) << added.err;
  const std::string silence = json::parse(added.out)["uid"].get<std::string>();
  EXPECT_EQ(daemon->stop(SIGTERM), 0);

  // What the database holds, to compare after the refused changes.
  auto snapshot = [&] {
    return sw({"incident", "show", uid, "--json"}).out + sw({"silence", "list", "--json"}).out;
  };
  const std::string before = snapshot();
  ASSERT_TRUE(contains(before, uid));
  ASSERT_TRUE(contains(before, silence));

  struct Read {
    std::vector<std::string> args;
    int exit_code;
    std::string says;
  };
  const Read reads[] = {
      {{"status"}, 3, "not running"},
      {{"status", "--json"}, 3, "\"running\": false"},
      {{"incidents"}, 0, "lane-01-pos"},
      {{"incidents", "--all", "--json"}, 0, uid},
      {{"incident", "show", uid}, 0, "opened"},
      {{"incident", "show", uid, "--json"}, 0, "\"events\""},
      {{"silence", "list"}, 0, "paper jam"},
      {{"silence", "list", "--json"}, 0, silence},
      {{"sync", "status", "--json"}, 0, "\"connected\": false"},
      {{"sync", "status"}, 0, "not running"},
      {{"report", "--json"}, 0, "\"incidents\""},
      {{"report"}, 0, "MTTR"},
      {{"config", "check"}, 0, ""},
      {{"config", "polkit"}, 0, "polkit"},
      {{"probe", "types", "--json"}, 0, "\"tcp\""},
      {{"probe", "run", "lane-01-pos"}, 1, "lane-01-pos"},  // the device is still down
      {{"doctor"}, 1, "sudo systemctl start storewatch"},
  };
  for (const auto& read : reads) {
    auto r = sw(read.args);
    const std::string what = fmt::format("{}", fmt::join(read.args, " "));
    EXPECT_EQ(r.exit_code, read.exit_code) << what << "\n" << r.out << r.err;
    EXPECT_TRUE(contains(r.out, read.says)) << what << " should say " << read.says << ":\n"
                                            << r.out << r.err;
  }

  const std::vector<std::string> changes[] = {
      {"ack", uid, "--by", "dana"},
      {"resolve", uid, "--by", "dana"},
      {"close", uid},
      {"note", uid, "--note", "replaced the cable"},
      {"ack", uid, "--json"},
      {"silence", "add", "--match", "lane-*", "--for", "1h", "--reason", "cleaning"},
      {"silence", "remove", silence},
  };
  for (const auto& change : changes) {
    auto r = sw(change);
    const std::string what = fmt::format("{}", fmt::join(change, " "));
    EXPECT_EQ(r.exit_code, 1) << what << "\n" << r.out << r.err;
    EXPECT_TRUE(contains(r.err, "the daemon is not running")) << what << ": " << r.err;
    EXPECT_TRUE(contains(r.err, "sudo systemctl start storewatch")) << what << ": " << r.err;
    EXPECT_TRUE(contains(r.err, "Nothing was changed")) << what << ": " << r.err;
    EXPECT_EQ(lines(r.err), 1u) << what << ": " << r.err;
  }
  EXPECT_EQ(snapshot(), before);
}

// A technician in the database's group reads it, with the daemon running
// and after it stopped: the daemon runs with the unit's UMask=0027 (files
// 0640, directories 0750), the reader is another user whose group is the
// daemon's, and may not write the data directory. SQLite opens a WAL
// database for such a reader only when its -wal and -shm files exist, so the
// daemon keeps them when it stops.
TEST_F(BadInput, AReaderInTheDatabasesGroupReadsWithTheDaemonUpAndDown) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to run the reader as another user";
  if (run({"setpriv", "--version"}).exit_code != 0) GTEST_SKIP() << "no setpriv";
  if (auto why = nobody_cannot_run_storewatch(); !why.empty()) GTEST_SKIP() << why;
  std::filesystem::permissions(dir.path(), std::filesystem::perms(0755));
  std::string daemon_cmd = "umask 027; exec";
  for (const auto& a : daemon_command(config)) {
    daemon_cmd += " '" + a + "'";
  }
  auto daemon =
      std::make_unique<Child>(std::vector<std::string>{"sh", "-c", daemon_cmd}, dir / "logs");
  ASSERT_TRUE(wait_until([&] { return daemon_answers(); })) << daemon->err();
  device.down();
  ASSERT_TRUE(wait_until([&] {
    return sw({"incidents", "--json"}).out != "[]\n";
  })) << daemon->err();
  const auto mode = std::filesystem::status(data_dir / "storewatch.db").permissions();
  EXPECT_EQ(mode & std::filesystem::perms::others_all, std::filesystem::perms::none);

  auto as_reader = [&](std::vector<std::string> args) {
    std::vector<std::string> cmd = {"setpriv", "--reuid=nobody",
                                    fmt::format("--regid={}", ::getegid()), "--clear-groups"};
    args.insert(args.begin(), {"--config", config.string()});
    for (auto& a : storewatch_command(args)) cmd.push_back(a);
    return run(cmd);
  };
  auto running = as_reader({"incidents", "--json"});
  ASSERT_EQ(running.exit_code, 0) << running.err;
  EXPECT_TRUE(contains(running.out, "lane-01-pos")) << running.out;

  EXPECT_EQ(daemon->stop(SIGTERM), 0) << daemon->err();
  auto stopped = as_reader({"incidents", "--json"});
  ASSERT_EQ(stopped.exit_code, 0) << stopped.err;
  EXPECT_TRUE(contains(stopped.out, "lane-01-pos")) << stopped.out;
  auto status = as_reader({"status"});
  EXPECT_EQ(status.exit_code, 3) << status.err;
  EXPECT_TRUE(contains(status.out, "not running")) << status.out;
}

TEST(Cli, VersionHelpAndUsageErrors) {
  auto r = run(storewatch_command({"--version"}));
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_TRUE(contains(r.out, "storewatch ")) << r.out;
  for (std::vector<std::string> cmd : {std::vector<std::string>{"--help"},
                                       {"run", "--help"},
                                       {"status", "--help"},
                                       {"incidents", "--help"},
                                       {"incident", "show", "--help"},
                                       {"config", "check", "--help"},
                                       {"hq", "--help"},
                                       {"hq", "run", "--help"},
                                       {"hq", "stores", "--help"},
                                       {"hq", "incidents", "--help"}}) {
    cmd.insert(cmd.begin(), "--config");
    cmd.insert(cmd.begin() + 1, "/nonexistent.toml");
    r = run(storewatch_command(cmd));
    EXPECT_EQ(r.exit_code, 0) << cmd[2] << ": " << r.err;
    EXPECT_TRUE(contains(r.out, "Usage") || contains(r.out, "usage") || contains(r.out, "USAGE"))
        << r.out;
  }
  EXPECT_EQ(run(storewatch_command({"frobnicate"})).exit_code, 2);
  EXPECT_EQ(run(storewatch_command({"incidents", "--bogus"})).exit_code, 2);
  EXPECT_EQ(run(storewatch_command({})).exit_code, 2);
  EXPECT_EQ(run(storewatch_command({"incidents", "--since", "yesterday"})).exit_code, 2);
}

}  // namespace
}  // namespace storewatch::test
