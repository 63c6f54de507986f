#include "base/table.h"

#include <unistd.h>

#include <algorithm>
#include <cstdlib>

namespace storewatch {

namespace {

// Display width of UTF-8 text: count code points, not bytes.
std::size_t width(const std::string& s) {
  return static_cast<std::size_t>(std::count_if(
      s.begin(), s.end(), [](char c) { return (static_cast<unsigned char>(c) & 0xC0) != 0x80; }));
}

}  // namespace

bool use_colour(std::FILE* stream) {
  const char* no_colour = std::getenv("NO_COLOR");
  if (no_colour != nullptr && *no_colour != '\0') return false;
  const char* term = std::getenv("TERM");
  if (term != nullptr && std::string(term) == "dumb") return false;
  return ::isatty(::fileno(stream)) == 1;
}

std::string paint(const std::string& text, Colour colour, bool enabled) {
  if (!enabled || colour == Colour::none) return text;
  const char* code = "";
  switch (colour) {
    case Colour::green: code = "\033[32m"; break;
    case Colour::yellow: code = "\033[33m"; break;
    case Colour::red: code = "\033[31m"; break;
    case Colour::dim: code = "\033[2m"; break;
    case Colour::bold: code = "\033[1m"; break;
    case Colour::none: break;
  }
  return std::string(code) + text + "\033[0m";
}

Colour colour_of(const std::string& state) {
  if (state == "ok" || state == "resolved" || state == "closed") return Colour::green;
  if (state == "soft_fail" || state == "warn" || state == "acknowledged" ||
      state == "remediating") {
    return Colour::yellow;
  }
  if (state == "hard_fail" || state == "fail" || state == "open" || state == "escalated") {
    return Colour::red;
  }
  if (state == "unknown") return Colour::dim;
  return Colour::none;
}

Table::Table(std::vector<std::string> headers) : headers_(std::move(headers)) {}

void Table::add(std::vector<std::string> cells, std::vector<Colour> colours) {
  cells.resize(headers_.size());
  colours.resize(headers_.size(), Colour::none);
  rows_.push_back(std::move(cells));
  colours_.push_back(std::move(colours));
}

std::string Table::render(bool colour) const {
  std::vector<std::size_t> widths(headers_.size());
  for (std::size_t c = 0; c < headers_.size(); ++c) widths[c] = width(headers_[c]);
  for (const auto& row : rows_) {
    for (std::size_t c = 0; c < row.size(); ++c) widths[c] = std::max(widths[c], width(row[c]));
  }
  auto line = [&](const std::vector<std::string>& cells, const std::vector<Colour>* colours,
                  bool header) {
    std::string out;
    for (std::size_t c = 0; c < cells.size(); ++c) {
      const bool last = c + 1 == cells.size();
      std::string cell = cells[c];
      std::string pad = last ? "" : std::string(widths[c] - width(cell) + 2, ' ');
      Colour col = header ? Colour::bold : (colours != nullptr ? (*colours)[c] : Colour::none);
      out += paint(cell, col, colour) + pad;
    }
    while (!out.empty() && out.back() == ' ') out.pop_back();
    return out + "\n";
  };
  std::string out = line(headers_, nullptr, true);
  for (std::size_t r = 0; r < rows_.size(); ++r) out += line(rows_[r], &colours_[r], false);
  return out;
}

}  // namespace storewatch
