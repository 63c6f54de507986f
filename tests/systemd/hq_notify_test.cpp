// `storewatch hq run` under Type=notify: READY=1 once its database is open
// and ingest has started, WATCHDOG=1 from its loop while WatchdogSec= is set,
// STOPPING=1 on SIGTERM, then a clean exit. The notifications go to a
// NOTIFY_SOCKET the test owns; HQ talks to a real mosquitto.
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <fmt/format.h>

#include <array>
#include <csignal>
#include <cstring>
#include <string>
#include <vector>

#include "tests/support/pg_cluster.h"
#include "tests/support/support.h"

namespace storewatch::test {
namespace {

using namespace std::chrono_literals;

/// A bound AF_UNIX datagram socket, as systemd's notify socket is.
class NotifySocket {
 public:
  explicit NotifySocket(std::filesystem::path path) : path_(std::move(path)) {
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path_.c_str(), sizeof addr.sun_path - 1);
    if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      throw std::runtime_error("cannot bind " + path_.string() + ": " + std::strerror(errno));
    }
  }
  ~NotifySocket() { ::close(fd_); }
  NotifySocket(const NotifySocket&) = delete;
  NotifySocket& operator=(const NotifySocket&) = delete;

  const std::filesystem::path& path() const { return path_; }

  /// Every datagram that has arrived, appended to messages(); bounded per call.
  void drain() {
    std::array<char, 4096> buf{};
    for (int i = 0; i < 1000; ++i) {
      const ssize_t n = ::recv(fd_, buf.data(), buf.size(), 0);
      if (n < 0) return;
      messages_.emplace_back(buf.data(), static_cast<std::size_t>(n));
    }
  }
  const std::vector<std::string>& messages() const { return messages_; }

  /// How many messages so far have a line equal to `line`.
  int count(const std::string& line) const {
    int n = 0;
    for (const auto& m : messages_) {
      std::size_t start = 0;
      while (start <= m.size()) {
        std::size_t end = m.find('\n', start);
        if (end == std::string::npos) end = m.size();
        if (m.compare(start, end - start, line) == 0) {
          ++n;
          break;
        }
        start = end + 1;
      }
    }
    return n;
  }

 private:
  std::filesystem::path path_;
  int fd_ = -1;
  std::vector<std::string> messages_;
};

TEST(HqNotify, ReadyWatchdogAndStopping) {
  TempDir dir;
  Broker broker;
  const auto config = dir / "hq.toml";
  const auto database = dir / "hq" / "hq.db";
  write_file(config, fmt::format("[hq]\nbroker = \"{}\"\ndatabase = \"{}\"\n", broker.uri(),
                                 database.string()));
  NotifySocket notify(dir / "notify.sock");

  // WatchdogSec=400ms: a ping every 200 ms while the loop runs.
  Child hq(storewatch_command({"--config", config.string(), "hq", "run"}), dir / "logs",
           {{"NOTIFY_SOCKET", notify.path().string()}, {"WATCHDOG_USEC", "400000"}});

  bool database_at_ready = false;
  ASSERT_TRUE(wait_until([&] {
    notify.drain();
    if (notify.count("READY=1") == 0) return false;
    database_at_ready = std::filesystem::exists(database);
    return true;
  })) << hq.err();
  EXPECT_TRUE(database_at_ready) << "READY=1 before the database was open";
  EXPECT_EQ(notify.count("STOPPING=1"), 0);
  bool status = false;
  for (const auto& m : notify.messages()) {
    status = status || m.find("STATUS=storing into " + database.string()) != std::string::npos;
  }
  EXPECT_TRUE(status) << "no STATUS= line naming the database with READY=1";

  const int before = notify.count("WATCHDOG=1");
  EXPECT_TRUE(wait_until(
      [&] {
        notify.drain();
        return notify.count("WATCHDOG=1") >= before + 3;
      },
      10s))
      << "watchdog pings: " << notify.count("WATCHDOG=1");

  EXPECT_EQ(hq.stop(SIGTERM), 0) << hq.err();
  notify.drain();
  EXPECT_EQ(notify.count("STOPPING=1"), 1) << hq.err();
}

TEST(HqNotify, NoWatchdogPingsWithoutWatchdogSec) {
  TempDir dir;
  Broker broker;
  const auto config = dir / "hq.toml";
  write_file(config, fmt::format("[hq]\nbroker = \"{}\"\ndatabase = \"{}\"\n", broker.uri(),
                                 (dir / "hq.db").string()));
  NotifySocket notify(dir / "notify.sock");
  Child hq(storewatch_command({"--config", config.string(), "hq", "run"}), dir / "logs",
           {{"NOTIFY_SOCKET", notify.path().string()}});
  ASSERT_TRUE(wait_until([&] {
    notify.drain();
    return notify.count("READY=1") == 1;
  })) << hq.err();
  // Bounded: long enough for several pings at the 200 ms of the test above.
  wait_until(
      [&] {
        notify.drain();
        return notify.count("WATCHDOG=1") > 0;
      },
      1s);
  EXPECT_EQ(notify.count("WATCHDOG=1"), 0);
  EXPECT_EQ(hq.stop(SIGTERM), 0) << hq.err();
}

#ifdef STOREWATCH_HAVE_POSTGRESQL
// HQ on PostgreSQL whose server is not up when HQ starts (a reboot of both,
// a failover): HQ waits for it with backoff, not READY meanwhile and saying
// why, and becomes READY once it can store; SIGTERM while it waits is a
// clean stop.
TEST(HqNotify, NotReadyUntilPostgresqlAnswers) {
  if (auto why = PgCluster::unavailable(); !why.empty()) GTEST_SKIP() << why;
  TempDir dir;
  Broker broker;
  PgCluster cluster;
  const std::string uri = cluster.create_database("hq");
  cluster.stop("fast");
  const auto config = dir / "hq.toml";
  write_file(config, fmt::format("[hq]\nbroker = \"{}\"\ndatabase = \"{}\"\n", broker.uri(), uri));
  NotifySocket notify(dir / "notify.sock");
  Child hq(storewatch_command({"--config", config.string(), "hq", "run"}), dir / "logs",
           {{"NOTIFY_SOCKET", notify.path().string()}});

  ASSERT_TRUE(wait_until(
      [&] {
        notify.drain();
        for (const auto& m : notify.messages()) {
          if (m.find("STATUS=waiting for PostgreSQL") != std::string::npos) return true;
        }
        return false;
      },
      15s))
      << hq.err();
  EXPECT_TRUE(wait_until(
      [&] { return hq.err().find("not ready, trying again") != std::string::npos; }, 10s))
      << hq.err();
  EXPECT_EQ(notify.count("READY=1"), 0);
  EXPECT_TRUE(hq.running());

  cluster.start();
  ASSERT_TRUE(wait_until(
      [&] {
        notify.drain();
        return notify.count("READY=1") == 1;
      },
      40s))
      << hq.err();
  EXPECT_NE(hq.err().find("reached postgresql://"), std::string::npos) << hq.err();
  // It recorded itself as it became ready (`hq workers`).
  EXPECT_EQ(cluster.sql("hq", "SELECT count(*) FROM workers"), "1");
  EXPECT_EQ(hq.stop(SIGTERM), 0) << hq.err();
}

TEST(HqNotify, SigtermWhileWaitingForPostgresqlIsACleanStop) {
  if (auto why = PgCluster::unavailable(); !why.empty()) GTEST_SKIP() << why;
  TempDir dir;
  Broker broker;
  const auto config = dir / "hq.toml";
  // Nothing listens there.
  write_file(config,
             fmt::format("[hq]\nbroker = \"{}\"\ndatabase = \"postgresql://hq@127.0.0.1:{}/hq\"\n",
                         broker.uri(), free_port()));
  NotifySocket notify(dir / "notify.sock");
  Child hq(storewatch_command({"--config", config.string(), "hq", "run"}), dir / "logs",
           {{"NOTIFY_SOCKET", notify.path().string()}});
  ASSERT_TRUE(wait_until(
      [&] { return hq.err().find("not ready, trying again") != std::string::npos; }, 15s))
      << hq.err();
  EXPECT_EQ(hq.stop(SIGTERM, 5s), 0) << hq.err();
  notify.drain();
  EXPECT_EQ(notify.count("READY=1"), 0);
}
#endif

}  // namespace
}  // namespace storewatch::test
