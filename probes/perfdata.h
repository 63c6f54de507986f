#pragma once
/// \file
/// The Monitoring Plugins output contract (the Nagios plugin guidelines):
/// the first line of stdout is `TEXT | PERFDATA`, later lines are long text
/// until a line with a `|`, after which everything is more perfdata. Each
/// perfdata item is `label=value[UOM];warn;crit;min;max`. Plugin output is
/// outside input: every function here takes any bytes and never throws.

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace storewatch::probes {

/// One perfdata item. Thresholds are kept as written (they are ranges such as
/// `10:20` or `@~:5`, not numbers); min and max are numbers when present.
struct PerfItem {
  std::string label;
  double value = 0;
  std::string unit;  ///< as written: "", "s", "ms", "%", "B", "KB", "c", ...
  std::string warn;
  std::string crit;
  std::optional<double> min;
  std::optional<double> max;
};

/// The most perfdata items kept from one output; the rest are ignored.
inline constexpr std::size_t kMaxPerfItems = 100;
/// Labels longer than this (after making them printable) are cut.
inline constexpr std::size_t kMaxLabelBytes = 128;

/// Parses whitespace-separated perfdata items. Items that are malformed or
/// have the value `U` (undetermined) are skipped; the rest are returned in
/// order, at most kMaxPerfItems.
std::vector<PerfItem> parse_perfdata(std::string_view text);

/// A plugin's stdout, split by the contract.
struct PluginOutput {
  std::string message;  ///< the first line's text before `|`, printable, bounded
  std::vector<PerfItem> perfdata;
};

/// The most bytes of a message (without the trailing ellipsis).
inline constexpr std::size_t kMaxMessageBytes = 1024;

/// Splits `out` into its message and perfdata (first line after `|`, and
/// everything after the first `|` of the long text).
PluginOutput parse_plugin_output(std::string_view out);

/// `text` made safe to show and store: valid UTF-8 is kept, invalid bytes
/// become U+FFFD, control characters (tabs and newlines too) become spaces,
/// surrounding spaces are trimmed, and the result is cut at a character
/// boundary to at most `max_bytes` with "…" appended when cut.
std::string printable(std::string_view text, std::size_t max_bytes = kMaxMessageBytes);

}  // namespace storewatch::probes
