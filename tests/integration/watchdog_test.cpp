// The daemon and systemd's notify protocol, against the real `storewatch run`
// with a NOTIFY_SOCKET the test owns (a Unix datagram socket it binds, as
// systemd's is): READY=1 once the database is open and the probes are
// scheduled, STATUS= lines, WATCHDOG=1 from the event loop only while the
// loop makes progress (a loop blocked by the test hook stops the pings),
// RELOADING=1 then READY=1 on SIGHUP, STOPPING=1 and a clean exit on SIGTERM.
#include <gtest/gtest.h>

#include <sqlite3.h>

#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <atomic>
#include <csignal>
#include <cstring>
#include <memory>
#include <mutex>
#include <thread>

#include "tests/support/support.h"

namespace storewatch::test {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

/// One datagram the daemon sent, one line of it per assignment.
struct Notice {
  Clock::time_point at;
  std::string text;
  bool db_existed = false;  ///< storewatch.db was on disk when it arrived
};

/// systemd's side of sd_notify: a bound datagram socket and a thread that
/// records every message with the time it came.
class NotifySocket {
 public:
  NotifySocket(std::filesystem::path path, std::filesystem::path db)
      : path_(std::move(path)), db_(std::move(db)) {
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd_ < 0) throw std::runtime_error("socket: " + std::string(std::strerror(errno)));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (path_.string().size() >= sizeof addr.sun_path) throw std::runtime_error("path too long");
    std::strcpy(addr.sun_path, path_.c_str());
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      throw std::runtime_error("bind: " + std::string(std::strerror(errno)));
    }
    timeval tv{0, 100 * 1000};  // the reader wakes up to see stop_
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    reader_ = std::thread([this] { read_loop(); });
  }
  ~NotifySocket() {
    stop_ = true;
    reader_.join();
    ::close(fd_);
  }
  NotifySocket(const NotifySocket&) = delete;
  NotifySocket& operator=(const NotifySocket&) = delete;

  const std::filesystem::path& path() const { return path_; }

  std::vector<Notice> all() const {
    std::lock_guard lock(mu_);
    return notices_;
  }
  /// Messages that contain the line `line` (e.g. "READY=1").
  std::vector<Notice> with(const std::string& line) const {
    std::vector<Notice> out;
    for (auto& n : all()) {
      if (("\n" + n.text + "\n").find("\n" + line + "\n") != std::string::npos) out.push_back(n);
    }
    return out;
  }
  /// Times of the WATCHDOG=1 pings at or after `from`.
  std::vector<Clock::time_point> pings(Clock::time_point from = {}) const {
    std::vector<Clock::time_point> out;
    for (auto& n : with("WATCHDOG=1")) {
      if (n.at >= from) out.push_back(n.at);
    }
    return out;
  }

 private:
  void read_loop() {
    char buf[4096];
    while (!stop_) {
      ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) continue;
      Notice notice{Clock::now(), std::string(buf, static_cast<std::size_t>(n)),
                    std::filesystem::exists(db_)};
      std::lock_guard lock(mu_);
      notices_.push_back(std::move(notice));
    }
  }

  std::filesystem::path path_;
  std::filesystem::path db_;
  int fd_ = -1;
  std::atomic<bool> stop_{false};
  std::thread reader_;
  mutable std::mutex mu_;
  std::vector<Notice> notices_;
};

std::chrono::milliseconds longest_gap(const std::vector<Clock::time_point>& t) {
  std::chrono::milliseconds out{0};
  for (std::size_t i = 1; i < t.size(); ++i) {
    out = std::max(out, std::chrono::duration_cast<std::chrono::milliseconds>(t[i] - t[i - 1]));
  }
  return out;
}

constexpr auto kWatchdog = 2000ms;  ///< WATCHDOG_USEC: the daemon pings every half of it
constexpr int kStallSeconds = 4;

class Watchdog : public ::testing::Test {
 protected:
  void SetUp() override {
    config = dir / "storewatch.toml";
    write_file(config,
               fmt::format(R"([store]
id = "store-0042"

[agent]
data_dir = "{}"
control_socket = "{}"

[sync]
broker = "tcp://127.0.0.1:{}"

[[probe]]
name = "lane-01"
type = "exec"
command = ["/bin/true"]
interval = "200ms"
timeout = "2s"

[[probe]]
name = "lane-02"
type = "exec"
command = ["/bin/false"]
interval = "200ms"
timeout = "2s"
fail_after = 2
)",
                           (dir / "data").string(), (dir / "control.sock").string(), free_port()));
    notify = std::make_unique<NotifySocket>(dir / "notify.sock", dir / "data" / "storewatch.db");
    daemon = std::make_unique<Child>(
        storewatch_command({"--config", config.string(), "run"}), dir / "logs",
        std::map<std::string, std::string>{
            {"NOTIFY_SOCKET", notify->path().string()},
            {"WATCHDOG_USEC", std::to_string(std::chrono::microseconds(kWatchdog).count())},
            {"STOREWATCH_TEST_STALL_SECONDS", std::to_string(kStallSeconds)}});
  }

  json status() {
    auto r = run(storewatch_command({"--config", config.string(), "status", "--json"}));
    return json::parse(r.out, nullptr, false);
  }

  TempDir dir;
  std::filesystem::path config;
  std::unique_ptr<NotifySocket> notify;
  std::unique_ptr<Child> daemon;
};

TEST_F(Watchdog, ReadyComesOnceTheDatabaseIsOpenAndTheProbesAreScheduled) {
  ASSERT_TRUE(wait_until([&] { return !notify->with("READY=1").empty(); })) << daemon->err();
  const Notice ready = notify->with("READY=1").front();
  EXPECT_TRUE(ready.db_existed) << "READY=1 before the database was created";
  // READY=1 carries the one-line summary, with both probes scheduled.
  EXPECT_NE(ready.text.find("STATUS=2 probes, "), std::string::npos) << ready.text;
  EXPECT_NE(ready.text.find("open incidents; sync "), std::string::npos) << ready.text;
  // The log says the daemon is running before it says READY (nothing after).
  EXPECT_NE(daemon->err().find("running for store store-0042: 2 probes"), std::string::npos)
      << daemon->err();
  // Just one READY=1 when nothing reloads.
  EXPECT_EQ(notify->with("READY=1").size(), 1u);
  // The control socket answers and the probes run right after.
  json s;
  ASSERT_TRUE(wait_until([&] {
    s = status();
    if (!s.is_object() || s["probes"].size() != 2) return false;
    for (const auto& p : s["probes"]) {
      if (p["last_check"].is_null()) return false;
    }
    return true;
  })) << s.dump()
      << daemon->err();
}

TEST_F(Watchdog, PingsComeWhileTheLoopRunsAndStopWhileItIsStuck) {
  ASSERT_TRUE(wait_until([&] { return !notify->with("READY=1").empty(); })) << daemon->err();
  // A steady stream: at least 5 pings, never kWatchdog apart.
  ASSERT_TRUE(wait_until([&] { return notify->pings().size() >= 5; }, 10s)) << daemon->err();
  const auto steady = notify->pings();
  EXPECT_LT(longest_gap(steady), kWatchdog) << "pings too far apart before the stall";

  // Block the loop (test hook): the pings must stop for the stall, then come back.
  const auto stalled_at = Clock::now();
  ASSERT_EQ(::kill(daemon->pid(), SIGUSR2), 0);
  ASSERT_TRUE(wait_until([&] {
    return daemon->err().find("test hook: the event loop runs again") != std::string::npos;
  })) << daemon->err();
  const auto resumed_at = Clock::now();
  ASSERT_NE(daemon->err().find("test hook: blocking the event loop for 4 s"), std::string::npos);

  // Around the stall: the last ping before it and the first after are at
  // least the stall apart (the ping due during it comes when it ends), past
  // WATCHDOG_USEC, so systemd would have killed a daemon stuck like this.
  ASSERT_TRUE(wait_until([&] { return notify->pings(stalled_at).size() >= 1; }, 10s))
      << daemon->err();
  std::vector<Clock::time_point> around;
  for (auto t : notify->pings()) {
    if (t >= stalled_at - kWatchdog) around.push_back(t);
  }
  const auto gap = longest_gap(around);
  EXPECT_GE(gap, std::chrono::seconds(kStallSeconds) - 100ms) << gap.count() << " ms";
  EXPECT_GT(gap, kWatchdog) << gap.count() << " ms";
  // After the stall the pings are steady again.
  ASSERT_TRUE(wait_until([&] { return notify->pings(resumed_at).size() >= 4; }, 15s))
      << daemon->err();
  EXPECT_LT(longest_gap(notify->pings(resumed_at)), kWatchdog);
  EXPECT_TRUE(daemon->running());
}

// Issue 18: the loop went on pinging while the store writer retried one
// batch forever. Now the pings stop while the writer cannot commit (here,
// another connection holds the database's write lock), so systemd restarts
// a wedged agent, and they come back once it commits again.
TEST_F(Watchdog, PingsStopWhileTheStoreWriterCannotCommit) {
  ASSERT_TRUE(wait_until([&] { return !notify->with("READY=1").empty(); })) << daemon->err();
  ASSERT_TRUE(wait_until([&] { return notify->pings().size() >= 3; }, 10s)) << daemon->err();
  sqlite3* lock = nullptr;
  ASSERT_EQ(sqlite3_open((dir / "data" / "storewatch.db").c_str(), &lock), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(lock, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr), SQLITE_OK)
      << sqlite3_errmsg(lock);
  // A change for the writer: it waits on the lock.
  auto added = run(storewatch_command({"--config", config.string(), "silence", "add", "--match",
                                       "lane-01", "--for", "1h", "--reason", "test"}));
  ASSERT_EQ(added.exit_code, 0) << added.err;
  const auto locked_at = Clock::now();
  ASSERT_TRUE(wait_until(
      [&] {
        return daemon->err().find("watchdog: not pinging systemd: the store writer") !=
               std::string::npos;
      },
      20s))
      << daemon->err();
  const auto withheld_at = Clock::now();
  // No ping for longer than WATCHDOG_USEC: systemd would restart the agent.
  ASSERT_TRUE(wait_until([&] { return Clock::now() - withheld_at > kWatchdog + 500ms; }, 10s));
  EXPECT_TRUE(notify->pings(withheld_at + 100ms).empty())
      << "pinged while the writer could not commit";
  (void)sqlite3_exec(lock, "ROLLBACK", nullptr, nullptr, nullptr);
  sqlite3_close(lock);
  const auto released_at = Clock::now();
  ASSERT_TRUE(wait_until([&] { return notify->pings(released_at).size() >= 2; }, 15s))
      << daemon->err();
  EXPECT_NE(daemon->err().find("watchdog: the store writer commits again"), std::string::npos);
  EXPECT_LT(withheld_at - locked_at, 15s);
}

TEST_F(Watchdog, SighupSaysReloadingThenReady) {
  ASSERT_TRUE(wait_until([&] { return !notify->with("READY=1").empty(); })) << daemon->err();
  ASSERT_EQ(::kill(daemon->pid(), SIGHUP), 0);
  ASSERT_TRUE(wait_until([&] { return notify->with("READY=1").size() == 2; })) << daemon->err();
  auto reloading = notify->with("RELOADING=1");
  ASSERT_EQ(reloading.size(), 1u);
  EXPECT_NE(reloading[0].text.find("MONOTONIC_USEC="), std::string::npos) << reloading[0].text;
  EXPECT_LE(reloading[0].at, notify->with("READY=1")[1].at);
  EXPECT_NE(notify->with("READY=1")[1].text.find("STATUS=2 probes"), std::string::npos);
}

TEST_F(Watchdog, SigtermSaysStoppingAndExitsWithinAFewSeconds) {
  ASSERT_TRUE(wait_until([&] { return !notify->with("READY=1").empty(); })) << daemon->err();
  ASSERT_TRUE(wait_until([&] { return notify->pings().size() >= 2; }, 10s)) << daemon->err();
  const auto t0 = Clock::now();
  const int status = daemon->stop(SIGTERM, 5s);
  const auto took = Clock::now() - t0;
  ASSERT_NE(status, -1) << "did not exit within 5 s of SIGTERM\n" << daemon->err();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status << daemon->err();
  EXPECT_LT(took, 5s);
  auto stopping = notify->with("STOPPING=1");
  ASSERT_EQ(stopping.size(), 1u) << daemon->err();
  // No ping after STOPPING=1: the loop's timers are cancelled.
  EXPECT_TRUE(notify->pings(stopping[0].at + 1ms).empty());
}

}  // namespace
}  // namespace storewatch::test
