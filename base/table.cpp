#include "base/table.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <cstring>

namespace storewatch {

namespace {

bool continuation(char c) {
  return (static_cast<unsigned char>(c) & 0xC0) == 0x80;
}

// The last column's minimum when a table gives no hints.
constexpr std::size_t kDefaultMinLast = 20;

}  // namespace

std::size_t display_width(const std::string& text) {
  return static_cast<std::size_t>(
      std::count_if(text.begin(), text.end(), [](char c) { return !continuation(c); }));
}

std::string truncate_display(const std::string& text, std::size_t width) {
  if (display_width(text) <= width) return text;
  if (width == 0) return "";
  // Keep width - 1 code points, then the ellipsis.
  std::size_t kept = 0;
  std::size_t end = 0;
  while (end < text.size()) {
    if (!continuation(text[end])) {
      if (kept == width - 1) break;
      ++kept;
    }
    ++end;
  }
  return text.substr(0, end) + "…";
}

std::size_t terminal_width(std::FILE* stream) {
  const char* columns = std::getenv("COLUMNS");
  if (columns != nullptr && *columns != '\0') {
    std::size_t n = 0;
    const char* end = columns + std::strlen(columns);
    auto [ptr, ec] = std::from_chars(columns, end, n);
    if (ec == std::errc() && ptr == end && n > 0) return n;
  }
  const int fd = ::fileno(stream);
  if (fd < 0 || ::isatty(fd) != 1) return kUnlimited;
  winsize ws{};
  if (::ioctl(fd, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) return ws.ws_col;
  return kUnlimited;
}

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

Table::Table(std::vector<std::string> headers)
    : headers_(std::move(headers)),
      min_width_(headers_.size(), 0),
      drop_rank_(headers_.size(), 0) {}

void Table::add(std::vector<std::string> cells, std::vector<Colour> colours,
                std::vector<std::string> compact) {
  cells.resize(headers_.size());
  colours.resize(headers_.size(), Colour::none);
  compact.resize(headers_.size());
  rows_.push_back(std::move(cells));
  colours_.push_back(std::move(colours));
  compact_.push_back(std::move(compact));
}

Table& Table::truncatable(std::size_t column, std::size_t min_width) {
  hinted_ = true;
  if (column < headers_.size()) min_width_[column] = std::max<std::size_t>(min_width, 1);
  return *this;
}

Table& Table::droppable(std::size_t column, int rank) {
  hinted_ = true;
  if (column < headers_.size()) drop_rank_[column] = rank;
  return *this;
}

std::string Table::render_for(std::FILE* stream) const {
  return render(use_colour(stream), terminal_width(stream));
}

std::string Table::render(bool colour, std::size_t width) const {
  const std::size_t n = headers_.size();
  std::vector<std::size_t> min_width = min_width_;
  if (!hinted_ && n > 0) min_width[n - 1] = kDefaultMinLast;
  // Each column's width with its whole cells, and with its compact ones.
  std::vector<std::size_t> full(n), compact(n);
  std::vector<bool> has_compact(n, false);
  for (std::size_t c = 0; c < n; ++c) full[c] = compact[c] = display_width(headers_[c]);
  for (std::size_t r = 0; r < rows_.size(); ++r) {
    for (std::size_t c = 0; c < n; ++c) {
      const std::size_t w = display_width(rows_[r][c]);
      full[c] = std::max(full[c], w);
      if (compact_[r][c].empty()) {
        compact[c] = std::max(compact[c], w);
      } else {
        has_compact[c] = true;
        compact[c] = std::max(compact[c], display_width(compact_[r][c]));
      }
    }
  }
  std::vector<std::size_t> limit = full;
  std::vector<bool> use_compact(n, false), shown(n, true);
  auto total = [&] {
    std::size_t sum = 0, count = 0;
    for (std::size_t c = 0; c < n; ++c) {
      if (!shown[c]) continue;
      sum += limit[c];
      ++count;
    }
    return sum + (count > 0 ? 2 * (count - 1) : 0);
  };
  auto natural = [&](std::size_t c) { return use_compact[c] ? compact[c] : full[c]; };
  if (width != kUnlimited && total() > width) {
    auto fits = [&] { return total() <= width; };
    auto shrink_to = [&](std::size_t c, std::size_t floor) {
      limit[c] = std::min(limit[c], std::max(floor, display_width(headers_[c])));
    };
    // 1. The truncatable columns down to their minimum.
    for (std::size_t c = 0; c < n; ++c) {
      if (min_width[c] > 0) shrink_to(c, min_width[c]);
    }
    // 2. The compact forms, left to right.
    for (std::size_t c = 0; c < n && !fits(); ++c) {
      if (!has_compact[c]) continue;
      use_compact[c] = true;
      limit[c] = min_width[c] > 0 ? std::min(limit[c], compact[c]) : compact[c];
    }
    // 3. The droppable columns, by rank.
    std::vector<std::size_t> order;
    for (std::size_t c = 0; c < n; ++c) {
      if (drop_rank_[c] > 0) order.push_back(c);
    }
    std::stable_sort(order.begin(), order.end(),
                     [&](std::size_t a, std::size_t b) { return drop_rank_[a] < drop_rank_[b]; });
    for (std::size_t c : order) {
      if (fits()) break;
      shown[c] = false;
    }
    // 4. The truncatable columns down to their header.
    for (std::size_t c = n; c-- > 0 && !fits();) {
      if (min_width[c] > 0) shrink_to(c, 1);
    }
    // What is left over goes back to the truncatable columns, the last first.
    for (std::size_t c = n; c-- > 0;) {
      const std::size_t used = total();
      if (used >= width) break;
      if (!shown[c] || min_width[c] == 0) continue;
      limit[c] += std::min(width - used, natural(c) - std::min(natural(c), limit[c]));
    }
  }
  std::size_t last = n;
  for (std::size_t c = 0; c < n; ++c) {
    if (shown[c]) last = c;
  }
  auto line = [&](const std::vector<std::string>& cells, const std::vector<std::string>* alt,
                  const std::vector<Colour>* colours, bool header) {
    std::string out;
    std::size_t used = 0;
    for (std::size_t c = 0; c < n; ++c) {
      if (!shown[c]) continue;
      std::string cell =
          alt != nullptr && use_compact[c] && !(*alt)[c].empty() ? (*alt)[c] : cells[c];
      cell = truncate_display(cell, limit[c]);
      std::size_t pad = c == last ? 0 : limit[c] - display_width(cell) + 2;
      bool cut = false;
      if (width != kUnlimited) {
        // A table that could not be fitted: cut the line at the width.
        const std::size_t room = width > used ? width - used : 0;
        if (display_width(cell) >= room) {
          cell = truncate_display(cell, room);
          pad = 0;
          cut = true;
        } else {
          pad = std::min(pad, room - display_width(cell));
        }
      }
      Colour col = header ? Colour::bold : (colours != nullptr ? (*colours)[c] : Colour::none);
      if (!cell.empty()) out += paint(cell, col, colour);
      out += std::string(pad, ' ');
      used += display_width(cell) + pad;
      if (cut) break;
    }
    while (!out.empty() && out.back() == ' ') out.pop_back();
    return out + "\n";
  };
  std::string out = line(headers_, nullptr, nullptr, true);
  for (std::size_t r = 0; r < rows_.size(); ++r) {
    out += line(rows_[r], &compact_[r], &colours_[r], false);
  }
  return out;
}

}  // namespace storewatch
