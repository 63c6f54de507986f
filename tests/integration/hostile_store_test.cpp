// Issue 18, defects 2 and 4, against the real daemon:
// - a member of group storewatch holding control connections used up the
//   daemon's descriptors; healthy devices then got false incidents ("Too
//   many open files") and the accept loop spun at 87 % of a core;
// - a full disk: the agent ran on while `status` said nothing waited,
//   `doctor` said the database was fine, no storage incident was raised, and
//   a kill -9 lost most of the incidents of that window.

#include <sqlite3.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <csignal>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>
#include <thread>

#include "tests/support/support.h"
#include "tests/support/tcp_device.h"

namespace storewatch::test {
namespace {

using nlohmann::json;

/// A connection to the control socket held open; -1 when refused.
int hold_control(const std::filesystem::path& socket_path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, socket_path.c_str(), sizeof addr.sun_path - 1);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

/// What arrives on `fd` within `wait`, without blocking longer.
std::string read_some(int fd, std::chrono::milliseconds wait) {
  timeval tv{static_cast<time_t>(wait.count() / 1000),
             static_cast<suseconds_t>((wait.count() % 1000) * 1000)};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  char buf[2048];
  ssize_t n = ::recv(fd, buf, sizeof buf, 0);
  return n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : std::string();
}

int fds_of(pid_t pid) {
  int n = 0;
  std::error_code ec;
  for (auto it = std::filesystem::directory_iterator(fmt::format("/proc/{}/fd", pid), ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
    ++n;
  }
  return n;
}

/// CPU seconds (user + system) the process has used.
double cpu_seconds(pid_t pid) {
  const std::string stat = read_proc_file(fmt::format("/proc/{}/stat", pid)).value_or("");
  auto close = stat.rfind(')');
  if (close == std::string::npos) return 0;
  std::istringstream fields(stat.substr(close + 2));
  std::string f;
  long utime = 0, stime = 0;
  for (int i = 3; i <= 15 && fields >> f; ++i) {
    if (i == 14) utime = std::stol(f);
    if (i == 15) stime = std::stol(f);
  }
  return static_cast<double>(utime + stime) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

std::string hostile_query(const std::filesystem::path& db, const std::string& sql) {
  sqlite3* h = nullptr;
  std::string out;
  if (sqlite3_open_v2(db.c_str(), &h, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK) {
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(h, sql.c_str(), -1, &st, nullptr) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW) {
      const auto* t = sqlite3_column_text(st, 0);
      out = t != nullptr ? reinterpret_cast<const char*>(t) : "";
    } else {
      ADD_FAILURE() << sql << ": " << sqlite3_errmsg(h);
    }
    sqlite3_finalize(st);
  }
  sqlite3_close(h);
  return out;
}

class HostileStore : public ::testing::Test {
 protected:
  /// `n` healthy tcp devices and their probes; the data directory in `data`.
  void start(int n, const std::filesystem::path& data) {
    std::string probes;
    for (int i = 0; i < n; ++i) {
      devices.push_back(std::make_unique<TcpDevice>());
      probes += fmt::format(
          "[[probe]]\nname = \"lane-{:02d}\"\ntype = \"tcp\"\nhost = \"127.0.0.1\"\nport = {}\n"
          "interval = \"200ms\"\ntimeout = \"150ms\"\nfail_after = 2\nrecover_after = 1\n\n",
          i, devices.back()->port());
    }
    config = dir / "storewatch.toml";
    write_file(config,
               fmt::format(R"([store]
id = "store-hostile"

[agent]
data_dir = "{}"
control_socket = "{}"

[sync]
broker = "{}"

{})",
                           data.string(), (dir / "control.sock").string(), broker.uri(), probes));
    db = data / "storewatch.db";
    daemon = std::make_unique<Child>(storewatch_command({"--config", config.string(), "run"}),
                                     dir / "logs");
    ASSERT_TRUE(wait_until([&] {
      auto j = status();
      if (!j.is_object()) return false;
      for (const auto& p : j["probes"]) {
        if (p.value("state", "") != "ok") return false;
      }
      return true;
    })) << logs_of(*daemon);
  }

  RunResult cli(std::vector<std::string> args) {
    std::vector<std::string> full = {"--config", config.string()};
    full.insert(full.end(), args.begin(), args.end());
    return run(storewatch_command(full));
  }
  json status() { return json::parse(cli({"status", "--json"}).out, nullptr, false); }
  json incidents() {
    auto j = json::parse(cli({"incidents", "--all", "--json"}).out, nullptr, false);
    return j.is_array() ? j : json::array();
  }

  TempDir dir;
  Broker broker;
  std::vector<std::unique_ptr<TcpDevice>> devices;
  std::filesystem::path config, db;
  std::unique_ptr<Child> daemon;
  std::vector<int> held;

  void TearDown() override {
    for (int fd : held) ::close(fd);
  }
};

TEST_F(HostileStore, HeldControlConnectionsAreCappedAndCostNoDescriptorsOrCpu) {
  start(6, dir / "data");
  const pid_t pid = daemon->pid();
  const int before = fds_of(pid);
  const double cpu_before = cpu_seconds(pid);
  int refused = 0;
  for (int i = 0; i < 400; ++i) {
    int fd = hold_control(dir / "control.sock");
    ASSERT_GE(fd, 0) << "connect " << i;
    held.push_back(fd);
  }
  // Past the cap, a connection is answered and closed.
  for (int fd : held) {
    if (read_some(fd, 1ms).find("too many control connections") != std::string::npos) ++refused;
  }
  EXPECT_TRUE(wait_until(
      [&] {
        for (int fd : held) {
          if (read_some(fd, 1ms).find("too many control connections") != std::string::npos) {
            ++refused;
          }
        }
        return refused >= 400 - 64;
      },
      10s))
      << refused << " refused";
  EXPECT_LE(fds_of(pid), before + 64 + 8) << "the daemon holds at most 64 control connections";
  // Healthy devices stay healthy while the connections are held.
  std::this_thread::sleep_for(2s);  // probes run every 200 ms: ten rounds
  EXPECT_TRUE(incidents().empty()) << incidents().dump();
  // The loop did not spin: a few percent of a core at most.
  const double used = cpu_seconds(pid) - cpu_before;
  EXPECT_LT(used, 1.5) << "CPU seconds while connections were held";
  // The CLI still gets through once the held ones go.
  for (int fd : held) ::close(fd);
  held.clear();
  EXPECT_TRUE(wait_until([&] { return status().is_object(); }, 15s));
}

TEST_F(HostileStore, ProbesFailingForWantOfDescriptorsAreTheAgentsIncidentNotTheDevices) {
  if (under_emulator()) GTEST_SKIP() << "prlimit --pid on an emulated process";
  start(6, dir / "data");
  const pid_t pid = daemon->pid();
  // Leave the daemon a handful of descriptors, then take them with held
  // control connections: the next checks cannot open their sockets.
  const int open_now = fds_of(pid);
  // The soft limit only: the hard one stays, so it can be raised back.
  auto lower =
      run({"prlimit", fmt::format("--pid={}", pid), fmt::format("--nofile={}:", open_now + 6)});
  ASSERT_EQ(lower.exit_code, 0) << lower.err;
  for (int i = 0; i < 12; ++i) {
    int fd = hold_control(dir / "control.sock");
    if (fd >= 0) held.push_back(fd);
  }
  const double cpu_before = cpu_seconds(pid);
  // Checks run every 200 ms and two failures would open an incident.
  std::this_thread::sleep_for(3s);
  const double spun = cpu_seconds(pid) - cpu_before;
  for (int fd : held) ::close(fd);
  held.clear();
  auto raise = run({"prlimit", fmt::format("--pid={}", pid), "--nofile=4096:"});
  ASSERT_EQ(raise.exit_code, 0) << raise.err;
  EXPECT_LT(spun, 2.0) << "CPU seconds while out of descriptors: the accept loop spins";
  ASSERT_TRUE(wait_until([&] { return status().is_object(); }, 15s)) << logs_of(*daemon);
  bool own = false;
  for (const auto& i : incidents()) {
    EXPECT_EQ(i.value("probe", ""), "storewatch")
        << "a device got an incident for the agent's own want of descriptors: " << i.dump();
    own = own || i.value("summary", "").find("descriptors") != std::string::npos;
  }
  EXPECT_TRUE(own) << "the agent's own incident says it ran out of descriptors: "
                   << incidents().dump() << logs_of(*daemon);
}

TEST_F(HostileStore, AFullDiskIsSeenEverywhereAndAKillNineLosesOnlyWhatWaitedInMemory) {
  SmallDisk disk(24 * 1024 * 1024);
  if (!disk.why_not().empty()) GTEST_SKIP() << disk.why_not();
  start(4, disk.path());
  ASSERT_TRUE(std::filesystem::exists(disk / "storewatch.reserve"));
  disk.fill();
  // Two devices go down while the disk is full: their incidents are written
  // (into the WAL's room, then into the reserve).
  devices[0]->down();
  devices[1]->down();
  ASSERT_TRUE(wait_until([&] {
    int found = 0;
    for (const auto& i : incidents()) {
      const std::string probe = i.value("probe", "");
      found += probe == "lane-00" || probe == "lane-01";
    }
    return found == 2;
  })) << incidents().dump()
      << logs_of(*daemon);

  // Notes until the reserve is gone too: then they wait in memory.
  const auto note = std::string(4000, 'n');
  const auto uid = [&] {
    for (const auto& i : incidents()) {
      if (i.value("probe", "") == "lane-00") return i.value("uid", "");
    }
    return std::string();
  }();
  json writer;
  for (int round = 0; round < 50; ++round) {
    std::string lines;
    for (int i = 0; i < 100; ++i) {
      lines += json{{"v", 1},          {"op", "incident"}, {"action", "note"},
                    {"incident", uid}, {"by", "filler"},   {"note", note}}
                   .dump() +
               "\n";
    }
    int fd = hold_control(dir / "control.sock");
    ASSERT_GE(fd, 0);
    (void)::send(fd, lines.data(), lines.size(), MSG_NOSIGNAL);
    for (int answered = 0; answered < 100;) {
      auto got = read_some(fd, 2000ms);
      if (got.empty()) break;
      answered += static_cast<int>(std::count(got.begin(), got.end(), '\n'));
    }
    ::close(fd);
    writer = status()["agent"]["store_writer"];
    if (writer.value("disk_full", false) && writer.value("backlog", 0) > 0) break;
  }
  ASSERT_TRUE(writer.value("disk_full", false)) << writer.dump();
  const auto human = cli({"status"});
  EXPECT_NE(human.out.find("changes wait in memory, not yet written"), std::string::npos)
      << human.out;
  const auto doctor = cli({"doctor", "--json"});
  auto report = json::parse(doctor.out, nullptr, false);
  ASSERT_TRUE(report.is_object()) << doctor.out << doctor.err;
  for (const auto& c : report["checks"]) {
    if (c.value("name", "") == "daemon") {
      EXPECT_EQ(c.value("status", ""), "fail") << c.dump();
      EXPECT_NE(c.value("summary", "").find("cannot write its database"), std::string::npos);
    }
  }
  // What is committed now must all be there after the kill.
  const std::string committed = hostile_query(db, "SELECT count(*) FROM events");
  // The storage incident went into the reserve, so HQ hears of it.
  const std::string storage_uid =
      hostile_query(db, "SELECT uid FROM incidents WHERE probe = 'storewatch' AND state = 'open'");
  ASSERT_FALSE(storage_uid.empty()) << "the storage incident is not committed";
  ASSERT_EQ(::kill(daemon->pid(), SIGKILL), 0);
  daemon->wait();
  disk.free_space();
  daemon = std::make_unique<Child>(storewatch_command({"--config", config.string(), "run"}),
                                   dir / "logs2");
  ASSERT_TRUE(wait_until([&] { return status().is_object(); })) << logs_of(*daemon);
  EXPECT_EQ(hostile_query(db, "PRAGMA integrity_check"), "ok");
  EXPECT_GE(std::stoll(hostile_query(db, "SELECT count(*) FROM events")), std::stoll(committed))
      << "a kill -9 lost committed events";
  EXPECT_EQ(hostile_query(db,
                          "SELECT count(*) FROM incidents WHERE probe IN ('lane-00', "
                          "'lane-01') AND state = 'open'"),
            "2")
      << "the incidents opened while the disk was full survive the kill";
  // Space is back: the storage incident resolves and the reserve returns.
  EXPECT_TRUE(wait_until(
      [&] {
        return hostile_query(db, fmt::format("SELECT state FROM incidents WHERE uid = '{}'",
                                             storage_uid)) == "resolved" &&
               std::filesystem::exists(disk / "storewatch.reserve");
      },
      30s))
      << logs_of(*daemon);
}

}  // namespace
}  // namespace storewatch::test
