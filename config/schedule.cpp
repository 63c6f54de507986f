#include "config/schedule.h"

#include <date/date.h>
#include <date/tz.h>
#include <fmt/format.h>
#include <fnmatch.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <exception>

#include "config/config.h"

// Local-time semantics. A window is a span of local wall-clock time: an
// instant is inside when its local time (in the store's zone) is. So on a
// spring-forward day a window inside the skipped hour ("daily 02:00-02:30" in
// America/Chicago) never occurs, and on a fall-back day the repeated hour is
// inside a window twice. Window edges that are local times that do not exist
// map to the instant the clocks jump (the first valid instant after them);
// edges that occur twice map to both instants, because the value of
// contains() may change at either. This is computed without loops that depend
// on the zone's rules beyond a bounded horizon, so no zone can make it hang.

namespace storewatch::config {

namespace {

using LocalMinutes = date::local_time<std::chrono::minutes>;
using LocalMillis = date::local_time<std::chrono::milliseconds>;

constexpr int kMinutesPerDay = 24 * 60;
constexpr std::array<std::string_view, 7> kDayNames = {"sun", "mon", "tue", "wed",
                                                       "thu", "fri", "sat"};
constexpr std::string_view kExpectedForm =
    "expected DAYS HH:MM-HH:MM[, ...] where DAYS is daily, a day or a range of days "
    "(Mon Tue Wed Thu Fri Sat Sun), e.g. \"Mon-Sat 07:00-22:00, Sun 09:00-18:00\"";

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::optional<int> parse_day(std::string_view s) {
  const std::string l = lower(s);
  for (std::size_t i = 0; i < kDayNames.size(); ++i) {
    if (kDayNames[i] == l) return static_cast<int>(i);
  }
  return std::nullopt;
}

/// "HH:MM" as minutes after midnight; "24:00" only when `allow_24`.
std::optional<int> parse_clock(std::string_view s, bool allow_24) {
  if (s.size() != 5 || s[2] != ':') return std::nullopt;
  for (std::size_t i : {0u, 1u, 3u, 4u}) {
    if (!std::isdigit(static_cast<unsigned char>(s[i]))) return std::nullopt;
  }
  const int h = (s[0] - '0') * 10 + (s[1] - '0');
  const int m = (s[3] - '0') * 10 + (s[4] - '0');
  if (m > 59) return std::nullopt;
  if (h == 24 && m == 0 && allow_24) return kMinutesPerDay;
  if (h > 23) return std::nullopt;
  return h * 60 + m;
}

Error parse_error(std::string_view text, const std::string& what) {
  return Error{fmt::format("bad schedule \"{}\": {}; {}", text, what, kExpectedForm)};
}

LocalMillis to_local(WallTime t, const TimeZone& tz) {
  if (tz.zone() == nullptr) return LocalMillis{t.time_since_epoch()};
  return tz.zone()->to_local(t);
}

/// Every instant a local time maps to: one, none-but-the-jump for a
/// nonexistent time (the instant the clocks jump over it), two when it
/// occurs twice.
void local_to_sys(LocalMinutes lt, const TimeZone& tz, std::vector<WallTime>& out) {
  if (tz.zone() == nullptr) {
    out.emplace_back(lt.time_since_epoch());
    return;
  }
  const date::local_info i = tz.zone()->get_info(lt);
  const auto at = [&](std::chrono::seconds offset) {
    return WallTime{
        std::chrono::duration_cast<std::chrono::milliseconds>(lt.time_since_epoch() - offset)};
  };
  switch (i.result) {
    case date::local_info::unique: out.push_back(at(i.first.offset)); break;
    case date::local_info::nonexistent:
      out.emplace_back(
          std::chrono::duration_cast<std::chrono::milliseconds>(i.first.end.time_since_epoch()));
      break;
    case date::local_info::ambiguous:
      out.push_back(at(i.first.offset));
      out.push_back(at(i.second.offset));
      break;
  }
}

}  // namespace

Result<TimeZone> TimeZone::locate(const std::string& name) {
  if (name == "UTC") {
    // date/tz may lack the tz database on a bare machine; UTC needs none.
    try {
      return TimeZone(name, date::locate_zone(name));
    } catch (const std::exception&) {
      return utc();
    }
  }
  try {
    return TimeZone(name, date::locate_zone(name));
  } catch (const std::exception&) {
    return Error{fmt::format("unknown time zone \"{}\"", name)};
  }
}

TimeZone TimeZone::utc() {
  return TimeZone("UTC", nullptr);
}

Result<WeeklySchedule> WeeklySchedule::parse(std::string_view text) {
  WeeklySchedule out;
  out.text_ = std::string(trim(text));
  if (out.text_.empty()) return parse_error(text, "it is empty");

  std::string_view rest = out.text_;
  while (true) {
    const std::size_t comma = rest.find(',');
    const std::string_view item = trim(rest.substr(0, comma));
    if (item.empty()) return parse_error(text, "an entry is empty");

    const std::size_t space = item.find_first_of(" \t");
    if (space == std::string_view::npos) {
      return parse_error(text, fmt::format("\"{}\" has no time range", item));
    }
    const std::string_view days = item.substr(0, space);
    const std::string_view times = trim(item.substr(space));

    // Days.
    std::vector<int> weekdays;
    if (lower(days) == "daily") {
      for (int d = 0; d < 7; ++d) weekdays.push_back(d);
    } else {
      const std::size_t dash = days.find('-');
      const std::string_view first = days.substr(0, dash);
      const std::string_view last = dash == std::string_view::npos ? first : days.substr(dash + 1);
      const std::optional<int> a = parse_day(first);
      const std::optional<int> b = parse_day(last);
      if (!a || !b) {
        return parse_error(text, fmt::format("unknown day \"{}\"", !a ? first : last));
      }
      for (int d = *a;; d = (d + 1) % 7) {
        weekdays.push_back(d);
        if (d == *b) break;
      }
    }

    // Times.
    const std::size_t dash = times.find('-');
    if (dash == std::string_view::npos) {
      return parse_error(text, fmt::format("\"{}\" is not a range HH:MM-HH:MM", times));
    }
    const std::string_view start_text = trim(times.substr(0, dash));
    const std::string_view end_text = trim(times.substr(dash + 1));
    const std::optional<int> start = parse_clock(start_text, false);
    if (!start) {
      return parse_error(text, fmt::format("bad start time \"{}\" (00:00 to 23:59)", start_text));
    }
    const std::optional<int> end = parse_clock(end_text, true);
    if (!end) {
      return parse_error(text, fmt::format("bad end time \"{}\" (00:00 to 24:00)", end_text));
    }
    if (*start == *end) {
      return parse_error(text,
                         fmt::format("\"{}\" is empty (for a whole day write 00:00-24:00)", times));
    }
    // An end not after the start runs past midnight into the next day.
    const int length = *end > *start ? *end - *start : kMinutesPerDay - *start + *end;
    for (int d : weekdays) out.windows_.push_back(Window{d, *start, length});

    if (comma == std::string_view::npos) break;
    rest = rest.substr(comma + 1);
  }
  return out;
}

bool WeeklySchedule::contains(WallTime t, const TimeZone& tz) const {
  if (windows_.empty()) return false;
  const LocalMillis lt = to_local(t, tz);
  const date::local_days today = date::floor<date::days>(lt);
  const auto since_midnight = lt - today;
  const int wd = static_cast<int>(date::weekday(today).c_encoding());
  for (const Window& w : windows_) {
    // A window is at most 24 h long, so only one started today or yesterday
    // can hold `t`.
    for (int back = 0; back <= 1; ++back) {
      if (w.weekday != (wd - back + 7) % 7) continue;
      const auto offset =
          since_midnight + std::chrono::minutes(back * kMinutesPerDay - w.start_min);
      if (offset >= std::chrono::milliseconds::zero() &&
          offset < std::chrono::minutes(w.length_min)) {
        return true;
      }
    }
  }
  return false;
}

std::optional<WallTime> WeeklySchedule::next_change(WallTime t, const TimeZone& tz) const {
  if (windows_.empty()) return std::nullopt;
  const bool now = contains(t, tz);

  // contains() is constant between window edges (in local time) and the
  // zone's offset changes, so the answer is the first of those, after t, at
  // which it differs. A weekly schedule repeats within 8 local days; a zone
  // changes offset at most a few times a year, so the candidates are few.
  std::vector<WallTime> candidates;
  const date::local_days today = date::floor<date::days>(to_local(t, tz));
  for (int k = -1; k <= 8; ++k) {
    const date::local_days day = today + date::days(k);
    const int wd = static_cast<int>(date::weekday(day).c_encoding());
    for (const Window& w : windows_) {
      if (w.weekday != wd) continue;
      const LocalMinutes start = LocalMinutes(day) + std::chrono::minutes(w.start_min);
      local_to_sys(start, tz, candidates);
      local_to_sys(start + std::chrono::minutes(w.length_min), tz, candidates);
    }
  }
  const WallTime horizon = t + date::days(10);
  if (tz.zone() != nullptr) {
    auto at = std::chrono::floor<std::chrono::seconds>(t);
    for (int i = 0; i < 16; ++i) {  // bounded: a zone changes offset rarely
      const date::sys_info info = tz.zone()->get_info(at);
      if (info.end <= at || info.end >= horizon) break;
      candidates.emplace_back(
          std::chrono::duration_cast<std::chrono::milliseconds>(info.end.time_since_epoch()));
      at = info.end;
    }
  }
  std::sort(candidates.begin(), candidates.end());
  for (WallTime c : candidates) {
    if (c <= t) continue;
    if (contains(c, tz) != now) return c;
  }
  return std::nullopt;
}

}  // namespace storewatch::config

// ---------------------------------------------------------------------------
// ProbeMatch (declared in config/config.h).

namespace storewatch::config {

namespace {

constexpr std::string_view kMatchForm =
    "expected a glob on probe names (\"lane-*\") or label=value (\"kind=pos\")";

bool is_name_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-';
}

}  // namespace

std::optional<ProbeMatch> ProbeMatch::parse(std::string_view text, std::string* error) {
  const auto fail = [&](const std::string& what) -> std::optional<ProbeMatch> {
    if (error != nullptr) *error = fmt::format("bad match \"{}\": {}; {}", text, what, kMatchForm);
    return std::nullopt;
  };
  if (text.empty()) return fail("it is empty");
  ProbeMatch m;
  m.text_ = std::string(text);
  const std::size_t eq = text.find('=');
  if (eq != std::string_view::npos) {
    const std::string_view label = text.substr(0, eq);
    const std::string_view value = text.substr(eq + 1);
    if (label.empty()) return fail("the label name is empty");
    if (value.empty()) return fail("the label value is empty");
    if (value.find('=') != std::string_view::npos) return fail("more than one '='");
    for (char c : label) {
      if (!is_name_char(c)) return fail(fmt::format("'{}' cannot be in a label name", c));
    }
    m.label_ = std::string(label);
    m.value_ = std::string(value);
    return m;
  }
  for (char c : text) {
    if (!is_name_char(c) && c != '*' && c != '?' && c != '[' && c != ']' && c != '!') {
      return fail(fmt::format("'{}' cannot be in a probe name or glob", c));
    }
  }
  return m;
}

bool ProbeMatch::matches(const std::string& probe,
                         const std::map<std::string, std::string>& labels) const {
  if (label_.empty()) return ::fnmatch(text_.c_str(), probe.c_str(), 0) == 0;
  const auto it = labels.find(label_);
  return it != labels.end() && it->second == value_;
}

}  // namespace storewatch::config
