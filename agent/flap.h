#pragma once
/// \file
/// Flap detection (DESIGN §4): the last 21 results of a probe, and the
/// weighted percentage of state changes between them, the newest change
/// weighted most. The 20 changes between 21 results carry weights rising
/// linearly from 0.75 (oldest) to 1.25 (newest), which sum to 20; the
/// percentage is the weight of the changes that happened over 20, so a
/// history shorter than 21 results reads low rather than jumpy.

#include <cstdint>
#include <string>
#include <string_view>

namespace storewatch::agent {

class FlapHistory {
 public:
  static constexpr int kStates = 21;

  /// Records one result (failed or not).
  void push(bool failed);
  /// Weighted percentage of state changes, 0..100.
  double percent() const;
  int size() const { return size_; }

  /// "0110…", oldest first, '1' = failed: how probe_state stores it.
  std::string to_string() const;
  /// Reads to_string(); anything else gives an empty history.
  static FlapHistory parse(std::string_view text);

 private:
  std::uint32_t bits_ = 0;  ///< bit 0 = the newest result
  int size_ = 0;
};

/// Hysteresis: starts at percent >= high, stops at percent <= low.
inline bool next_flapping(bool flapping, double percent, double high, double low) {
  return flapping ? percent > low : percent >= high;
}

}  // namespace storewatch::agent
