#pragma once
/// \file
/// Time as storewatch uses it: durations on the monotonic clock, wall-clock
/// instants in UTC. A Clock is injected wherever logic depends on time so
/// tests can drive it instead of sleeping.

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace storewatch {

using SteadyTime = std::chrono::steady_clock::time_point;
using WallTime = std::chrono::sys_time<std::chrono::milliseconds>;

/// The source of both clocks.
class Clock {
 public:
  virtual ~Clock() = default;
  virtual SteadyTime steady_now() const = 0;
  virtual WallTime wall_now() const = 0;
  /// Whether the wall clock is synchronised (NTP); events recorded before it
  /// is say so, since gateways without a real-time clock jump at boot.
  virtual bool wall_synced() const { return true; }
};

/// The real clocks.
class SystemClock final : public Clock {
 public:
  SteadyTime steady_now() const override { return std::chrono::steady_clock::now(); }
  WallTime wall_now() const override {
    return std::chrono::floor<std::chrono::milliseconds>(std::chrono::system_clock::now());
  }
  /// The kernel's view (adjtimex: not TIME_ERROR), re-read at most every 10 s.
  bool wall_synced() const override;

 private:
  mutable std::optional<SteadyTime> synced_checked_;
  mutable bool synced_ = true;
};

/// RFC 3339 in UTC with milliseconds: "2026-11-26T22:18:03.123Z".
std::string format_rfc3339(WallTime t);

/// Parses what format_rfc3339 writes (and offsets other than Z); nullopt on
/// anything else.
std::optional<WallTime> parse_rfc3339(std::string_view text);

/// "3m ago", "2h ago", "just now", or "in 2h" for a time still to come (a
/// silence's end) — for tables a human reads.
std::string format_ago(WallTime t, WallTime now);

}  // namespace storewatch
