#include "probes/perfdata.h"

#include <algorithm>
#include <charconv>
#include <cmath>

namespace storewatch::probes {
namespace {

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

// The length of the well-formed UTF-8 sequence starting at s[0] and its code
// point, or 0 when the bytes there are not one (overlong forms, surrogates and
// code points past U+10FFFF are rejected, as the Unicode standard asks).
std::size_t utf8_sequence(std::string_view s, char32_t& cp) {
  const auto b0 = static_cast<unsigned char>(s[0]);
  if (b0 < 0x80) {
    cp = b0;
    return 1;
  }
  std::size_t len = 0;
  char32_t lo = 0;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    len = 2, cp = b0 & 0x1F, lo = 0x80;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    len = 3, cp = b0 & 0x0F, lo = 0x800;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    len = 4, cp = b0 & 0x07, lo = 0x10000;
  } else {
    return 0;
  }
  if (s.size() < len) return 0;
  for (std::size_t i = 1; i < len; ++i) {
    const auto b = static_cast<unsigned char>(s[i]);
    if ((b & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (b & 0x3F);
  }
  if (cp < lo || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  return len;
}

// A finite number filling `s` entirely (a leading '+' is allowed).
std::optional<double> parse_number(std::string_view s) {
  if (!s.empty() && s[0] == '+') s.remove_prefix(1);
  double v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size() || !std::isfinite(v)) return std::nullopt;
  return v;
}

// A unit of measure: letters, '%', '/', or non-ASCII bytes ("°C"); never a
// digit, sign, dot or comma, so "1.2.3" and "1,5" are rejected.
bool is_unit(std::string_view s) {
  if (s.size() > 16) return false;
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    const bool ok =
        (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '%' || c == '/' || u >= 0x80;
    if (!ok) return false;
  }
  return true;
}

// `value[UOM]`: the longest number prefix, then a unit.
bool parse_value(std::string_view field, PerfItem& item) {
  std::string_view s = field;
  if (!s.empty() && s[0] == '+') s.remove_prefix(1);
  if (s.empty()) return false;
  double v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || !std::isfinite(v)) return false;
  std::string_view unit(end, static_cast<std::size_t>(s.data() + s.size() - end));
  if (!is_unit(unit)) return false;
  item.value = v;
  item.unit = std::string(unit);
  return true;
}

std::vector<std::string_view> split_fields(std::string_view s) {
  std::vector<std::string_view> out;
  while (true) {
    auto semi = s.find(';');
    out.push_back(s.substr(0, semi));
    if (semi == std::string_view::npos) break;
    s.remove_prefix(semi + 1);
  }
  return out;
}

}  // namespace

std::string printable(std::string_view text, std::size_t max_bytes) {
  std::string out;
  out.reserve(std::min(text.size(), max_bytes) + 3);
  bool cut = false;
  std::size_t i = 0;
  // Leading spaces are skipped as we go; trailing ones are trimmed at the end.
  while (i < text.size()) {
    char32_t cp = 0;
    std::size_t len = utf8_sequence(text.substr(i), cp);
    std::string_view piece;
    if (len == 0) {
      piece = "\xEF\xBF\xBD";  // U+FFFD REPLACEMENT CHARACTER
      len = 1;
    } else if (cp < 0x20 || cp == 0x7F || (cp >= 0x80 && cp <= 0x9F)) {
      piece = " ";
    } else {
      piece = text.substr(i, len);
    }
    i += len;
    if (piece == " " && out.empty()) continue;
    if (out.size() + piece.size() > max_bytes) {
      cut = true;
      break;
    }
    out.append(piece);
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  if (cut) out.append("\xE2\x80\xA6");  // …
  return out;
}

std::vector<PerfItem> parse_perfdata(std::string_view text) {
  std::vector<PerfItem> items;
  std::size_t pos = 0;
  const std::size_t n = text.size();
  auto skip_to_space = [&] {
    while (pos < n && !is_space(text[pos])) ++pos;
  };
  while (pos < n && items.size() < kMaxPerfItems) {
    while (pos < n && is_space(text[pos])) ++pos;
    if (pos >= n) break;

    std::string label;
    if (text[pos] == '\'') {
      // 'quoted label': may hold spaces and '='; '' is one quote.
      ++pos;
      bool closed = false;
      while (pos < n) {
        if (text[pos] == '\'') {
          if (pos + 1 < n && text[pos + 1] == '\'') {
            label += '\'';
            pos += 2;
            continue;
          }
          ++pos;
          closed = true;
          break;
        }
        label += text[pos++];
      }
      if (!closed) break;  // an unterminated quote swallows the rest
      if (pos >= n || text[pos] != '=') {
        skip_to_space();
        continue;
      }
    } else {
      const std::size_t start = pos;
      while (pos < n && text[pos] != '=' && !is_space(text[pos])) ++pos;
      if (pos >= n || text[pos] != '=') {
        skip_to_space();
        continue;
      }
      label = std::string(text.substr(start, pos - start));
    }
    ++pos;  // '='
    const std::size_t start = pos;
    skip_to_space();
    const auto fields = split_fields(text.substr(start, pos - start));

    PerfItem item;
    item.label = printable(label, kMaxLabelBytes);
    if (item.label.empty()) continue;
    if (fields[0] == "U") continue;  // undetermined: no value to keep
    if (!parse_value(fields[0], item)) continue;
    if (fields.size() > 1) item.warn = printable(fields[1], 64);
    if (fields.size() > 2) item.crit = printable(fields[2], 64);
    if (fields.size() > 3) item.min = parse_number(fields[3]);
    if (fields.size() > 4) item.max = parse_number(fields[4]);
    items.push_back(std::move(item));
  }
  return items;
}

PluginOutput parse_plugin_output(std::string_view out) {
  PluginOutput result;
  const auto eol = out.find('\n');
  std::string_view first = out.substr(0, eol);
  const auto bar = first.find('|');
  result.message = printable(first.substr(0, bar));
  if (bar != std::string_view::npos) result.perfdata = parse_perfdata(first.substr(bar + 1));
  if (eol != std::string_view::npos) {
    // Long text runs until the first '|'; everything after it is perfdata.
    std::string_view rest = out.substr(eol + 1);
    const auto more = rest.find('|');
    if (more != std::string_view::npos) {
      for (auto& item : parse_perfdata(rest.substr(more + 1))) {
        if (result.perfdata.size() >= kMaxPerfItems) break;
        result.perfdata.push_back(std::move(item));
      }
    }
  }
  return result;
}

}  // namespace storewatch::probes
