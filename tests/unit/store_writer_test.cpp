#include "agent/store_writer.h"

#include <boost/asio/io_context.hpp>

#include <gtest/gtest.h>

#include "tests/support/support.h"

namespace storewatch::agent {
namespace {

ProbeStateRow probe_row(int i) {
  ProbeStateRow r;
  r.probe = "lane-" + std::to_string(i);
  r.level = CheckLevel::ok;
  return r;
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

}  // namespace
}  // namespace storewatch::agent
