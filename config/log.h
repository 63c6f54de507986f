#pragma once
/// \file
/// One-line log records on stderr. Under systemd (JOURNAL_STREAM set) each
/// line carries the sd-daemon priority prefix so journald keeps the level;
/// elsewhere it carries a UTC timestamp and the level name.

#include <fmt/format.h>

#include <optional>
#include <string_view>

namespace storewatch::log {

enum class Level { debug = 0, info = 1, warn = 2, error = 3 };

/// "debug|info|warn|error" → Level.
std::optional<Level> parse_level(std::string_view name);

void set_level(Level level);
Level level();

/// Writes one record atomically (one write(2) call).
void write(Level level, std::string_view message);

template <class... Args>
void debug(fmt::format_string<Args...> f, Args&&... args) {
  if (level() <= Level::debug) write(Level::debug, fmt::format(f, std::forward<Args>(args)...));
}
template <class... Args>
void info(fmt::format_string<Args...> f, Args&&... args) {
  if (level() <= Level::info) write(Level::info, fmt::format(f, std::forward<Args>(args)...));
}
template <class... Args>
void warn(fmt::format_string<Args...> f, Args&&... args) {
  if (level() <= Level::warn) write(Level::warn, fmt::format(f, std::forward<Args>(args)...));
}
template <class... Args>
void error(fmt::format_string<Args...> f, Args&&... args) {
  write(Level::error, fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace storewatch::log
