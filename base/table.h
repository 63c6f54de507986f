#pragma once
/// \file
/// Aligned text tables for the terminal (the CLI, `storewatch report`, `hq
/// report`), coloured only on a terminal and never when NO_COLOR is set, and
/// fitted to the terminal's width: a table knows which of its columns may be
/// cut short (with "…") and which may be dropped, and in what order.

#include <cstddef>
#include <cstdio>
#include <string>
#include <vector>

namespace storewatch {

enum class Colour { none, green, yellow, red, dim, bold };

/// Whether output to `stream` should carry colour.
bool use_colour(std::FILE* stream);

/// Wraps text in the escape codes of `colour` (or not at all).
std::string paint(const std::string& text, Colour colour, bool enabled);

/// "No limit" for Table::render's width.
inline constexpr std::size_t kUnlimited = 0;

/// The width a table printed on `stream` must fit: $COLUMNS when it is set
/// and a positive number (on a pipe too: `COLUMNS=80 storewatch incidents |
/// less` asks for 80), else the terminal's width when `stream` is a
/// terminal, else kUnlimited (a pipe or a file gets whole rows).
std::size_t terminal_width(std::FILE* stream);

/// How many columns `text` takes on a terminal: its UTF-8 code points (each
/// one column; escape codes are not expected in cells).
std::size_t display_width(const std::string& text);

/// `text` cut to at most `width` columns, its last one "…" when cut; never
/// splits a UTF-8 sequence.
std::string truncate_display(const std::string& text, std::size_t width);

class Table {
 public:
  explicit Table(std::vector<std::string> headers);
  /// Adds a row; a cell may carry a colour, and a shorter form (`compact`,
  /// "" for none) shown when the table must be narrowed.
  void add(std::vector<std::string> cells, std::vector<Colour> colours = {},
           std::vector<std::string> compact = {});

  /// Column `column` may be cut short, with "…", down to `min_width` columns
  /// (to fit, and as a last resort further, down to its header's width).
  Table& truncatable(std::size_t column, std::size_t min_width);
  /// Column `column` may be dropped to fit; rank 1 goes first, then 2, …
  Table& droppable(std::size_t column, int rank);

  /// The table, each line at most `width` display columns (kUnlimited: as
  /// wide as its cells). To fit, in this order: truncatable columns shrink
  /// to their minimum, columns with compact cells switch to them, droppable
  /// columns go by rank, truncatable columns shrink to their header; any
  /// room left goes back to the truncatable columns. A table that still
  /// does not fit has its lines cut at `width`. With no hints the last
  /// column is truncatable (tables put their free text last).
  std::string render(bool colour, std::size_t width = kUnlimited) const;
  /// render(use_colour(stream), terminal_width(stream)): the table as it is
  /// printed on `stream`.
  std::string render_for(std::FILE* stream) const;
  bool empty() const { return rows_.empty(); }

 private:
  std::vector<std::string> headers_;
  std::vector<std::vector<std::string>> rows_;
  std::vector<std::vector<Colour>> colours_;
  std::vector<std::vector<std::string>> compact_;
  std::vector<std::size_t> min_width_;  // 0: not truncatable
  std::vector<int> drop_rank_;          // 0: never dropped
  bool hinted_ = false;
};

/// The colour a state word is shown in (ok green, failing red, …).
Colour colour_of(const std::string& state);

}  // namespace storewatch
