#include "probes/procfs.h"

#include <charconv>
#include <cmath>
#include <optional>
#include <string>

namespace storewatch::probes::procfs {
namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) {
    s.remove_suffix(1);
  }
  return s;
}

/// "  16314060 kB" -> bytes.
std::optional<std::uint64_t> kilobytes(std::string_view value) {
  value = trim(value);
  std::uint64_t n = 0;
  auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
  if (ec != std::errc()) return std::nullopt;
  std::string_view unit = trim(std::string_view(end, value.data() + value.size() - end));
  if (unit != "kB") return std::nullopt;
  if (n > UINT64_MAX / 1024) return std::nullopt;
  return n * 1024;
}

std::optional<double> number(std::string_view& rest) {
  rest = trim(rest);
  double v = 0;
  auto [end, ec] = std::from_chars(rest.data(), rest.data() + rest.size(), v);
  if (ec != std::errc() || !std::isfinite(v) || v < 0) return std::nullopt;
  rest.remove_prefix(static_cast<std::size_t>(end - rest.data()));
  return v;
}

}  // namespace

Result<MemInfo> parse_meminfo(std::string_view text) {
  std::optional<std::uint64_t> total, available;
  while (!text.empty()) {
    const auto nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    const auto colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    const std::string_view key = line.substr(0, colon);
    if (key == "MemTotal") {
      total = kilobytes(line.substr(colon + 1));
      if (!total) return Error{"/proc/meminfo: MemTotal is not a number of kB"};
    } else if (key == "MemAvailable") {
      available = kilobytes(line.substr(colon + 1));
      if (!available) return Error{"/proc/meminfo: MemAvailable is not a number of kB"};
    }
  }
  if (!total) return Error{"/proc/meminfo has no MemTotal"};
  if (!available) return Error{"/proc/meminfo has no MemAvailable (kernel older than 3.14?)"};
  if (*total == 0) return Error{"/proc/meminfo: MemTotal is 0"};
  if (*available > *total) return Error{"/proc/meminfo: MemAvailable is larger than MemTotal"};
  return MemInfo{*total, *available};
}

Result<LoadAvg> parse_loadavg(std::string_view text) {
  LoadAvg out;
  auto l1 = number(text);
  auto l5 = l1 ? number(text) : std::nullopt;
  auto l15 = l5 ? number(text) : std::nullopt;
  if (!l15) return Error{"/proc/loadavg does not start with three load averages"};
  out.load1 = *l1;
  out.load5 = *l5;
  out.load15 = *l15;
  return out;
}

}  // namespace storewatch::probes::procfs
