#pragma once
/// \file
/// Durations as config writes them: an integer and a unit, optionally
/// repeated ("500ms", "15s", "5m", "2h", "1d", "1h30m").

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace storewatch {

using Millis = std::chrono::milliseconds;

/// Parses a config duration; nullopt when the text is not one (no unit, an
/// unknown unit, a sign, an empty string, or a value that overflows).
std::optional<Millis> parse_duration(std::string_view text);

/// What is wrong with a text parse_duration rejected, and how to write one:
/// "it has no unit; write e.g. \"15s\" or \"15ms\"". The one hint of every
/// duration error, the config's and the command line's.
std::string duration_problem(std::string_view text);

/// Formats a duration the way config writes it, largest units first
/// ("1h30m", "500ms", "0s").
std::string format_duration(Millis d);

}  // namespace storewatch
