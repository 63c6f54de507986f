#pragma once
/// \file
/// A clock tests move by hand.

#include "base/clock.h"

namespace storewatch::test {

class FakeClock final : public Clock {
 public:
  explicit FakeClock(WallTime start = WallTime(std::chrono::milliseconds(1'764'195'483'000)))
      : wall_(start) {}
  SteadyTime steady_now() const override { return steady_; }
  WallTime wall_now() const override { return wall_; }
  bool wall_synced() const override { return synced_; }
  void advance(std::chrono::milliseconds d) {
    steady_ += d;
    wall_ += d;
  }
  /// Moves only the wall clock (NTP stepping it, or an RTC-less boot).
  void jump_wall(std::chrono::milliseconds d) { wall_ += d; }
  void set_synced(bool synced) { synced_ = synced; }

 private:
  SteadyTime steady_{};
  WallTime wall_;
  bool synced_ = true;
};

}  // namespace storewatch::test
