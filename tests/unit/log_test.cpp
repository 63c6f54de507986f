// Log records (base/log.h): the sd-daemon priority prefix under journald,
// decided from JOURNAL_STREAM against stderr's device and inode; plain
// timestamped lines elsewhere.
#include "base/log.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <regex>

#include "tests/support/support.h"

namespace storewatch::log {
namespace {

const WallTime kLogNow = *parse_rfc3339("2026-11-27T10:00:00.123Z");

TEST(JournalStream, ParsesDeviceAndInode) {
  auto ids = parse_journal_stream("8:123456");
  ASSERT_TRUE(ids);
  EXPECT_EQ(ids->first, 8u);
  EXPECT_EQ(ids->second, 123456u);
  EXPECT_EQ(parse_journal_stream("18446744073709551615:1")->first, 18446744073709551615ull);
}

TEST(JournalStream, RefusesAnythingElse) {
  for (const char* bad :
       {"", "8", "8:", ":12", "a:b", "8:12x", "-1:2", "8:1:2", " 8:12", "18446744073709551616:1"}) {
    EXPECT_FALSE(parse_journal_stream(bad)) << bad;
  }
}

class JournalStreamFd : public ::testing::Test {
 protected:
  void SetUp() override {
    fd = ::open((dir / "stderr").c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::fstat(fd, &st), 0);
  }
  void TearDown() override { ::close(fd); }
  test::TempDir dir;
  int fd = -1;
  struct stat st {};
};

TEST_F(JournalStreamFd, MatchesTheStreamItNames) {
  const std::string value = std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino);
  EXPECT_TRUE(is_journal_stream(value.c_str(), fd));
}

TEST_F(JournalStreamFd, AnotherStreamIsNotTheJournal) {
  // A child that inherited JOURNAL_STREAM but whose stderr goes to a file.
  const std::string other_ino = std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino + 1);
  const std::string other_dev = std::to_string(st.st_dev + 1) + ":" + std::to_string(st.st_ino);
  EXPECT_FALSE(is_journal_stream(other_ino.c_str(), fd));
  EXPECT_FALSE(is_journal_stream(other_dev.c_str(), fd));
  EXPECT_FALSE(is_journal_stream(nullptr, fd));
  EXPECT_FALSE(is_journal_stream("", fd));
  EXPECT_FALSE(is_journal_stream("garbage", fd));
}

TEST_F(JournalStreamFd, AClosedFdIsNotTheJournal) {
  const std::string value = std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino);
  int copy = ::dup(fd);
  ASSERT_GE(copy, 0);
  ::close(copy);
  EXPECT_FALSE(is_journal_stream(value.c_str(), copy));
}

TEST(FormatRecord, JournaldGetsThePriorityAndNoTimestamp) {
  EXPECT_EQ(format_record(Level::error, "disk gone", true, kLogNow), "<3>disk gone\n");
  EXPECT_EQ(format_record(Level::warn, "sync: offline", true, kLogNow), "<4>sync: offline\n");
  EXPECT_EQ(format_record(Level::info, "running", true, kLogNow), "<6>running\n");
  EXPECT_EQ(format_record(Level::debug, "probe a: ok", true, kLogNow), "<7>probe a: ok\n");
}

TEST(FormatRecord, EveryLineOfAMultiLineMessageKeepsItsPriority) {
  EXPECT_EQ(format_record(Level::warn, "first\nsecond\nthird", true, kLogNow),
            "<4>first\n<4>second\n<4>third\n");
  // A trailing newline makes no empty record.
  EXPECT_EQ(format_record(Level::info, "one\n", true, kLogNow), "<6>one\n");
}

TEST(FormatRecord, PlainLinesCarryTimeAndLevel) {
  EXPECT_EQ(format_record(Level::info, "running", false, kLogNow),
            "2026-11-27T10:00:00.123Z info: running\n");
  EXPECT_EQ(format_record(Level::error, "disk gone\n", false, kLogNow),
            "2026-11-27T10:00:00.123Z error: disk gone\n");
  EXPECT_EQ(format_record(Level::warn, "w", false, kLogNow), "2026-11-27T10:00:00.123Z warn: w\n");
  EXPECT_EQ(format_record(Level::debug, "d", false, kLogNow),
            "2026-11-27T10:00:00.123Z debug: d\n");
}

}  // namespace
}  // namespace storewatch::log
