#pragma once
/// \file
/// One-line log records on stderr. Under systemd — JOURNAL_STREAM set and
/// naming stderr's device and inode, as systemd.exec(5) says to check — each
/// line carries the sd-daemon priority prefix (`<3>` error, `<4>` warning,
/// `<6>` info, `<7>` debug) and no timestamp, since journald adds its own;
/// elsewhere (a terminal, a file, a child whose stderr was redirected) it
/// carries a UTC timestamp and the level name.

#include <fmt/format.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "base/clock.h"

namespace storewatch::log {

enum class Level { debug = 0, info = 1, warn = 2, error = 3 };

/// "debug|info|warn|error" → Level.
std::optional<Level> parse_level(std::string_view name);

void set_level(Level level);
Level level();

/// JOURNAL_STREAM's value, "DEV:INO" in decimal as systemd writes it, as
/// numbers; nullopt for anything else.
std::optional<std::pair<std::uint64_t, std::uint64_t>> parse_journal_stream(std::string_view value);

/// Whether `fd` is the stream journald handed this process: `journal_stream`
/// (the environment variable, may be null) names the device and inode of
/// what `fd` is open on. A child that inherited JOURNAL_STREAM but writes
/// to a file or pipe of its own gets false.
bool is_journal_stream(const char* journal_stream, int fd);

/// Whether records go to journald (decided once, from stderr).
bool to_journald();

/// One record as it is written: "<N>message\n" for journald (every line of
/// a multi-line message gets the prefix, so none loses its priority),
/// "2026-11-27T10:00:00.000Z info: message\n" otherwise.
std::string format_record(Level level, std::string_view message, bool journald, WallTime now);

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
