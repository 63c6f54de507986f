// The /proc parsers of the system probe (probes/procfs.h).

#include "probes/procfs.h"

#include <gtest/gtest.h>

namespace storewatch::probes::procfs {
namespace {

TEST(Meminfo, ReadsTotalAndAvailable) {
  auto m = parse_meminfo(
      "MemTotal:        16314060 kB\n"
      "MemFree:          1036268 kB\n"
      "MemAvailable:     9876543 kB\n"
      "Buffers:           402332 kB\n"
      "HugePages_Total:       0\n");
  ASSERT_TRUE(m.ok()) << m.error().message;
  EXPECT_EQ(m->total_bytes, 16314060ull * 1024);
  EXPECT_EQ(m->available_bytes, 9876543ull * 1024);
}

TEST(Meminfo, OrderDoesNotMatterAndLastLineNeedsNoNewline) {
  auto m = parse_meminfo("MemAvailable: 10 kB\nMemTotal: 20 kB");
  ASSERT_TRUE(m.ok()) << m.error().message;
  EXPECT_EQ(m->total_bytes, 20480u);
  EXPECT_EQ(m->available_bytes, 10240u);
}

TEST(Meminfo, SaysWhatIsMissingOrBroken) {
  auto no_available = parse_meminfo("MemTotal: 20 kB\nMemFree: 10 kB\n");
  ASSERT_FALSE(no_available.ok());
  EXPECT_NE(no_available.error().message.find("MemAvailable"), std::string::npos);
  EXPECT_FALSE(parse_meminfo("MemAvailable: 10 kB\n").ok());
  EXPECT_FALSE(parse_meminfo("MemTotal: lots kB\nMemAvailable: 1 kB\n").ok());
  EXPECT_FALSE(parse_meminfo("MemTotal: 10 MB\nMemAvailable: 1 kB\n").ok());
  EXPECT_FALSE(parse_meminfo("MemTotal: 0 kB\nMemAvailable: 0 kB\n").ok());
  EXPECT_FALSE(parse_meminfo("MemTotal: 10 kB\nMemAvailable: 11 kB\n").ok());
  EXPECT_FALSE(parse_meminfo("").ok());
  EXPECT_FALSE(parse_meminfo(std::string("\0\xff\n:::", 6)).ok());
}

TEST(Loadavg, ReadsTheThreeAverages) {
  auto l = parse_loadavg("0.52 1.04 2.50 3/812 12345\n");
  ASSERT_TRUE(l.ok()) << l.error().message;
  EXPECT_DOUBLE_EQ(l->load1, 0.52);
  EXPECT_DOUBLE_EQ(l->load5, 1.04);
  EXPECT_DOUBLE_EQ(l->load15, 2.50);
}

TEST(Loadavg, RejectsGarbage) {
  EXPECT_FALSE(parse_loadavg("").ok());
  EXPECT_FALSE(parse_loadavg("0.5 1.0\n").ok());
  EXPECT_FALSE(parse_loadavg("abc def ghi").ok());
  EXPECT_FALSE(parse_loadavg("-1 0 0 1/1 1").ok());
  EXPECT_FALSE(parse_loadavg("nan 0 0 1/1 1").ok());
}

}  // namespace
}  // namespace storewatch::probes::procfs
