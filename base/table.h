#pragma once
/// \file
/// Aligned text tables for the terminal (the CLI, `storewatch report`, `hq
/// report`), coloured only on a terminal and never when NO_COLOR is set.

#include <cstdio>
#include <string>
#include <vector>

namespace storewatch {

enum class Colour { none, green, yellow, red, dim, bold };

/// Whether output to `stream` should carry colour.
bool use_colour(std::FILE* stream);

/// Wraps text in the escape codes of `colour` (or not at all).
std::string paint(const std::string& text, Colour colour, bool enabled);

class Table {
 public:
  explicit Table(std::vector<std::string> headers);
  /// Adds a row; a cell may carry a colour.
  void add(std::vector<std::string> cells, std::vector<Colour> colours = {});
  std::string render(bool colour) const;
  bool empty() const { return rows_.empty(); }

 private:
  std::vector<std::string> headers_;
  std::vector<std::vector<std::string>> rows_;
  std::vector<std::vector<Colour>> colours_;
};

/// The colour a state word is shown in (ok green, failing red, …).
Colour colour_of(const std::string& state);

}  // namespace storewatch
