#include "base/clock.h"

#include <sys/timex.h>

#include <date/date.h>
#include <fmt/format.h>

#include <sstream>

namespace storewatch {

bool SystemClock::wall_synced() const {
  const SteadyTime now = steady_now();
  if (!synced_checked_ || now - *synced_checked_ > std::chrono::seconds(10)) {
    struct timex tx {};
    synced_ = ::adjtimex(&tx) != TIME_ERROR;
    synced_checked_ = now;
  }
  return synced_;
}

std::string format_rfc3339(WallTime t) {
  // By hand rather than through date::format's streams or fmt: the store
  // writer formats several times per change, tens of thousands of changes a
  // second.
  const auto day = date::floor<date::days>(t);
  const date::year_month_day ymd{day};
  const auto ms = (t - day).count();
  char buf[] = "0000-00-00T00:00:00.000Z";
  auto put = [&buf](std::size_t at, std::size_t digits, long long v) {
    for (std::size_t i = digits; i-- > 0; v /= 10) buf[at + i] = static_cast<char>('0' + v % 10);
  };
  const int year = static_cast<int>(ymd.year());
  if (year < 0 || year > 9999) {
    return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", year,
                       static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()),
                       ms / 3'600'000, ms / 60'000 % 60, ms / 1000 % 60, ms % 1000);
  }
  put(0, 4, year);
  put(5, 2, static_cast<unsigned>(ymd.month()));
  put(8, 2, static_cast<unsigned>(ymd.day()));
  put(11, 2, ms / 3'600'000);
  put(14, 2, ms / 60'000 % 60);
  put(17, 2, ms / 1000 % 60);
  put(20, 3, ms % 1000);
  return std::string(buf, sizeof buf - 1);
}

namespace {

// "YYYY-MM-DDTHH:MM:SSZ" or "YYYY-MM-DDTHH:MM:SS.mmmZ", as storewatch
// writes times (format_rfc3339), read without a stream: HQ reads one per
// incident it stores. nullopt for anything else, which the stream reads.
std::optional<WallTime> parse_canonical_utc(std::string_view t) {
  if (t.size() != 20 && t.size() != 24) return std::nullopt;
  const auto num = [&](std::size_t at, std::size_t n) -> int {
    int v = 0;
    for (std::size_t i = at; i < at + n; ++i) {
      if (t[i] < '0' || t[i] > '9') return -1;
      v = v * 10 + (t[i] - '0');
    }
    return v;
  };
  if (t[4] != '-' || t[7] != '-' || t[10] != 'T' || t[13] != ':' || t[16] != ':' ||
      t.back() != 'Z') {
    return std::nullopt;
  }
  int ms = 0;
  if (t.size() == 24) {
    if (t[19] != '.') return std::nullopt;
    ms = num(20, 3);
  }
  const int year = num(0, 4), month = num(5, 2), day = num(8, 2);
  const int hour = num(11, 2), minute = num(14, 2), second = num(17, 2);
  if (year < 0 || month < 0 || day < 0 || hour < 0 || hour > 23 || minute < 0 || minute > 59 ||
      second < 0 || second > 59 || ms < 0) {
    return std::nullopt;
  }
  const date::year_month_day ymd{date::year(year), date::month(static_cast<unsigned>(month)),
                                 date::day(static_cast<unsigned>(day))};
  if (!ymd.ok()) return std::nullopt;
  using namespace std::chrono;
  return WallTime(date::sys_days(ymd).time_since_epoch() + hours(hour) + minutes(minute) +
                  seconds(second) + milliseconds(ms));
}

}  // namespace

std::optional<WallTime> parse_rfc3339(std::string_view text) {
  if (auto fast = parse_canonical_utc(text)) return fast;
  std::istringstream in{std::string(text)};
  WallTime t;
  if (text.ends_with("Z")) {
    in >> date::parse("%FT%TZ", t);
  } else {
    in >> date::parse("%FT%T%Ez", t);
  }
  if (in.fail()) return std::nullopt;
  in.peek();
  if (!in.eof()) return std::nullopt;
  return t;
}

std::string format_ago(WallTime t, WallTime now) {
  using namespace std::chrono;
  const auto d = duration_cast<seconds>(now - t).count();
  const auto span = d < 0 ? -d : d;
  if (span < 5) return "just now";
  std::string amount;
  if (span < 60) {
    amount = std::to_string(span) + "s";
  } else if (span < 3600) {
    amount = std::to_string(span / 60) + "m";
  } else if (span < 86400) {
    amount = std::to_string(span / 3600) + "h";
  } else {
    amount = std::to_string(span / 86400) + "d";
  }
  return d < 0 ? "in " + amount : amount + " ago";
}

}  // namespace storewatch
