#include "base/periodic.h"

#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include <chrono>
#include <vector>

namespace storewatch {
namespace {

using std::chrono::milliseconds;
using std::chrono::steady_clock;

/// Runs `io` until it runs out of work, bounded; true when it did.
bool runs_out(boost::asio::io_context& io) {
  io.run_for(std::chrono::seconds(10));
  return io.stopped();
}

TEST(Periodic, RunsEveryIntervalUntilCancelledAndTheLoopThenReturnsByItself) {
  boost::asio::io_context io;
  int runs = 0;
  std::vector<steady_clock::time_point> at;
  const auto started = steady_clock::now();
  Periodic* self = nullptr;
  Periodic every(io.get_executor(), milliseconds(5), [&] {
    at.push_back(steady_clock::now());
    if (++runs == 3) self->cancel();
  });
  self = &every;
  every.start();
  ASSERT_TRUE(runs_out(io));
  EXPECT_EQ(runs, 3);
  ASSERT_EQ(at.size(), 3u);
  EXPECT_GE(at[0] - started, milliseconds(5));
  EXPECT_GE(at[1] - at[0], milliseconds(5));
  EXPECT_GE(at[2] - at[1], milliseconds(5));
}

TEST(Periodic, WaitsTheDelayEachRunReturns) {
  boost::asio::io_context io;
  const std::vector<milliseconds> delays = {milliseconds(1), milliseconds(40), milliseconds(1)};
  std::vector<steady_clock::time_point> at;
  Periodic* self = nullptr;
  Periodic again(io.get_executor(), [&]() -> Periodic::Delay {
    at.push_back(steady_clock::now());
    if (at.size() == delays.size() + 1) {
      self->cancel();
      return milliseconds(0);
    }
    return delays[at.size() - 1];
  });
  self = &again;
  again.start(milliseconds(0));
  ASSERT_TRUE(runs_out(io));
  ASSERT_EQ(at.size(), 4u);
  EXPECT_GE(at[1] - at[0], milliseconds(1));
  EXPECT_GE(at[2] - at[1], milliseconds(40));
  EXPECT_GE(at[3] - at[2], milliseconds(1));
}

TEST(Periodic, ACancelBeforeTheFirstRunLeavesNothingOnTheLoop) {
  boost::asio::io_context io;
  int runs = 0;
  Periodic hourly(io.get_executor(), std::chrono::hours(1), [&] { ++runs; });
  hourly.start();
  boost::asio::post(io, [&] { hourly.cancel(); });
  ASSERT_TRUE(runs_out(io));
  EXPECT_EQ(runs, 0);
  // Cancelling again, or one never started, is harmless.
  hourly.cancel();
  Periodic never(io.get_executor(), std::chrono::hours(1), [&] { ++runs; });
  never.cancel();
}

TEST(Periodic, StartsAgainAfterACancel) {
  boost::asio::io_context io;
  int runs = 0;
  Periodic* self = nullptr;
  Periodic once(io.get_executor(), milliseconds(1), [&] {
    ++runs;
    self->cancel();
  });
  self = &once;
  once.start();
  ASSERT_TRUE(runs_out(io));
  EXPECT_EQ(runs, 1);
  io.restart();
  once.start();
  ASSERT_TRUE(runs_out(io));
  EXPECT_EQ(runs, 2);
}

}  // namespace
}  // namespace storewatch
