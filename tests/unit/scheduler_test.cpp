// The scheduler and the tcp probe against real loopback sockets.

#include "agent/scheduler.h"

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <fmt/format.h>

#include <set>

#include "agent/status.h"
#include "probes/registry.h"
#include "tests/support/support.h"
#include "tests/support/tcp_device.h"

namespace storewatch::agent {
namespace {

using namespace std::chrono_literals;
using probes::ProbeResult;
using probes::ProbeStatus;

config::ProbeConfig tcp_probe(const std::string& name, int port, Millis interval = 100ms,
                              Millis timeout = 300ms) {
  config::ProbeConfig p;
  p.name = name;
  p.type = "tcp";
  p.interval = interval;
  p.timeout = timeout;
  p.options["host"] = std::string("127.0.0.1");
  p.options["port"] = std::int64_t{port};
  return p;
}

/// A port where connect() hangs: a listener whose accept queue is full, so
/// the kernel drops further SYNs (never answered, never refused).
class BlackHole {
 public:
  BlackHole() {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    ::listen(fd_, 0);
    socklen_t len = sizeof addr;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    // Fill the queue with connections nobody accepts.
    for (int i = 0; i < 4; ++i) {
      int c = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
      ::connect(c, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
      fillers_.push_back(c);
    }
  }
  ~BlackHole() {
    for (int c : fillers_) ::close(c);
    ::close(fd_);
  }
  int port() const { return port_; }

 private:
  int fd_;
  int port_;
  std::vector<int> fillers_;
};

/// Runs `io` until `done` or a 10 s deadline.
bool run_until(boost::asio::io_context& io, const std::function<bool()>& done) {
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (!done() && std::chrono::steady_clock::now() < deadline) {
    io.run_for(10ms);
  }
  return done();
}

TEST(TcpProbe, ReportsConnectTimeAgainstAListener) {
  test::TcpDevice device;
  boost::asio::io_context io;
  auto probe = probes::create(tcp_probe("dev", device.port()), io.get_executor());
  std::optional<ProbeResult> got;
  probe->start([&](ProbeResult r) { got = std::move(r); });
  ASSERT_TRUE(run_until(io, [&] { return got.has_value(); }));
  EXPECT_EQ(got->status, ProbeStatus::ok) << got->message;
  EXPECT_GT(got->latency.count(), 0);
  EXPECT_TRUE(got->metrics.contains("connect_ms"));
}

TEST(TcpProbe, FailsWhenTheDeviceRefuses) {
  int port;
  {
    test::TcpDevice device;
    port = device.port();
  }
  boost::asio::io_context io;
  auto probe = probes::create(tcp_probe("dev", port), io.get_executor());
  std::optional<ProbeResult> got;
  probe->start([&](ProbeResult r) { got = std::move(r); });
  ASSERT_TRUE(run_until(io, [&] { return got.has_value(); }));
  EXPECT_EQ(got->status, ProbeStatus::fail);
  EXPECT_NE(got->message.find("refused"), std::string::npos) << got->message;
}

TEST(TcpProbe, ResolvesHostNames) {
  test::TcpDevice device;
  boost::asio::io_context io;
  auto cfg = tcp_probe("dev", device.port());
  cfg.options["host"] = std::string("localhost");
  auto probe = probes::create(cfg, io.get_executor());
  std::optional<ProbeResult> got;
  probe->start([&](ProbeResult r) { got = std::move(r); });
  ASSERT_TRUE(run_until(io, [&] { return got.has_value(); }));
  // localhost may resolve to ::1 first; the probe tries every address.
  EXPECT_EQ(got->status, ProbeStatus::ok) << got->message;
}

TEST(Scheduler, OffsetsAreStableAndInsideTheInterval) {
  for (const char* name : {"lane-01-pos", "lane-02-pos", "printer-01", "x"}) {
    auto a = Scheduler::offset_of(name, 15s);
    EXPECT_EQ(a, Scheduler::offset_of(name, 15s));
    EXPECT_GE(a.count(), 0);
    EXPECT_LT(a, 15s);
  }
  EXPECT_NE(Scheduler::offset_of("lane-01-pos", 15s), Scheduler::offset_of("lane-02-pos", 15s));
}

TEST(Scheduler, OffsetsComeInGrainsSoProbesShareWakeUps) {
  EXPECT_EQ(Scheduler::slot_grain(10s), Scheduler::kMaxSlotGrain);
  EXPECT_EQ(Scheduler::slot_grain(1s), 62ms);
  EXPECT_EQ(Scheduler::slot_grain(10ms), 1ms);
  std::set<std::int64_t> distinct;
  for (int i = 0; i < 1000; ++i) {
    auto o = Scheduler::offset_of(fmt::format("p{:04d}-tcp", i), 10s);
    EXPECT_EQ(o % Scheduler::kMaxSlotGrain, 0ms);
    EXPECT_LT(o, 10s);
    distinct.insert(o.count());
  }
  // 1,000 probes every 10 s: 40 grains, each used, none holding most probes.
  EXPECT_EQ(distinct.size(), 40u);
  // Short intervals keep a fine spread.
  EXPECT_LT(Scheduler::offset_of("x", 100ms), 100ms);
}

TEST(Scheduler, FirstChecksComeWithinTheFirstRoundWindow) {
  for (int i = 0; i < 300; ++i) {
    const std::string name = fmt::format("probe-{}", i);
    for (Millis interval : {Millis(100), Millis(1000), Millis(30'000), Millis(3'600'000)}) {
      const auto first = Scheduler::first_offset_of(name, interval);
      EXPECT_LT(first, Scheduler::kFirstRoundWindow) << name;
      EXPECT_LT(first, interval) << name;
      EXPECT_EQ(first % Scheduler::slot_grain(interval), Millis(0)) << name;  // whole grains
      if (interval <= Scheduler::kFirstRoundWindow) {
        EXPECT_EQ(first, Scheduler::offset_of(name, interval)) << name;
      }
    }
  }
}

TEST(Scheduler, TheFirstRoundStartsAtOnceWhateverTheInterval) {
  // A probe every hour whose slot on the grid is more than a minute away
  // (like the demo's gateway-disk every 30 s, which waited up to 30 s).
  test::TcpDevice device;
  config::Config cfg;
  ASSERT_GT(Scheduler::offset_of("gateway-disk", 1h), 1min);
  cfg.probes.push_back(tcp_probe("gateway-disk", device.port(), 1h));
  cfg.probes.push_back(tcp_probe("lane-01-pos", device.port(), 1h));
  boost::asio::io_context io;
  std::map<std::string, int> runs;
  Scheduler s(io, std::make_shared<const config::Config>(cfg),
              [&](const std::string& name, const ProbeResult&) { ++runs[name]; });
  const auto started = std::chrono::steady_clock::now();
  s.start();
  ASSERT_TRUE(run_until(io, [&] { return runs.size() == 2; }));
  const auto took = std::chrono::steady_clock::now() - started;
  EXPECT_LT(took, Scheduler::kFirstRoundWindow + 2s);  // not a minute or more
  // Both were scheduled checks, and neither runs again right after.
  EXPECT_EQ(s.schedule_stats().checks, 2u);
  io.run_for(300ms);
  EXPECT_EQ(runs["gateway-disk"], 1);
  EXPECT_EQ(runs["lane-01-pos"], 1);
  s.stop();
}

TEST(Scheduler, EnforcesTheTimeoutOfAHungDevice) {
  BlackHole hole;
  config::Config cfg;
  cfg.probes.push_back(tcp_probe("hung", hole.port(), 1s, 150ms));
  boost::asio::io_context io;
  std::vector<ProbeResult> results;
  Scheduler s(io, std::make_shared<const config::Config>(cfg),
              [&](const std::string&, const ProbeResult& r) { results.push_back(r); });
  s.start();
  ASSERT_TRUE(s.run_now("hung"));
  ASSERT_TRUE(run_until(io, [&] { return !results.empty(); }));
  EXPECT_EQ(results[0].status, ProbeStatus::fail);
  EXPECT_NE(results[0].message.find("timed out after 150ms"), std::string::npos)
      << results[0].message;
  EXPECT_EQ(s.running(), 0);
  s.stop();
}

TEST(Scheduler, AHungDeviceDoesNotDelayAnother) {
  BlackHole hole;
  test::TcpDevice device;
  config::Config cfg;
  cfg.probes.push_back(tcp_probe("hung", hole.port(), 10s, 5s));
  cfg.probes.push_back(tcp_probe("fine", device.port(), 10s, 5s));
  boost::asio::io_context io;
  std::vector<std::string> order;
  Scheduler s(io, std::make_shared<const config::Config>(cfg),
              [&](const std::string& name, const ProbeResult&) { order.push_back(name); });
  // Not started: only these two checks run (a first round would add its own).
  s.run_now("hung");
  s.run_now("fine");
  ASSERT_TRUE(run_until(io, [&] { return !order.empty(); }));
  EXPECT_EQ(order[0], "fine");
  EXPECT_EQ(s.running(), 1);  // the hung one is still waiting for its timeout
  s.stop();
  EXPECT_EQ(s.running(), 0);
}

TEST(Scheduler, TheConcurrencyCapQueuesChecks) {
  BlackHole hole;
  test::TcpDevice device;
  config::Config cfg;
  cfg.agent.max_concurrent_checks = 1;
  cfg.probes.push_back(tcp_probe("hung", hole.port(), 10s, 200ms));
  cfg.probes.push_back(tcp_probe("fine", device.port(), 10s, 5s));
  boost::asio::io_context io;
  std::vector<std::string> order;
  Scheduler s(io, std::make_shared<const config::Config>(cfg),
              [&](const std::string& name, const ProbeResult&) { order.push_back(name); });
  s.start();
  s.run_now("hung");
  s.run_now("fine");  // waits for the only slot
  EXPECT_EQ(s.running(), 1);
  ASSERT_TRUE(run_until(io, [&] { return order.size() == 2; }));
  EXPECT_EQ(order[0], "hung");
  EXPECT_EQ(order[1], "fine");
  s.stop();
}

TEST(Scheduler, RunsEveryProbeOnItsInterval) {
  test::TcpDevice device;
  config::Config cfg;
  cfg.probes.push_back(tcp_probe("a", device.port(), 100ms));
  cfg.probes.push_back(tcp_probe("b", device.port(), 100ms));
  boost::asio::io_context io;
  std::map<std::string, int> runs;
  Scheduler s(io, std::make_shared<const config::Config>(cfg),
              [&](const std::string& name, const ProbeResult& r) {
                EXPECT_EQ(r.status, ProbeStatus::ok) << r.message;
                ++runs[name];
              });
  s.start();
  ASSERT_TRUE(run_until(io, [&] { return runs["a"] >= 3 && runs["b"] >= 3; }));
  s.stop();
  EXPECT_FALSE(s.run_now("nope"));
}

TEST(LatenessRecorder, PercentilesAndMaxOfKnownValues) {
  LatenessRecorder r;
  EXPECT_EQ(r.stats().checks, 0u);
  EXPECT_EQ(r.stats().window, 0u);
  EXPECT_EQ(r.stats().p99.count(), 0);
  // 100 checks, 1..100 ms late, in a scrambled order.
  for (int i = 0; i < 100; ++i) r.record(std::chrono::milliseconds((i * 37) % 100 + 1));
  auto s = r.stats();
  EXPECT_EQ(s.checks, 100u);
  EXPECT_EQ(s.window, 100u);
  EXPECT_EQ(s.p50, 50ms);
  EXPECT_EQ(s.p99, 99ms);
  EXPECT_EQ(s.max, 100ms);
}

TEST(LatenessRecorder, EarlyTimersCountAsOnTime) {
  LatenessRecorder r;
  r.record(std::chrono::microseconds(-300));
  EXPECT_EQ(r.stats().max.count(), 0);
  EXPECT_EQ(r.stats().p50.count(), 0);
}

TEST(LatenessRecorder, TheWindowIsBoundedAndTheMaxIsForever) {
  LatenessRecorder r;
  r.record(5s);  // soon overwritten in the window, but still the max
  const std::size_t n = LatenessRecorder::kWindow + 10;
  for (std::size_t i = 0; i < n; ++i) r.record(1ms);
  r.skipped();
  r.queued();
  auto s = r.stats();
  EXPECT_EQ(s.checks, n + 1);
  EXPECT_EQ(s.window, LatenessRecorder::kWindow);
  EXPECT_EQ(s.p99, 1ms);
  EXPECT_EQ(s.max, 5s);
  EXPECT_EQ(s.skipped, 1u);
  EXPECT_EQ(s.queued, 1u);
}

TEST(LatenessRecorder, StatusJsonHasTheScheduleFields) {
  LatenessRecorder r;
  r.record(std::chrono::microseconds(1500));
  auto j = schedule_json(r.stats());
  EXPECT_EQ(j["checks"], 1);
  EXPECT_DOUBLE_EQ(j["late_p50_ms"].get<double>(), 1.5);
  EXPECT_DOUBLE_EQ(j["late_p99_ms"].get<double>(), 1.5);
  EXPECT_DOUBLE_EQ(j["late_max_ms"].get<double>(), 1.5);
  for (const char* k : {"skipped", "queued", "window"}) EXPECT_TRUE(j.contains(k)) << k;
}

TEST(Scheduler, RecordsTheLatenessOfEveryScheduledCheck) {
  test::TcpDevice device;
  config::Config cfg;
  cfg.probes.push_back(tcp_probe("a", device.port(), 100ms));
  cfg.probes.push_back(tcp_probe("b", device.port(), 100ms));
  boost::asio::io_context io;
  int results = 0;
  Scheduler s(io, std::make_shared<const config::Config>(cfg),
              [&](const std::string&, const ProbeResult&) { ++results; });
  EXPECT_EQ(s.schedule_stats().checks, 0u);
  s.start();
  ASSERT_TRUE(run_until(io, [&] { return results >= 6; }));
  s.stop();
  auto st = s.schedule_stats();
  // Every result came from a scheduled check (one may have begun and been
  // cancelled by stop()).
  EXPECT_GE(st.checks, 6u);
  EXPECT_LE(st.checks, static_cast<std::uint64_t>(results) + 2);
  EXPECT_EQ(st.window, st.checks);
  EXPECT_GE(st.p50.count(), 0);
  EXPECT_LE(st.p50, st.p99);
  EXPECT_LE(st.p99, st.max);
  EXPECT_LT(st.max, 10s);  // sane: bounded by the test's own deadline
  EXPECT_EQ(st.queued, 0u);
}

TEST(Scheduler, RunNowIsNotScheduledSoHasNoLateness) {
  test::TcpDevice device;
  config::Config cfg;
  cfg.probes.push_back(tcp_probe("manual", device.port(), 1h));
  boost::asio::io_context io;
  int results = 0;
  Scheduler s(io, std::make_shared<const config::Config>(cfg),
              [&](const std::string&, const ProbeResult&) { ++results; });
  // Not started, so no scheduled check (start() would run a first round).
  ASSERT_TRUE(s.run_now("manual"));
  ASSERT_TRUE(run_until(io, [&] { return results == 1; }));
  EXPECT_EQ(s.schedule_stats().checks, 0u);
  s.stop();
}

TEST(Scheduler, LatenessIncludesTheWaitForTheConcurrencyCap) {
  BlackHole hole;
  test::TcpDevice device;
  config::Config cfg;
  cfg.agent.max_concurrent_checks = 1;
  cfg.probes.push_back(tcp_probe("hung", hole.port(), 1h, 300ms));
  cfg.probes.push_back(tcp_probe("fine", device.port(), 100ms, 5s));
  boost::asio::io_context io;
  std::vector<std::string> order;
  Scheduler s(io, std::make_shared<const config::Config>(cfg),
              [&](const std::string& name, const ProbeResult&) { order.push_back(name); });
  s.start();
  // "hung" holds the only slot for its 300 ms timeout (its own first-round
  // check, due meanwhile, is skipped); "fine"'s first slot comes within
  // 100 ms of start, so it waits at least 200 ms for the cap.
  s.run_now("hung");
  ASSERT_TRUE(run_until(io, [&] { return order.size() >= 2; }));
  s.stop();
  EXPECT_EQ(order[0], "hung");
  EXPECT_EQ(order[1], "fine");
  auto st = s.schedule_stats();
  EXPECT_GE(st.queued, 1u);
  EXPECT_GE(st.checks, 1u);
  EXPECT_GE(st.max, 200ms);  // a lower bound: a slow machine only makes it larger
}

}  // namespace
}  // namespace storewatch::agent
