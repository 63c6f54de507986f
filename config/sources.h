#pragma once
/// \file
/// Internal to config/: turning files into one TOML tree. Reads the main
/// file and the drop-ins, parses each (a syntax error becomes a diagnostic)
/// and merges them: tables key by key, a later file overriding an earlier
/// one; arrays of tables append. Values keep the position of the file that
/// wrote them.

#include <toml++/toml.h>

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "config/reader.h"

namespace storewatch::config::detail {

/// The whole content of `file`, or why it cannot be read (strerror's words).
Result<std::string> read_text(const std::filesystem::path& file);

/// Parses one document named `name`; a syntax error, or nesting or a key
/// past the limits of prescan.h (checked before toml++ sees the text), is
/// reported at its line:col and gives nullopt.
std::optional<toml::table> parse_toml(Context& ctx, std::string_view text, const std::string& name);

/// Moves `src` into `dst`.
void merge(toml::table& dst, toml::table&& src);

/// The `*.toml` files of `dir` in name order; none when `dir` is missing.
/// An unreadable directory is reported.
std::vector<std::filesystem::path> drop_in_files(Context& ctx, const std::filesystem::path& dir);

}  // namespace storewatch::config::detail
