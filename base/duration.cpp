#include "base/duration.h"

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <limits>

#include <fmt/format.h>

namespace storewatch {
namespace {

struct Unit {
  std::string_view suffix;
  std::int64_t ms;
};

// "ms" comes before "m" so the longer suffix wins.
constexpr Unit kUnits[] = {
    {"ms", 1}, {"s", 1000}, {"m", 60'000}, {"h", 3'600'000}, {"d", 86'400'000},
};

}  // namespace

std::optional<Millis> parse_duration(std::string_view text) {
  if (text.empty()) return std::nullopt;
  std::int64_t total = 0;
  std::size_t i = 0;
  while (i < text.size()) {
    if (text[i] < '0' || text[i] > '9') return std::nullopt;
    std::int64_t n = 0;
    while (i < text.size() && text[i] >= '0' && text[i] <= '9') {
      if (n > (std::numeric_limits<std::int64_t>::max() - 9) / 10) return std::nullopt;
      n = n * 10 + (text[i] - '0');
      ++i;
    }
    const Unit* unit = nullptr;
    for (const Unit& u : kUnits) {
      if (text.substr(i, u.suffix.size()) == u.suffix) {
        unit = &u;
        break;
      }
    }
    if (unit == nullptr) return std::nullopt;
    i += unit->suffix.size();
    if (n > (std::numeric_limits<std::int64_t>::max() - total) / unit->ms) return std::nullopt;
    total += n * unit->ms;
  }
  return Millis(total);
}

std::string format_duration(Millis d) {
  std::int64_t ms = d.count();
  if (ms == 0) return "0s";
  std::string out;
  if (ms < 0) {
    out = "-";
    ms = -ms;
  }
  for (const Unit& u : {kUnits[4], kUnits[3], kUnits[2], kUnits[1], kUnits[0]}) {
    if (ms >= u.ms) {
      out += std::to_string(ms / u.ms);
      out += u.suffix;
      ms %= u.ms;
    }
  }
  return out;
}

std::string duration_problem(std::string_view text) {
  static constexpr std::string_view kHow =
      "write a whole number and a unit (ms, s, m, h, d), e.g. \"15s\", \"500ms\" or \"1h30m\"";
  if (text.empty()) return fmt::format("it is empty; {}", kHow);
  if (text.front() == '-') return fmt::format("it must not be negative; {}", kHow);
  if (std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return fmt::format("it has no unit; write e.g. \"{}s\" or \"{}ms\"", text, text);
  }
  if (text.find('.') != std::string_view::npos) {
    return "fractions are not supported; write a smaller unit, e.g. \"1500ms\" for 1.5s";
  }
  if (std::any_of(text.begin(), text.end(),
                  [](char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; })) {
    return fmt::format("it must not contain spaces; {}", kHow);
  }
  return std::string(kHow);
}

}  // namespace storewatch
