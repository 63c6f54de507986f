#pragma once
/// \file
/// A clock tests move by hand.

#include "config/clock.h"

namespace storewatch::test {

class FakeClock final : public Clock {
 public:
  explicit FakeClock(WallTime start = WallTime(std::chrono::milliseconds(1'764'195'483'000)))
      : wall_(start) {}
  SteadyTime steady_now() const override { return steady_; }
  WallTime wall_now() const override { return wall_; }
  void advance(std::chrono::milliseconds d) {
    steady_ += d;
    wall_ += d;
  }

 private:
  SteadyTime steady_{};
  WallTime wall_;
};

}  // namespace storewatch::test
