#pragma once
/// \file
/// Internal to config/: a cheap pass over a TOML text before toml++ parses it.
/// toml++ recurses once per level of a table header or a dotted key and has
/// no limit there: `[a.a.a…]` with 40,000 parts, or a 50,000-part dotted key,
/// overflows the stack (SIGSEGV). This pass reads the text as TOML's lexical
/// rules say (strings, multi-line strings, comments, keys, arrays and inline
/// tables) without building anything, and refuses what no real config needs:
///
///  - nesting deeper than kMaxTomlDepth levels, counting each part of a table
///    header, each part of a dotted key and each array or inline table a
///    value opens (`[a.b]` then `c.d = [{ e = 1 }]` puts `e` 6 levels deep);
///  - a key part (bare or quoted) longer than kMaxTomlKeyBytes bytes.
///
/// It never rejects what is within those limits: text it cannot follow
/// (invalid TOML) is left to toml++, which reports it. A `[` or a `#` inside
/// a string is text, not a table or a comment.

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace storewatch::config::detail {

/// Levels of tables and arrays a config may nest (a real one uses about 4).
inline constexpr int kMaxTomlDepth = 32;
/// Bytes of one key part as written, without its quotes.
inline constexpr std::size_t kMaxTomlKeyBytes = 256;

/// What the pre-scan refused, and where (1-based; columns count characters,
/// as toml++'s do).
struct PrescanProblem {
  int line = 0;
  int column = 0;
  std::string message;
};

/// The first limit `text` goes past, or nullopt.
std::optional<PrescanProblem> prescan_toml(std::string_view text);

}  // namespace storewatch::config::detail
