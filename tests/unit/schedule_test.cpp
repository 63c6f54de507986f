#include "config/schedule.h"

#include <date/date.h>
#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "config/config.h"

namespace storewatch::config {
namespace {

using namespace std::chrono_literals;
using date::days;
using std::chrono::hours;
using std::chrono::minutes;
using ::testing::HasSubstr;

constexpr std::string_view kForm = "expected DAYS HH:MM-HH:MM";

/// A UTC instant.
WallTime utc(int y, unsigned m, unsigned d, int hh, int mm = 0) {
  return WallTime{date::sys_days{date::year{y} / m / d}} + hours(hh) + minutes(mm);
}

WeeklySchedule schedule(std::string_view text) {
  auto s = WeeklySchedule::parse(text);
  EXPECT_TRUE(s.ok()) << text << ": " << (s.ok() ? "" : s.error().message);
  return s.ok() ? *s : WeeklySchedule{};
}

std::string parse_error(std::string_view text) {
  auto s = WeeklySchedule::parse(text);
  EXPECT_FALSE(s.ok()) << text;
  return s.ok() ? std::string() : s.error().message;
}

TimeZone chicago() {
  auto tz = TimeZone::locate("America/Chicago");
  EXPECT_TRUE(tz.ok()) << (tz.ok() ? "" : tz.error().message);
  return tz.ok() ? *tz : TimeZone::utc();
}

// ---------------------------------------------------------------------------
// Parsing

TEST(WeeklyScheduleParse, Daily) {
  const WeeklySchedule s = schedule("daily 02:00-03:00");
  ASSERT_EQ(s.windows().size(), 7u);
  for (int d = 0; d < 7; ++d) {
    EXPECT_EQ(s.windows()[d].weekday, d);
    EXPECT_EQ(s.windows()[d].start_min, 120);
    EXPECT_EQ(s.windows()[d].length_min, 60);
  }
  EXPECT_EQ(s.text(), "daily 02:00-03:00");
}

TEST(WeeklyScheduleParse, RangeAcrossMidnightBelongsToTheStartDay) {
  const WeeklySchedule s = schedule("Mon-Fri 22:00-06:00");
  ASSERT_EQ(s.windows().size(), 5u);
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(s.windows()[i].weekday, i + 1);
    EXPECT_EQ(s.windows()[i].start_min, 22 * 60);
    EXPECT_EQ(s.windows()[i].length_min, 8 * 60);
  }
}

TEST(WeeklyScheduleParse, SeveralEntriesDayNamesAnyCaseAnd24AsEnd) {
  const WeeklySchedule s = schedule("mon-SAT 07:00-22:00,  Sun 09:00-18:00, wed 00:00-24:00");
  ASSERT_EQ(s.windows().size(), 8u);
  EXPECT_EQ(s.windows()[6].weekday, 0);
  EXPECT_EQ(s.windows()[6].start_min, 9 * 60);
  EXPECT_EQ(s.windows()[6].length_min, 9 * 60);
  EXPECT_EQ(s.windows()[7].weekday, 3);
  EXPECT_EQ(s.windows()[7].length_min, 24 * 60);
}

TEST(WeeklyScheduleParse, RangeWrapsOverTheWeekend) {
  const WeeklySchedule s = schedule("Fri-Mon 10:00-11:00");
  std::vector<int> days;
  for (const auto& w : s.windows()) days.push_back(w.weekday);
  EXPECT_EQ(days, (std::vector<int>{5, 6, 0, 1}));
  EXPECT_EQ(schedule("Tue 10:00-11:00").windows().size(), 1u);
  EXPECT_EQ(schedule("Tue-Tue 10:00-11:00").windows().size(), 1u);
}

TEST(WeeklyScheduleParse, BadFormsSayWhatIsWrongAndShowTheForm) {
  struct Case {
    std::string_view text;
    std::string_view message;
  };
  const Case cases[] = {
      {"", "it is empty"},
      {"   ", "it is empty"},
      {"Mon", "\"Mon\" has no time range"},
      {"Mno 10:00-11:00", "unknown day \"Mno\""},
      {"Mon-Fro 10:00-11:00", "unknown day \"Fro\""},
      {"Monday 10:00-11:00", "unknown day \"Monday\""},
      {"Mon 10:00", "\"10:00\" is not a range HH:MM-HH:MM"},
      {"Mon 25:00-26:00", "bad start time \"25:00\" (00:00 to 23:59)"},
      {"Mon 24:00-01:00", "bad start time \"24:00\""},
      {"Mon 7:00-22:00", "bad start time \"7:00\""},
      {"Mon 10:00-24:01", "bad end time \"24:01\" (00:00 to 24:00)"},
      {"Mon 10:00-10:60", "bad end time \"10:60\""},
      {"Mon 10:00-10:00", "\"10:00-10:00\" is empty (for a whole day write 00:00-24:00)"},
      {"Mon 10:00-11:00,", "an entry is empty"},
      {"Mon 10:00-11:00,, Tue 10:00-11:00", "an entry is empty"},
  };
  for (const Case& c : cases) {
    const std::string message = parse_error(c.text);
    EXPECT_THAT(message, HasSubstr(fmt::format("bad schedule \"{}\"", c.text)));
    EXPECT_THAT(message, HasSubstr(std::string(c.message))) << c.text;
    EXPECT_THAT(message, HasSubstr(std::string(kForm))) << c.text;
  }
}

// ---------------------------------------------------------------------------
// contains

TEST(WeeklyScheduleContains, EmptyContainsNothing) {
  EXPECT_FALSE(WeeklySchedule().contains(utc(2025, 1, 3, 12), TimeZone::utc()));
  EXPECT_EQ(WeeklySchedule().next_change(utc(2025, 1, 3, 12), TimeZone::utc()), std::nullopt);
}

TEST(WeeklyScheduleContains, NightWindowRunsIntoTheNextDay) {
  // 2025-01-03 is a Friday.
  const WeeklySchedule s = schedule("Mon-Fri 22:00-06:00");
  const TimeZone tz = TimeZone::utc();
  EXPECT_FALSE(s.contains(utc(2025, 1, 3, 21, 59), tz));
  EXPECT_TRUE(s.contains(utc(2025, 1, 3, 22, 0), tz));
  EXPECT_TRUE(s.contains(utc(2025, 1, 4, 5, 59), tz));  // Saturday morning: Friday's night
  EXPECT_FALSE(s.contains(utc(2025, 1, 4, 6, 0), tz));
  EXPECT_FALSE(s.contains(utc(2025, 1, 4, 23, 0), tz));  // Saturday night
  EXPECT_FALSE(s.contains(utc(2025, 1, 5, 23, 0), tz));  // Sunday night
  EXPECT_FALSE(s.contains(utc(2025, 1, 6, 5, 0), tz));   // Monday morning: Sunday's night
  EXPECT_TRUE(s.contains(utc(2025, 1, 6, 22, 0), tz));
  EXPECT_TRUE(s.contains(utc(2025, 1, 7, 0, 0), tz));
}

TEST(WeeklyScheduleContains, WindowsWrapFromSaturdayToSunday) {
  const TimeZone tz = TimeZone::utc();
  const WeeklySchedule night = schedule("Sat 23:00-02:00");
  EXPECT_TRUE(night.contains(utc(2025, 1, 4, 23, 30), tz));  // Saturday
  EXPECT_TRUE(night.contains(utc(2025, 1, 5, 1, 59), tz));   // Sunday
  EXPECT_FALSE(night.contains(utc(2025, 1, 5, 2, 0), tz));
  EXPECT_FALSE(night.contains(utc(2025, 1, 5, 23, 30), tz));

  const WeeklySchedule weekend = schedule("Fri-Mon 10:00-11:00");
  EXPECT_TRUE(weekend.contains(utc(2025, 1, 5, 10, 30), tz));  // Sunday
  EXPECT_TRUE(weekend.contains(utc(2025, 1, 6, 10, 30), tz));  // Monday
  EXPECT_FALSE(weekend.contains(utc(2025, 1, 7, 10, 30), tz));
  EXPECT_FALSE(weekend.contains(utc(2025, 1, 8, 10, 30), tz));
}

TEST(WeeklyScheduleContains, UsesTheStoresLocalTime) {
  // 14:00 UTC on a January Friday is 08:00 in Chicago (CST, UTC-6).
  const WeeklySchedule s = schedule("Mon-Sat 07:00-22:00, Sun 09:00-18:00");
  EXPECT_TRUE(s.contains(utc(2025, 1, 3, 14), chicago()));
  EXPECT_FALSE(s.contains(utc(2025, 1, 3, 12, 59), chicago()));      // 06:59 local
  EXPECT_TRUE(s.contains(utc(2025, 1, 4, 3, 59), chicago()));        // Fri 21:59 local
  EXPECT_FALSE(s.contains(utc(2025, 1, 4, 4, 0), chicago()));        // Fri 22:00 local
  EXPECT_FALSE(s.contains(utc(2025, 1, 5, 14, 59), chicago()));      // Sun 08:59 local
  EXPECT_TRUE(s.contains(utc(2025, 1, 5, 15, 0), chicago()));        // Sun 09:00 local
  EXPECT_TRUE(s.contains(utc(2025, 1, 5, 14, 0), TimeZone::utc()));  // Sun 14:00 in UTC
}

// ---------------------------------------------------------------------------
// Daylight saving time, America/Chicago: 2025-03-09 02:00 CST jumps to 03:00
// CDT (08:00 UTC); 2025-11-02 02:00 CDT falls back to 01:00 CST (07:00 UTC).

TEST(WeeklyScheduleDst, WindowInsideTheSkippedHourDoesNotHappenThatDay) {
  const WeeklySchedule s = schedule("daily 02:00-02:30");
  const TimeZone tz = chicago();
  for (WallTime t = utc(2025, 3, 9, 7); t < utc(2025, 3, 9, 10); t += 5min) {
    EXPECT_FALSE(s.contains(t, tz)) << format_rfc3339(t);
  }
  // Next: Monday 02:00 CDT.
  EXPECT_EQ(s.next_change(utc(2025, 3, 9, 6), tz), utc(2025, 3, 10, 7));
  EXPECT_TRUE(s.contains(utc(2025, 3, 10, 7), tz));
}

TEST(WeeklyScheduleDst, WindowAcrossTheSkippedHourIsOneHourShorter) {
  const WeeklySchedule s = schedule("daily 01:00-03:00");
  const TimeZone tz = chicago();
  EXPECT_EQ(s.next_change(utc(2025, 3, 9, 6), tz), utc(2025, 3, 9, 7));  // 01:00 CST
  EXPECT_TRUE(s.contains(utc(2025, 3, 9, 7, 59), tz));
  EXPECT_EQ(s.next_change(utc(2025, 3, 9, 7), tz), utc(2025, 3, 9, 8));  // 03:00 CDT
  EXPECT_FALSE(s.contains(utc(2025, 3, 9, 8), tz));
}

TEST(WeeklyScheduleDst, EdgeInsideTheSkippedHourIsTheJump) {
  const WeeklySchedule s = schedule("Sun 02:30-04:00");
  const TimeZone tz = chicago();
  EXPECT_EQ(s.next_change(utc(2025, 3, 9, 6), tz), utc(2025, 3, 9, 8));  // 03:00 CDT
  EXPECT_EQ(s.next_change(utc(2025, 3, 9, 8), tz), utc(2025, 3, 9, 9));  // 04:00 CDT
}

TEST(WeeklyScheduleDst, RepeatedHourIsInsideTwice) {
  const TimeZone tz = chicago();
  const WeeklySchedule hour = schedule("daily 01:00-02:00");
  EXPECT_EQ(hour.next_change(utc(2025, 11, 2, 5), tz), utc(2025, 11, 2, 6));  // 01:00 CDT
  // Through the fall-back to 01:00 CST the local time stays inside.
  EXPECT_EQ(hour.next_change(utc(2025, 11, 2, 6), tz), utc(2025, 11, 2, 8));  // 02:00 CST

  const WeeklySchedule quarter = schedule("daily 01:30-01:45");
  EXPECT_EQ(quarter.next_change(utc(2025, 11, 2, 5), tz), utc(2025, 11, 2, 6, 30));
  EXPECT_EQ(quarter.next_change(utc(2025, 11, 2, 6, 30), tz), utc(2025, 11, 2, 6, 45));
  EXPECT_EQ(quarter.next_change(utc(2025, 11, 2, 6, 45), tz), utc(2025, 11, 2, 7, 30));
  EXPECT_EQ(quarter.next_change(utc(2025, 11, 2, 7, 30), tz), utc(2025, 11, 2, 7, 45));
}

TEST(WeeklyScheduleDst, FallBackReentersAWindowThatEndedInTheRepeatedHour) {
  const TimeZone tz = chicago();
  const WeeklySchedule s = schedule("Sun 00:00-01:30");
  EXPECT_EQ(s.next_change(utc(2025, 11, 2, 5), tz), utc(2025, 11, 2, 6, 30));  // 01:30 CDT
  EXPECT_EQ(s.next_change(utc(2025, 11, 2, 6, 30), tz), utc(2025, 11, 2, 7));  // 01:00 CST
  EXPECT_EQ(s.next_change(utc(2025, 11, 2, 7), tz), utc(2025, 11, 2, 7, 30));  // 01:30 CST
}

// ---------------------------------------------------------------------------
// next_change

TEST(WeeklyScheduleNextChange, IsStrictlyAfterAndFindsTheNextWeek) {
  const TimeZone tz = TimeZone::utc();
  const WeeklySchedule s = schedule("Mon 10:00-11:00");
  // 2025-01-06 is a Monday.
  EXPECT_EQ(s.next_change(utc(2025, 1, 6, 10), tz), utc(2025, 1, 6, 11));
  EXPECT_EQ(s.next_change(utc(2025, 1, 6, 11), tz), utc(2025, 1, 13, 10));
  EXPECT_EQ(s.next_change(utc(2025, 1, 6, 9, 59), tz), utc(2025, 1, 6, 10));
}

TEST(WeeklyScheduleNextChange, WholeWeekNeverChanges) {
  const TimeZone tz = chicago();
  for (std::string_view text : {"daily 00:00-24:00", "Sun-Sat 00:00-24:00"}) {
    const WeeklySchedule s = schedule(text);
    EXPECT_TRUE(s.contains(utc(2025, 3, 9, 8), tz));
    EXPECT_EQ(s.next_change(utc(2025, 3, 9, 8), tz), std::nullopt);
  }
  // Adjacent windows that together cover everything.
  const WeeklySchedule s = schedule("daily 00:00-12:00, daily 12:00-24:00");
  EXPECT_EQ(s.next_change(utc(2025, 11, 2, 6), tz), std::nullopt);
}

TEST(WeeklyScheduleNextChange, AgreesWithContainsAcrossAYear) {
  // For many instants over 2025 in Chicago: the value holds until the change,
  // and differs at it. Sampled every 7 minutes between them.
  const TimeZone tz = chicago();
  for (std::string_view text :
       {"Mon-Fri 22:00-06:00", "daily 01:30-02:30", "Mon-Sat 07:00-22:00, Sun 09:00-18:00",
        "Sat 23:00-01:00", "Fri-Mon 00:00-24:00"}) {
    const WeeklySchedule s = schedule(text);
    int checked = 0;
    for (WallTime t = utc(2025, 1, 1, 0, 17); t < utc(2026, 1, 1, 0); t += hours(31) + 13min) {
      const auto c = s.next_change(t, tz);
      ASSERT_TRUE(c.has_value()) << text << " " << format_rfc3339(t);
      ASSERT_GT(*c, t);
      ASSERT_LE(*c - t, days(8));
      const bool now = s.contains(t, tz);
      ASSERT_NE(s.contains(*c, tz), now) << text << " " << format_rfc3339(t);
      ASSERT_EQ(s.contains(*c - 1ms, tz), now) << text << " " << format_rfc3339(t);
      for (WallTime u = t; u < *c; u += 7min) {
        ASSERT_EQ(s.contains(u, tz), now) << text << " " << format_rfc3339(u);
      }
      ++checked;
    }
    EXPECT_GT(checked, 200);
  }
}

// ---------------------------------------------------------------------------
// TimeZone

TEST(TimeZone, LocatesIanaNamesAndNamesTheUnknownOne) {
  EXPECT_EQ(chicago().name(), "America/Chicago");
  EXPECT_NE(chicago().zone(), nullptr);
  auto bad = TimeZone::locate("Mars/Base");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().message, "unknown time zone \"Mars/Base\"");
  auto utc_zone = TimeZone::locate("UTC");
  ASSERT_TRUE(utc_zone.ok());
  EXPECT_EQ(utc_zone->name(), "UTC");
  EXPECT_EQ(TimeZone::utc().name(), "UTC");
}

// ---------------------------------------------------------------------------
// ProbeMatch

TEST(ProbeMatch, GlobOnNames) {
  std::string error;
  auto m = ProbeMatch::parse("lane-*", &error);
  ASSERT_TRUE(m.has_value()) << error;
  EXPECT_TRUE(m->matches("lane-01", {}));
  EXPECT_TRUE(m->matches("lane-", {}));
  EXPECT_FALSE(m->matches("printer-lane-01", {}));
  EXPECT_FALSE(m->matches("kind", {{"lane", "x"}}));
  EXPECT_EQ(m->text(), "lane-*");

  auto exact = ProbeMatch::parse("uplink");
  ASSERT_TRUE(exact.has_value());
  EXPECT_TRUE(exact->matches("uplink", {}));
  EXPECT_FALSE(exact->matches("uplink2", {}));

  auto set = ProbeMatch::parse("lane-0[1-3]");
  ASSERT_TRUE(set.has_value());
  EXPECT_TRUE(set->matches("lane-02", {}));
  EXPECT_FALSE(set->matches("lane-04", {}));
}

TEST(ProbeMatch, LabelEqualsValue) {
  auto m = ProbeMatch::parse("kind=pos");
  ASSERT_TRUE(m.has_value());
  EXPECT_TRUE(m->matches("anything", {{"kind", "pos"}, {"lane", "01"}}));
  EXPECT_FALSE(m->matches("anything", {{"kind", "printer"}}));
  EXPECT_FALSE(m->matches("kind=pos", {}));
}

TEST(ProbeMatch, BadFormsSayWhichFormIsExpected) {
  struct Case {
    std::string_view text;
    std::string_view message;
  };
  const Case cases[] = {
      {"", "it is empty"},
      {"=pos", "the label name is empty"},
      {"kind=", "the label value is empty"},
      {"a=b=c", "more than one '='"},
      {"ki nd=pos", "' ' cannot be in a label name"},
      {"lane 01", "' ' cannot be in a probe name or glob"},
      {"lane/*", "'/' cannot be in a probe name or glob"},
  };
  for (const Case& c : cases) {
    std::string error;
    EXPECT_FALSE(ProbeMatch::parse(c.text, &error).has_value()) << c.text;
    EXPECT_THAT(error, HasSubstr(fmt::format("bad match \"{}\": {}", c.text, c.message)));
    EXPECT_THAT(error, HasSubstr("expected a glob on probe names (\"lane-*\") or label=value"));
  }
  EXPECT_FALSE(ProbeMatch::parse("").has_value());  // no error pointer: no crash
}

TEST(RemediationType, Names) {
  EXPECT_EQ(to_string(RemediationType::exec), "exec");
  EXPECT_EQ(to_string(RemediationType::systemd_restart), "systemd-restart");
  EXPECT_EQ(to_string(RemediationType::http), "http");
}

}  // namespace
}  // namespace storewatch::config
