#include "config/prescan.h"

#include <fmt/format.h>

namespace storewatch::config::detail {
namespace {

bool is_bare_key_char(char c) {
  const auto u = static_cast<unsigned char>(c);
  // Bytes >= 0x80: toml++ reports non-ASCII bare keys itself; counting them
  // as key bytes keeps a key written in them within the length limit too.
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '-' || u >= 0x80;
}

/// Reads TOML's lexical structure. Each parse function returns false on text
/// that is not TOML; the statement it was in is then skipped to the end of
/// its line and the scan goes on (toml++ reports the syntax error). A limit
/// passed sets `problem_`, which ends the scan.
class Scanner {
 public:
  explicit Scanner(std::string_view text) : text_(text) {}

  std::optional<PrescanProblem> run() {
    if (text_.substr(0, 3) == "\xEF\xBB\xBF") i_ = 3;  // a UTF-8 byte order mark
    int table_depth = 0;
    while (!problem_) {
      skip_blank_lines();
      if (at_end()) break;
      if (peek() == '[') {
        if (auto depth = header()) table_depth = *depth;
      } else {
        key_value(table_depth);
      }
      if (problem_) break;
      finish_line();
    }
    return problem_;
  }

 private:
  bool at_end() const { return i_ >= text_.size(); }
  char peek(std::size_t ahead = 0) const {
    return i_ + ahead < text_.size() ? text_[i_ + ahead] : '\0';
  }
  void advance() {
    const char c = text_[i_++];
    if (c == '\n') {
      ++line_;
      column_ = 1;
    } else if ((static_cast<unsigned char>(c) & 0xC0) != 0x80) {
      ++column_;  // not a UTF-8 continuation byte: one more character
    }
  }
  void advance(std::size_t n) {
    for (std::size_t k = 0; k < n && !at_end(); ++k) advance();
  }

  void skip_spaces() {
    while (peek() == ' ' || peek() == '\t' || peek() == '\r') advance();
  }
  void skip_comment() {
    while (!at_end() && peek() != '\n') advance();
  }
  /// Spaces, newlines and comments: between statements, and inside arrays.
  void skip_blank_lines() {
    while (!at_end()) {
      skip_spaces();
      if (peek() == '#') {
        skip_comment();
      } else if (peek() == '\n') {
        advance();
      } else {
        return;
      }
    }
  }
  /// After a statement: a comment, then the end of the line. Anything else
  /// is not TOML: skipped to the next line.
  void finish_line() {
    skip_spaces();
    while (!at_end() && peek() != '\n') advance();
  }

  bool deeper(int& depth, std::string_view what, int line, int column) {
    if (++depth <= kMaxTomlDepth) return true;
    problem_ = PrescanProblem{
        line, column,
        fmt::format("{} nests more than {} levels deep, the limit (tables, dotted keys, arrays "
                    "and inline tables count; a config needs a few): is this a config file?",
                    what, kMaxTomlDepth)};
    return false;
  }

  /// `[a.b]` or `[[a.b]]`: the depth of its tables, or nullopt.
  std::optional<int> header() {
    advance();
    if (peek() == '[') advance();
    return key(0, true);
  }

  /// A key (dotted or not) starting `depth` levels deep, in a table header
  /// or not; the depth of its value, or nullopt when it is not a key or
  /// passes a limit.
  std::optional<int> key(int depth, bool in_header) {
    for (int part = 1;; ++part) {
      skip_spaces();
      const int line = line_;
      const int column = column_;
      std::size_t bytes = 0;
      if (peek() == '"' || peek() == '\'') {
        if (!single_line_string(&bytes)) return std::nullopt;
        bytes -= 2;  // the quotes
      } else {
        const std::size_t start = i_;
        while (!at_end() && is_bare_key_char(peek())) advance();
        bytes = i_ - start;
        if (bytes == 0) return std::nullopt;
      }
      const std::string_view what = in_header ? "table header" : part > 1 ? "dotted key" : "key";
      if (!deeper(depth, what, line, column)) return std::nullopt;
      if (bytes > kMaxTomlKeyBytes) {
        problem_ = PrescanProblem{
            line, column,
            fmt::format("a key of {} bytes; keys are at most {} bytes (a config's are short): is "
                        "this a config file?",
                        bytes, kMaxTomlKeyBytes)};
        return std::nullopt;
      }
      skip_spaces();
      if (peek() != '.') return depth;
      advance();
    }
  }

  /// `key = value` at `depth` (the depth of the table it is in).
  void key_value(int depth) {
    const auto value_depth = key(depth, false);
    if (!value_depth) return;
    skip_spaces();
    if (peek() != '=') return;
    advance();
    value(*value_depth);
  }

  /// "…" or '…' on one line; `bytes` gets its length with the quotes.
  bool single_line_string(std::size_t* bytes) {
    const char quote = peek();
    const std::size_t start = i_;
    advance();
    while (!at_end() && peek() != quote) {
      if (peek() == '\n') return false;
      if (quote == '"' && peek() == '\\') advance();
      if (!at_end() && peek() != '\n') advance();
    }
    if (at_end()) return false;
    advance();
    if (bytes != nullptr) *bytes = i_ - start;
    return true;
  }

  /// """…""" or '''…''', which may hold newlines, quotes and brackets.
  bool multi_line_string() {
    const char quote = peek();
    advance(3);
    while (!at_end()) {
      if (quote == '"' && peek() == '\\') {
        advance(2);
        continue;
      }
      if (peek() == quote && peek(1) == quote && peek(2) == quote) {
        // Up to two more quotes are the string's last characters.
        std::size_t run = 3;
        while (run < 5 && peek(run) == quote) ++run;
        advance(run);
        return true;
      }
      advance();
    }
    return false;
  }

  /// A value `depth` levels deep (the depth of its key).
  bool value(int depth) {
    skip_spaces();
    const char c = peek();
    if (c == '"' || c == '\'') {
      if (peek(1) == c && peek(2) == c) return multi_line_string();
      return single_line_string(nullptr);
    }
    if (c == '[') return array(depth);
    if (c == '{') return inline_table(depth);
    // A number, a boolean or a date-time ("1979-05-27 07:32:00Z" has a space).
    const std::size_t start = i_;
    while (!at_end() && peek() != ',' && peek() != ']' && peek() != '}' && peek() != '#' &&
           peek() != '\n') {
      advance();
    }
    return i_ > start;
  }

  bool array(int depth) {
    if (!deeper(depth, "array", line_, column_)) return false;
    advance();
    while (true) {
      skip_blank_lines();
      if (peek() == ']') {
        advance();
        return true;
      }
      if (!value(depth)) return false;
      skip_blank_lines();
      if (peek() == ',') {
        advance();
      } else if (peek() == ']') {
        advance();
        return true;
      } else {
        return false;
      }
    }
  }

  bool inline_table(int depth) {
    if (!deeper(depth, "inline table", line_, column_)) return false;
    advance();
    while (true) {
      // TOML 1.0 keeps an inline table on one line; reading across lines
      // here only means such a file is scanned too (toml++ refuses it).
      skip_blank_lines();
      if (peek() == '}') {
        advance();
        return true;
      }
      const auto value_depth = key(depth, false);
      if (!value_depth) return false;
      skip_spaces();
      if (peek() != '=') return false;
      advance();
      if (!value(*value_depth)) return false;
      skip_blank_lines();
      if (peek() == ',') {
        advance();
      } else if (peek() == '}') {
        advance();
        return true;
      } else {
        return false;
      }
    }
  }

  std::string_view text_;
  std::size_t i_ = 0;
  int line_ = 1;
  int column_ = 1;
  std::optional<PrescanProblem> problem_;
};

}  // namespace

std::optional<PrescanProblem> prescan_toml(std::string_view text) {
  return Scanner(text).run();
}

}  // namespace storewatch::config::detail
