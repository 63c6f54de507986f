#include "config/log.h"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <string>

#include "config/clock.h"

namespace storewatch::log {
namespace {

std::atomic<Level> g_level{Level::info};

bool under_journald() {
  static const bool journald = std::getenv("JOURNAL_STREAM") != nullptr;
  return journald;
}

}  // namespace

std::optional<Level> parse_level(std::string_view name) {
  if (name == "debug") return Level::debug;
  if (name == "info") return Level::info;
  if (name == "warn") return Level::warn;
  if (name == "error") return Level::error;
  return std::nullopt;
}

void set_level(Level level) {
  g_level.store(level, std::memory_order_relaxed);
}
Level level() {
  return g_level.load(std::memory_order_relaxed);
}

void write(Level level, std::string_view message) {
  static constexpr std::string_view kNames[] = {"debug", "info", "warn", "error"};
  static constexpr char kPriority[] = {'7', '6', '4', '3'};  // sd-daemon.h LOG_* values
  const auto index = static_cast<std::size_t>(level);
  std::string line;
  line.reserve(message.size() + 40);
  if (under_journald()) {
    line += '<';
    line += kPriority[index];
    line += '>';
  } else {
    line += format_rfc3339(SystemClock().wall_now());
    line += ' ';
    line += kNames[index];
    line += ": ";
  }
  line += message;
  line += '\n';
  // One write per record keeps lines from different threads whole.
  const char* p = line.data();
  std::size_t left = line.size();
  while (left > 0) {
    ssize_t n = ::write(STDERR_FILENO, p, left);
    if (n <= 0) break;
    p += n;
    left -= static_cast<std::size_t>(n);
  }
}

}  // namespace storewatch::log
