#include "base/log.h"

#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <charconv>
#include <cstdlib>
#include <string>

namespace storewatch::log {
namespace {

std::atomic<Level> g_level{Level::info};

std::optional<std::uint64_t> decimal(std::string_view text) {
  std::uint64_t n = 0;
  const char* end = text.data() + text.size();
  auto [p, ec] = std::from_chars(text.data(), end, n);
  if (text.empty() || ec != std::errc() || p != end) return std::nullopt;
  return n;
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

std::optional<std::pair<std::uint64_t, std::uint64_t>> parse_journal_stream(
    std::string_view value) {
  const std::size_t colon = value.find(':');
  if (colon == std::string_view::npos) return std::nullopt;
  auto dev = decimal(value.substr(0, colon));
  auto ino = decimal(value.substr(colon + 1));
  if (!dev || !ino) return std::nullopt;
  return std::pair{*dev, *ino};
}

bool is_journal_stream(const char* journal_stream, int fd) {
  if (journal_stream == nullptr) return false;
  auto ids = parse_journal_stream(journal_stream);
  if (!ids) return false;
  struct stat st {};
  if (::fstat(fd, &st) != 0) return false;
  return static_cast<std::uint64_t>(st.st_dev) == ids->first &&
         static_cast<std::uint64_t>(st.st_ino) == ids->second;
}

bool to_journald() {
  static const bool journald = is_journal_stream(std::getenv("JOURNAL_STREAM"), STDERR_FILENO);
  return journald;
}

std::string format_record(Level level, std::string_view message, bool journald, WallTime now) {
  static constexpr std::string_view kNames[] = {"debug", "info", "warn", "error"};
  // sd-daemon.h: SD_DEBUG 7, SD_INFO 6, SD_WARNING 4, SD_ERR 3.
  static constexpr std::string_view kPriority[] = {"<7>", "<6>", "<4>", "<3>"};
  const auto index = static_cast<std::size_t>(level);
  while (!message.empty() && message.back() == '\n') message.remove_suffix(1);
  std::string line;
  line.reserve(message.size() + 40);
  if (journald) {
    // journald takes each line as its own record: every one needs the prefix.
    line += kPriority[index];
    for (char c : message) {
      line += c;
      if (c == '\n') line += kPriority[index];
    }
  } else {
    line += format_rfc3339(now);
    line += ' ';
    line += kNames[index];
    line += ": ";
    line += message;
  }
  line += '\n';
  return line;
}

void write(Level level, std::string_view message) {
  const std::string line = format_record(level, message, to_journald(), SystemClock().wall_now());
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
