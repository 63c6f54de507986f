#include "db/checkpoint.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "tests/support/support.h"

namespace storewatch::db {
namespace {

class CheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto opened = Database::open(path, Database::Mode::read_write);
    ASSERT_TRUE(opened) << opened.error().message;
    db.emplace(std::move(*opened));
    ASSERT_TRUE(db->exec("PRAGMA journal_mode=WAL"));
    ASSERT_TRUE(db->exec("PRAGMA synchronous=FULL"));
    ASSERT_TRUE(db->exec("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT NOT NULL)"));
  }

  /// `n` transactions of a few pages each.
  void write(int n) {
    auto insert = db->prepare("INSERT INTO t (body) VALUES (?1)");
    ASSERT_TRUE(insert);
    const std::string body(3000, 'x');
    for (int i = 0; i < n; ++i) {
      auto tx = Transaction::begin(*db);
      ASSERT_TRUE(tx);
      for (int k = 0; k < 4; ++k) ASSERT_TRUE(insert->bind(1, body).run());
      ASSERT_TRUE(tx->commit());
    }
  }

  std::uintmax_t wal_bytes() const { return std::filesystem::file_size(path.string() + "-wal"); }

  std::int64_t scalar(const char* sql) {
    auto st = db->prepare(sql);
    EXPECT_TRUE(st && st->step().value_or(false));
    return st->int64(0);
  }

  test::TempDir dir;
  std::filesystem::path path = dir / "t.db";
  std::optional<Database> db;
};

TEST_F(CheckpointTest, TheThreadCheckpointsAndTheWalStaysBounded) {
  auto c = BackgroundCheckpoint::start(*db, 50, 400);
  ASSERT_TRUE(c) << c.error().message;
  write(400);  // about 2,400 WAL frames: six times the limit
  ASSERT_TRUE(test::wait_until([&] { return (*c)->stats().background >= 1; }));
  // Under a writer that never pauses the thread cannot finish a checkpoint
  // before the next commit, so the WAL only starts afresh when the writer
  // checkpoints the rest itself at the limit: bounded by it, not by the
  // pages written.
  EXPECT_LT(wal_bytes(), 600u * 4096u);
  c->reset();
  EXPECT_EQ(scalar("SELECT count(*) FROM t"), 1600);
  auto check = db->prepare("PRAGMA integrity_check");
  ASSERT_TRUE(check && check->step().value_or(false));
  EXPECT_EQ(check->text(0), "ok");
}

TEST_F(CheckpointTest, TheWriterCheckpointsItselfPastTheLimit) {
  // A threshold the thread never reaches: only the limit bounds the WAL.
  auto c = BackgroundCheckpoint::start(*db, 1'000'000, 100);
  ASSERT_TRUE(c) << c.error().message;
  write(200);
  EXPECT_GE((*c)->stats().inline_, 1u);
  EXPECT_EQ((*c)->stats().background, 0u);
  EXPECT_LT(wal_bytes(), 200u * 4096u);
  c->reset();
  EXPECT_EQ(scalar("SELECT count(*) FROM t"), 800);
}

TEST_F(CheckpointTest, AfterItTheWriterCheckpointsAsBefore) {
  {
    auto c = BackgroundCheckpoint::start(*db, 50, 1'000'000);
    ASSERT_TRUE(c);
  }
  // SQLite's own automatic checkpoint is back, at the threshold given: with
  // no checkpoint at all the WAL would hold all 1,600 pages.
  write(400);
  EXPECT_LT(wal_bytes(), 600u * 4096u);
}

}  // namespace
}  // namespace storewatch::db
