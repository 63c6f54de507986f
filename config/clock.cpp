#include "config/clock.h"

#include <sys/timex.h>

#include <date/date.h>

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
  return date::format("%FT%TZ", t);
}

std::optional<WallTime> parse_rfc3339(std::string_view text) {
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
  auto d = duration_cast<seconds>(now - t).count();
  if (d < 0) return "in the future";
  if (d < 5) return "just now";
  if (d < 60) return std::to_string(d) + "s ago";
  if (d < 3600) return std::to_string(d / 60) + "m ago";
  if (d < 86400) return std::to_string(d / 3600) + "h ago";
  return std::to_string(d / 86400) + "d ago";
}

}  // namespace storewatch
