#pragma once
/// \file
/// Short uids, git's way: a table names each row by the shortest start of
/// its uid that no other row shares (at least 8 characters), and a start
/// that names more than one is answered with the candidates.

#include <cstddef>
#include <string>
#include <vector>

namespace storewatch {

/// The fewest characters a short uid has.
inline constexpr std::size_t kShortUid = 8;

/// Per uid of `uids` (same order), its shortest start of at least `min`
/// characters that no other uid of `uids` starts with. A start runs through
/// a '-' to the character after it ("01a21ce0-9", never "01a21ce0-"). A
/// uid that another one starts with (or a duplicate) is given whole.
std::vector<std::string> unique_prefixes(const std::vector<std::string>& uids,
                                         std::size_t min = kShortUid);

/// The error for a start of a uid that names more than one thing:
///
///     '01a21ce0' matches 2 incidents; give more of the uid:
///       UID            PROBE        STATE  DETECTED
///       01a21ce0-92af  lane-02-pos  open   2026-12-07 10:58:25Z
///       01a21ce0-93b1  printer-01   open   2026-12-07 10:58:26Z
///
/// `rows` hold the candidates' cells under `headers`, the full uid first (it
/// is shown by its unique prefix among them); `more` counts candidates not
/// in `rows` ("and 3 more").
std::string ambiguous_uid_message(const std::string& prefix, const std::string& things,
                                  const std::vector<std::string>& headers,
                                  std::vector<std::vector<std::string>> rows, std::size_t more);

}  // namespace storewatch
