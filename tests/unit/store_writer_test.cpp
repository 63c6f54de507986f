#include "agent/store_writer.h"

#include <boost/asio/io_context.hpp>

#include <gtest/gtest.h>

#include <condition_variable>
#include <mutex>

#include "tests/support/support.h"

namespace storewatch::agent {
namespace {

using namespace std::chrono_literals;

ProbeStateRow probe_row(int i) {
  ProbeStateRow r;
  r.probe = "lane-" + std::to_string(i);
  r.level = CheckLevel::ok;
  return r;
}

WallTime writer_at(int s) {
  return WallTime(std::chrono::milliseconds(1'764'195'483'000 + s * 1000));
}

/// An open incident of `probe`; `key` decides its dedup key (two unresolved
/// rows of one key break the database's unique index).
IncidentChange opened(const std::string& uid, const std::string& probe, const std::string& key,
                      std::size_t summary_bytes = 20) {
  Incident i;
  i.uid = uid;
  i.probe = probe;
  i.dedup_key = "s:" + key + ":down";
  i.condition = "down";
  i.state = IncidentState::open;
  i.t_fault = writer_at(0);
  i.t_detect = writer_at(1);
  i.summary = std::string(summary_bytes, 's');
  return IncidentChange{std::move(i),
                        IncidentEvent{new_uid(writer_at(1)), "opened", writer_at(1), "agent", {}}};
}

/// Holds the writer's thread in a scheduled task until released, so what is
/// submitted meanwhile waits and goes into one batch.
class WriterGate {
 public:
  void hold(StoreWriter& writer) {
    writer.schedule(0ms, [this](Store&) {
      std::unique_lock lock(mutex_);
      held_ = true;
      cv_.notify_all();
      cv_.wait(lock, [this] { return released_; });
      return std::chrono::milliseconds(std::chrono::hours(24));
    });
    std::unique_lock lock(mutex_);
    ASSERT_TRUE(cv_.wait_for(lock, 10s, [this] { return held_; }));
  }
  void release() {
    std::lock_guard lock(mutex_);
    released_ = true;
    cv_.notify_all();
  }
  ~WriterGate() { release(); }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  bool held_ = false;
  bool released_ = false;
};

std::int64_t count_rows(const std::filesystem::path& path, const std::string& sql) {
  auto store = Store::open(path, Store::Mode::read_only);
  if (!store) return -1;
  auto stmt = store->database().prepare(sql);
  if (!stmt) return -1;
  auto row = stmt->step();
  return row && *row ? stmt->int64(0) : -1;
}

TEST(StoreWriterStatsTest, CountsBatchesAndTheChangesInThem) {
  test::TempDir dir;
  boost::asio::io_context io;
  StoreWriter writer(*Store::open(dir / "storewatch.db", Store::Mode::read_write), io, nullptr);
  EXPECT_EQ(writer.stats().batches, 0u);

  // One change, committed alone before the next is submitted.
  writer.submit(probe_row(0));
  ASSERT_TRUE(test::wait_until([&] { return writer.backlog() == 0; }));
  auto s = writer.stats();
  EXPECT_EQ(s.batches, 1u);
  EXPECT_EQ(s.changes, 1u);
  EXPECT_EQ(s.largest_batch, 1u);

  for (int i = 1; i <= 2000; ++i) writer.submit(probe_row(i));
  writer.stop();
  s = writer.stats();
  EXPECT_EQ(s.changes, 2001u);
  // Grouped: far fewer transactions than changes, none larger than what was
  // submitted.
  EXPECT_LT(s.batches, 2001u);
  EXPECT_GT(s.largest_batch, 1u);
  EXPECT_LE(s.largest_batch, 2000u);
}

// Issue 18: a change the database refuses for good (here, a second
// unresolved row of one dedup key) was retried forever and nothing after it
// was ever committed.
TEST(StoreWriterPoisonTest, AChangeThatFailsForGoodIsSetAsideAndEverythingElseCommits) {
  test::TempDir dir;
  const auto path = dir / "storewatch.db";
  boost::asio::io_context io;
  std::vector<DeadLetter> letters;
  StoreWriter writer(*Store::open(path, Store::Mode::read_write), io, nullptr,
                     [&](DeadLetter l) { letters.push_back(std::move(l)); });
  WriterGate gate;
  gate.hold(writer);
  // One batch: good changes around the one that breaks the unique index.
  for (int i = 0; i < 40; ++i) {
    writer.submit(opened("good-" + std::to_string(i), "lane", "lane-" + std::to_string(i)));
    if (i == 17) writer.submit(opened("poison", "lane", "lane-3"));
    writer.submit(probe_row(i));
  }
  const std::uint64_t ticket = writer.ticket();
  gate.release();
  ASSERT_TRUE(test::wait_until([&] { return writer.backlog() == 0; }, 10s))
      << "the writer is wedged: " << writer.health().last_error;
  EXPECT_GE(writer.committed(), ticket);

  EXPECT_EQ(count_rows(path, "SELECT count(*) FROM incidents"), 40);
  EXPECT_EQ(count_rows(path, "SELECT count(*) FROM incidents WHERE uid = 'poison'"), 0);
  EXPECT_EQ(count_rows(path, "SELECT count(*) FROM probe_state"), 40);
  // The events' seqs stay contiguous: the failed attempts left no gap.
  EXPECT_EQ(count_rows(path, "SELECT count(*) FROM events"), 40);
  EXPECT_EQ(count_rows(path, "SELECT max(seq) FROM events"), 40);
  EXPECT_EQ(count_rows(path, "SELECT count(*) FROM dead_letters"), 1);
  EXPECT_EQ(
      count_rows(path,
                 "SELECT count(*) FROM dead_letters WHERE what LIKE '%poison%' AND error LIKE "
                 "'%UNIQUE%' AND json_extract(change, '$.incident.uid') = 'poison'"),
      1);
  EXPECT_EQ(writer.health().dead_letters, 1u);
  EXPECT_TRUE(writer.health().last_error.empty());

  // The writer goes on: later changes commit.
  writer.submit(opened("after", "lane", "lane-after"));
  ASSERT_TRUE(test::wait_until([&] { return writer.backlog() == 0; }, 10s));
  EXPECT_EQ(count_rows(path, "SELECT count(*) FROM incidents WHERE uid = 'after'"), 1);
  io.poll();
  ASSERT_EQ(letters.size(), 1u);
  EXPECT_NE(letters[0].what.find("poison"), std::string::npos);
  EXPECT_NE(letters[0].error.find("UNIQUE"), std::string::npos);
  EXPECT_TRUE(letters[0].kept);
}

TEST(StoreWriterPoisonTest, AWriterThatCannotCommitIsStalledAnIdleOneNever) {
  test::TempDir dir;
  boost::asio::io_context io;
  StoreWriter writer(*Store::open(dir / "storewatch.db", Store::Mode::read_write), io, nullptr);
  EXPECT_FALSE(writer.stalled(std::chrono::steady_clock::now() + 1h, 1ms))
      << "nothing waits: an idle writer is never stalled";
  WriterGate gate;
  gate.hold(writer);  // a call into SQLite that does not return, as far as the writer goes
  writer.submit(probe_row(1));
  EXPECT_TRUE(test::wait_until(
      [&] { return writer.stalled(std::chrono::steady_clock::now(), 100ms); }, 5s));
  gate.release();
  ASSERT_TRUE(test::wait_until([&] { return writer.backlog() == 0; }, 10s));
  EXPECT_FALSE(writer.stalled(std::chrono::steady_clock::now() + 1h, 1ms));
}

TEST(StoreWriterBacklogTest, WhatWaitsKeepsOneVersionOfAProbesStateButEveryIncidentChange) {
  test::TempDir dir;
  const auto path = dir / "storewatch.db";
  boost::asio::io_context io;
  StoreWriter writer(*Store::open(path, Store::Mode::read_write), io, nullptr);
  WriterGate gate;
  gate.hold(writer);
  for (int i = 0; i < 1000; ++i) {
    ProbeStateRow r = probe_row(7);
    r.failures = i;
    writer.submit(r);
    writer.submit(SyncValue{kHqAckedSeq, i % 2 == 0 ? 9 : 3, /*only_if_higher=*/true});
  }
  for (int i = 0; i < 100; ++i) {
    writer.submit(opened("u" + std::to_string(i), "lane", "lane-" + std::to_string(i)));
  }
  EXPECT_EQ(writer.backlog(), 102u) << "one probe state, one sync value, every incident change";
  EXPECT_EQ(writer.health().incident_changes, 100u);
  EXPECT_EQ(writer.health().coalesced, 1998u);
  gate.release();
  ASSERT_TRUE(test::wait_until([&] { return writer.backlog() == 0; }, 10s));
  EXPECT_EQ(count_rows(path, "SELECT failures FROM probe_state WHERE probe = 'lane-7'"), 999);
  EXPECT_EQ(count_rows(path, "SELECT value FROM sync_state WHERE key = 'hq_acked_seq'"), 9);
  EXPECT_EQ(count_rows(path, "SELECT count(*) FROM events"), 100);
  EXPECT_EQ(writer.committed(), writer.ticket());
}

// Issue 18: with the disk full nothing was written (the storage incident
// neither, so HQ never heard of it), the writer waited up to 30 s between
// tries, and a kill -9 lost every change of the window.
TEST(StoreWriterDiskFullTest, AFullDiskIsFirstMetWithTheReserveWhichComesBackWithRoom) {
  test::SmallDisk disk(16 * 1024 * 1024);
  if (!disk.why_not().empty()) GTEST_SKIP() << disk.why_not();
  const auto path = disk / "storewatch.db";
  boost::asio::io_context io;
  StoreWriter writer(*Store::open(path, Store::Mode::read_write), io, nullptr);
  ASSERT_TRUE(std::filesystem::exists(disk / "storewatch.reserve"));
  EXPECT_EQ(std::filesystem::file_size(disk / "storewatch.reserve"),
            static_cast<std::uintmax_t>(StoreWriter::kReserveBytes));
  disk.fill();
  // The 300 changes wait together, as a burst does, and are committed in one
  // batch whatever the machine's speed: written one by one (the writer is
  // slower under ThreadSanitizer), their WAL frames alone outgrow the reserve.
  WriterGate gate;
  gate.hold(writer);
  for (int i = 0; i < 300; ++i) {
    writer.submit(opened("full-" + std::to_string(i), "lane", "lane-" + std::to_string(i), 2000));
  }
  gate.release();
  ASSERT_TRUE(test::wait_until([&] { return writer.backlog() == 0; }, 10s))
      << "written into the reserve: " << writer.health().last_error;
  EXPECT_TRUE(writer.health().reserve_released);
  EXPECT_FALSE(std::filesystem::exists(disk / "storewatch.reserve"));
  EXPECT_EQ(count_rows(path, "SELECT count(*) FROM incidents"), 300);
  disk.free_space();
  ASSERT_TRUE(test::wait_until([&] { return !writer.health().reserve_released; }, 10s));
  EXPECT_TRUE(std::filesystem::exists(disk / "storewatch.reserve"));
}

TEST(StoreWriterDiskFullTest, ChangesWaitWhileTheDiskIsFullAndCommitSoonAfterSpaceReturns) {
  test::SmallDisk disk(16 * 1024 * 1024);
  if (!disk.why_not().empty()) GTEST_SKIP() << disk.why_not();
  const auto path = disk / "storewatch.db";
  boost::asio::io_context io;
  StoreWriter writer(*Store::open(path, Store::Mode::read_write), io, nullptr);
  disk.fill();
  // More than the reserve holds.
  constexpr int kChanges = 400;
  for (int i = 0; i < kChanges; ++i) {
    writer.submit(opened("full-" + std::to_string(i), "lane", "lane-" + std::to_string(i), 10'000));
  }
  ASSERT_TRUE(test::wait_until([&] { return writer.health().disk_full; }, 20s))
      << writer.health().last_error;
  // Let the backoff grow past its first steps.
  ASSERT_TRUE(test::wait_until(
      [&] {
        auto h = writer.health();
        return h.failing_since && std::chrono::steady_clock::now() - *h.failing_since > 2s;
      },
      10s));
  auto h = writer.health();
  EXPECT_GT(h.backlog, 0u);
  EXPECT_EQ(h.incident_changes, h.backlog);
  EXPECT_FALSE(h.last_error.empty());
  EXPECT_EQ(h.dead_letters, 0u) << "a full disk is retried, never dead-lettered";
  EXPECT_FALSE(writer.stalled(std::chrono::steady_clock::now() + 1h, 1ms))
      << "a full disk is not a wedge: a restart would only lose what waits";

  disk.free_space();
  const auto freed = std::chrono::steady_clock::now();
  ASSERT_TRUE(test::wait_until([&] { return writer.backlog() == 0; }, 10s));
  EXPECT_LT(std::chrono::steady_clock::now() - freed, 3s)
      << "the writer tries again as soon as there is space";
  EXPECT_FALSE(writer.health().disk_full);
  EXPECT_TRUE(writer.health().last_error.empty());
  EXPECT_EQ(count_rows(path, "SELECT count(*) FROM incidents"), kChanges);
}

TEST(StoreWriterDiskFullTest, StoppingWithTheDiskFullGivesUpWithinSeconds) {
  test::SmallDisk disk(16 * 1024 * 1024);
  if (!disk.why_not().empty()) GTEST_SKIP() << disk.why_not();
  boost::asio::io_context io;
  StoreWriter writer(*Store::open(disk / "storewatch.db", Store::Mode::read_write), io, nullptr);
  disk.fill();
  for (int i = 0; i < 400; ++i) {
    writer.submit(opened("full-" + std::to_string(i), "lane", "lane-" + std::to_string(i), 20'000));
  }
  ASSERT_TRUE(test::wait_until([&] { return writer.health().disk_full; }, 20s));
  ASSERT_TRUE(test::wait_until(
      [&] {
        auto h = writer.health();
        return h.failing_since && std::chrono::steady_clock::now() - *h.failing_since > 1500ms;
      },
      10s));
  const auto start = std::chrono::steady_clock::now();
  writer.stop();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 8s);
}

}  // namespace
}  // namespace storewatch::agent
