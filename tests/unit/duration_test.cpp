#include "base/duration.h"

#include <gtest/gtest.h>

#include "base/clock.h"

namespace storewatch {
namespace {

using namespace std::chrono_literals;

TEST(Duration, ParsesEveryUnit) {
  EXPECT_EQ(parse_duration("500ms"), Millis(500));
  EXPECT_EQ(parse_duration("100ms"), Millis(100));
  EXPECT_EQ(parse_duration("15s"), Millis(15s));
  EXPECT_EQ(parse_duration("5m"), Millis(5min));
  EXPECT_EQ(parse_duration("2h"), Millis(2h));
  EXPECT_EQ(parse_duration("1d"), Millis(24h));
  EXPECT_EQ(parse_duration("1h30m"), Millis(90min));
  EXPECT_EQ(parse_duration("0s"), Millis(0));
}

TEST(Duration, RejectsWhatIsNotADuration) {
  for (const char* bad : {"", "15", "s", "15 s", "-5s", "1.5s", "5x", "5sec", "ms5", " 5s",
                          "99999999999999999999s", "9223372036854775807d"}) {
    EXPECT_FALSE(parse_duration(bad).has_value()) << bad;
  }
}

TEST(Duration, FormatsLargestUnitsFirst) {
  EXPECT_EQ(format_duration(Millis(90min)), "1h30m");
  EXPECT_EQ(format_duration(Millis(500)), "500ms");
  EXPECT_EQ(format_duration(Millis(0)), "0s");
  EXPECT_EQ(format_duration(Millis(86'400'000 + 1500)), "1d1s500ms");
}

TEST(Rfc3339, RoundTripsMilliseconds) {
  WallTime t{Millis(1'764'195'483'123)};
  std::string s = format_rfc3339(t);
  EXPECT_EQ(s, "2025-11-26T22:18:03.123Z");
  EXPECT_EQ(parse_rfc3339(s), t);
  EXPECT_EQ(parse_rfc3339("2025-11-26T23:18:03.123+01:00"), t);
  EXPECT_FALSE(parse_rfc3339("yesterday").has_value());
  EXPECT_FALSE(parse_rfc3339("2025-11-26T22:18:03.123Zjunk").has_value());
}

// The form storewatch writes is read without a stream; it must read as the
// stream reads the same instant written with an offset, and refuse what the
// stream refuses.
TEST(Rfc3339, TheWrittenFormReadsAsTheStreamReadsIt) {
  for (std::int64_t ms = -86'400'000; ms < 4'200'000'000'000; ms += 7'919'999'937) {
    const WallTime t{Millis(ms)};
    const std::string z = format_rfc3339(t);
    ASSERT_EQ(z.size(), 24u) << z;
    EXPECT_EQ(parse_rfc3339(z), t) << z;
    const std::string offset = z.substr(0, 23) + "+00:00";
    EXPECT_EQ(parse_rfc3339(offset), t) << offset;
    const std::string whole = z.substr(0, 19) + "Z";
    EXPECT_EQ(parse_rfc3339(whole), parse_rfc3339(z.substr(0, 19) + "+00:00")) << whole;
  }
  for (const char* bad :
       {"2026-02-29T00:00:00.000Z", "2026-13-01T00:00:00.000Z", "2026-12-01T24:00:00.000Z",
        "2026-12-01T23:60:00.000Z", "2026-12-01T23:00:00,000Z", "2026-12-01 23:00:00.000Z",
        "2026-12-0xT23:00:00.000Z", "2026-12-01T23:00:00.00aZ"}) {
    EXPECT_FALSE(parse_rfc3339(bad).has_value()) << bad;
  }
  EXPECT_EQ(parse_rfc3339("2024-02-29T12:00:00.000Z"),
            parse_rfc3339("2024-02-29T13:00:00.000+01:00"));
}

TEST(Rfc3339, FormatsEveryFieldPadded) {
  EXPECT_EQ(format_rfc3339(WallTime{Millis(0)}), "1970-01-01T00:00:00.000Z");
  EXPECT_EQ(format_rfc3339(WallTime{Millis(951'782'400'007)}), "2000-02-29T00:00:00.007Z");
  EXPECT_EQ(format_rfc3339(WallTime{Millis(4'102'444'799'999)}), "2099-12-31T23:59:59.999Z");
  // Round trips across a century of instants, a few hundred days apart.
  for (std::int64_t ms = 0; ms < 3'000'000'000'000; ms += 17'000'000'123) {
    const WallTime t{Millis(ms)};
    EXPECT_EQ(parse_rfc3339(format_rfc3339(t)), t) << format_rfc3339(t);
  }
}

TEST(Ago, SaysHowLongAgo) {
  WallTime now{Millis(10'000'000)};
  EXPECT_EQ(format_ago(now, now), "just now");
  EXPECT_EQ(format_ago(now - 30s, now), "30s ago");
  EXPECT_EQ(format_ago(now - 3min, now), "3m ago");
  EXPECT_EQ(format_ago(now - 2h, now), "2h ago");
  EXPECT_EQ(format_ago(now - 50h, now), "2d ago");
}

TEST(Ago, SaysHowLongUntilATimeToCome) {
  WallTime now{Millis(10'000'000)};
  EXPECT_EQ(format_ago(now + 3s, now), "just now");
  EXPECT_EQ(format_ago(now + 45s, now), "in 45s");
  EXPECT_EQ(format_ago(now + 2h, now), "in 2h");
  EXPECT_EQ(format_ago(now + 3 * 24h, now), "in 3d");
}

}  // namespace
}  // namespace storewatch
