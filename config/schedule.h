#pragma once
/// \file
/// Weekly time windows in a store's local time: `trading_hours`
/// ("Mon-Sat 07:00-22:00, Sun 09:00-18:00") and silence schedules
/// ("daily 02:00-03:00", "Mon-Fri 22:00-06:00"). A window whose end is not
/// after its start runs past midnight and belongs to the day it starts on.
/// Time zones come from the system tz database (date/tz).

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/clock.h"
#include "base/result.h"

namespace date {
class time_zone;
}

namespace storewatch::config {

/// A time zone by IANA name; nullptr-safe wrapper so headers need no date/tz.
class TimeZone {
 public:
  /// The zone, or an error naming it ("unknown time zone \"Mars/Base\"").
  static Result<TimeZone> locate(const std::string& name);
  static TimeZone utc();
  const std::string& name() const { return name_; }
  const date::time_zone* zone() const { return zone_; }

 private:
  TimeZone(std::string name, const date::time_zone* zone) : name_(std::move(name)), zone_(zone) {}
  std::string name_;
  const date::time_zone* zone_ = nullptr;
};

class WeeklySchedule {
 public:
  /// One window: starts on `weekday` (0 = Sunday … 6 = Saturday) at
  /// `start_min` minutes after local midnight and lasts `length_min` minutes
  /// (at most 24 h).
  struct Window {
    int weekday = 0;
    int start_min = 0;
    int length_min = 0;

    bool operator==(const Window&) const = default;
  };

  /// An empty schedule: contains() is always false.
  WeeklySchedule() = default;

  /// Parses a comma-separated list of `DAYS HH:MM-HH:MM` where DAYS is
  /// `daily`, a day (`Mon`) or a range (`Mon-Fri`; `Fri-Mon` wraps). The
  /// error says what is wrong and shows the expected form.
  static Result<WeeklySchedule> parse(std::string_view text);

  bool empty() const { return windows_.empty(); }
  const std::string& text() const { return text_; }
  const std::vector<Window>& windows() const { return windows_; }

  bool operator==(const WeeklySchedule&) const = default;

  /// Whether instant `t` falls inside a window, in the local time of `tz`.
  bool contains(WallTime t, const TimeZone& tz) const;

  /// The first instant after `t` at which contains() changes value; nullopt
  /// for an empty schedule or one that covers the whole week.
  std::optional<WallTime> next_change(WallTime t, const TimeZone& tz) const;

 private:
  std::string text_;
  std::vector<Window> windows_;
};

}  // namespace storewatch::config
