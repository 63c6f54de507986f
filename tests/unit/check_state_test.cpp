#include "agent/check_state.h"

#include <gtest/gtest.h>

namespace storewatch::agent {
namespace {

using namespace std::chrono_literals;
using T = CheckState::Transition;

WallTime at(int s) {
  return WallTime(std::chrono::milliseconds(1'000'000'000'000 + s * 1000));
}

TEST(CheckState, HardFailsAfterFailAfterConsecutiveFailures) {
  CheckState c;
  EXPECT_EQ(c.apply(false, at(0), 3, 2), T::none);
  EXPECT_EQ(c.level(), CheckLevel::ok);
  EXPECT_EQ(c.apply(true, at(1), 3, 2), T::none);
  EXPECT_EQ(c.level(), CheckLevel::soft_fail);
  EXPECT_EQ(c.apply(true, at(2), 3, 2), T::none);
  EXPECT_EQ(c.failures(), 2);
  EXPECT_EQ(c.apply(true, at(3), 3, 2), T::hard_failed);
  EXPECT_EQ(c.level(), CheckLevel::hard_fail);
  // t_fault is the first failing result, not the hard transition.
  EXPECT_EQ(c.t_fault(), at(1));
  // Further failures raise nothing new.
  EXPECT_EQ(c.apply(true, at(4), 3, 2), T::none);
}

TEST(CheckState, SoftFailureThatRecoversIsNothing) {
  CheckState c;
  c.apply(true, at(0), 3, 2);
  c.apply(true, at(1), 3, 2);
  EXPECT_EQ(c.apply(false, at(2), 3, 2), T::none);
  EXPECT_EQ(c.level(), CheckLevel::ok);
  EXPECT_EQ(c.failures(), 0);
  EXPECT_FALSE(c.t_fault().has_value());
  // The count starts again: two more failures are not enough.
  c.apply(true, at(3), 3, 2);
  EXPECT_EQ(c.apply(true, at(4), 3, 2), T::none);
  EXPECT_EQ(c.apply(true, at(5), 3, 2), T::hard_failed);
  EXPECT_EQ(c.t_fault(), at(3));
}

TEST(CheckState, RecoversAfterRecoverAfterConsecutiveSuccesses) {
  CheckState c;
  EXPECT_EQ(c.apply(true, at(0), 1, 3), T::hard_failed);
  EXPECT_EQ(c.apply(false, at(1), 1, 3), T::none);
  EXPECT_EQ(c.apply(false, at(2), 1, 3), T::none);
  // A failure in the middle restarts the recovery streak.
  EXPECT_EQ(c.apply(true, at(3), 1, 3), T::none);
  EXPECT_EQ(c.level(), CheckLevel::hard_fail);
  EXPECT_EQ(c.apply(false, at(4), 1, 3), T::none);
  EXPECT_EQ(c.apply(false, at(5), 1, 3), T::none);
  EXPECT_EQ(c.t_first_ok(), at(4));
  EXPECT_EQ(c.apply(false, at(6), 1, 3), T::recovered);
  EXPECT_EQ(c.level(), CheckLevel::ok);
  EXPECT_EQ(c.t_first_ok(), at(4));  // t_restored of the incident
}

TEST(CheckState, FailAfterOneOpensOnTheFirstFailure) {
  CheckState c;
  EXPECT_EQ(c.apply(true, at(0), 1, 1), T::hard_failed);
  EXPECT_EQ(c.apply(false, at(1), 1, 1), T::recovered);
}

TEST(CheckState, AssumedHardFailResolvesOnlyByRecovering) {
  CheckState c(CheckLevel::ok, 0, 5, std::nullopt, std::nullopt);
  c.assume_hard_fail(at(0));
  EXPECT_EQ(c.level(), CheckLevel::hard_fail);
  EXPECT_EQ(c.apply(false, at(1), 3, 2), T::none);
  EXPECT_EQ(c.apply(false, at(2), 3, 2), T::recovered);
}

TEST(CheckState, LevelNamesRoundTrip) {
  for (auto l :
       {CheckLevel::unknown, CheckLevel::ok, CheckLevel::soft_fail, CheckLevel::hard_fail}) {
    EXPECT_EQ(parse_check_level(to_string(l)), l);
  }
  EXPECT_FALSE(parse_check_level("broken").has_value());
}

}  // namespace
}  // namespace storewatch::agent
