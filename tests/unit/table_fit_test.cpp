// Tables fitted to the terminal (base/table.h): cut, shortened and dropped
// columns, display width in code points, and $COLUMNS.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <sstream>

#include "base/table.h"

namespace storewatch {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

std::vector<std::string> table_lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

std::size_t widest(const std::string& text) {
  std::size_t w = 0;
  for (const auto& l : table_lines(text)) w = std::max(w, display_width(l));
  return w;
}

/// An incidents-like table: a summary to cut, a time with a short form, a
/// column to drop.
Table incidents_like() {
  Table t({"UID", "PROBE", "PRIO", "DETECTED", "SUMMARY"});
  t.truncatable(4, 20).droppable(2, 1);
  t.add({"01a21ce0-92", "lane-02-pos", "P2", "2026-12-07 10:58:25Z (3h ago)",
         "lane-02-pos is down: HTTP 503, expected 200 — the POS app does not answer"},
        {}, {"", "", "", "3h ago"});
  t.add({"01a21ce0-9a", "printer-01", "P4", "2026-12-07 10:58:26Z (3h ago)", "paper out"}, {},
        {"", "", "", "3h ago"});
  return t;
}

TEST(DisplayWidth, CountsCodePointsNotBytes) {
  EXPECT_EQ(display_width("abc"), 3u);
  EXPECT_EQ(display_width("Kasse Süd …"), 11u);
  EXPECT_EQ(truncate_display("Kasse Süd 3", 8), "Kasse S…");
  EXPECT_EQ(truncate_display("Kasse Süd 3", 9), "Kasse Sü…");
  EXPECT_EQ(truncate_display("Kasse Süd 3", 11), "Kasse Süd 3");
  EXPECT_EQ(truncate_display("Süd", 1), "…");
  EXPECT_EQ(truncate_display("Süd", 0), "");
}

TEST(TableFit, UnlimitedIsTheWholeTable) {
  const std::string text = incidents_like().render(false);
  EXPECT_EQ(text, incidents_like().render(false, kUnlimited));
  EXPECT_THAT(text, HasSubstr("the POS app does not answer\n"));
  EXPECT_THAT(text, HasSubstr("2026-12-07 10:58:25Z (3h ago)"));
  EXPECT_GT(widest(text), 100u);
}

TEST(TableFit, CutsTheSummaryFirstThenShortensThenDrops) {
  Table t = incidents_like();
  // Wide enough with the summary cut: the rest whole.
  std::string text = t.render(false, 100);
  EXPECT_LE(widest(text), 100u) << text;
  EXPECT_THAT(text, HasSubstr("2026-12-07 10:58:25Z (3h ago)"));
  EXPECT_THAT(text, HasSubstr("P2"));
  EXPECT_THAT(text, HasSubstr("…\n"));
  EXPECT_EQ(widest(text), 100u) << "the room left goes to the summary:\n" << text;
  // 80: DETECTED says only how long ago, PRIO stays.
  text = t.render(false, 80);
  EXPECT_LE(widest(text), 80u) << text;
  EXPECT_THAT(text, Not(HasSubstr("10:58:25Z")));
  EXPECT_THAT(text, HasSubstr("3h ago"));
  EXPECT_THAT(text, HasSubstr("PRIO"));
  EXPECT_THAT(text, HasSubstr("paper out\n"));
  // 60: PRIO goes.
  text = t.render(false, 60);
  EXPECT_LE(widest(text), 60u) << text;
  EXPECT_THAT(text, Not(HasSubstr("PRIO")));
  EXPECT_THAT(text, HasSubstr("01a21ce0-92"));
  // Columns stay aligned.
  const auto rows = table_lines(text);
  EXPECT_EQ(rows[1].find("lane-02-pos"), rows[0].find("PROBE"));
  EXPECT_EQ(rows[2].find("printer-01"), rows[0].find("PROBE"));
}

TEST(TableFit, NeverWrapsEvenWhenNothingMoreCanGive) {
  Table t = incidents_like();
  for (std::size_t w : {50u, 30u, 10u, 1u}) {
    const std::string text = t.render(false, w);
    EXPECT_LE(widest(text), w) << text;
    EXPECT_EQ(table_lines(text).size(), 3u) << text;
  }
}

TEST(TableFit, WithoutHintsTheLastColumnIsCut) {
  Table t({"PROBE", "STATE", "MESSAGE"});
  t.add({"lane-02-pos", "fail", std::string(100, 'x')});
  const std::string text = t.render(false, 40);
  EXPECT_LE(widest(text), 40u) << text;
  EXPECT_THAT(text, HasSubstr("lane-02-pos  fail   xxx"));
  EXPECT_THAT(text, HasSubstr("x…\n"));
}

TEST(TableFit, ColourDoesNotCountAndIsKeptWhenCut) {
  Table t({"STATE", "MESSAGE"});
  t.add({"failing", "a long message that will be cut short"}, {Colour::red, Colour::none});
  const std::string text = t.render(true, 30);
  EXPECT_THAT(text, HasSubstr("\033[31mfailing\033[0m"));
  for (const auto& l : table_lines(t.render(false, 30))) EXPECT_LE(display_width(l), 30u) << l;
}

TEST(TerminalWidth, ColumnsAppliesOnAPipeTooAndIsOtherwiseUnlimited) {
  const char* saved = std::getenv("COLUMNS");
  const std::string restore = saved != nullptr ? saved : "";
  std::FILE* pipe = ::popen("true", "w");
  ASSERT_NE(pipe, nullptr);
  ::setenv("COLUMNS", "80", 1);
  EXPECT_EQ(terminal_width(pipe), 80u);
  ::setenv("COLUMNS", "wide", 1);
  EXPECT_EQ(terminal_width(pipe), kUnlimited);
  ::setenv("COLUMNS", "0", 1);
  EXPECT_EQ(terminal_width(pipe), kUnlimited);
  ::unsetenv("COLUMNS");
  EXPECT_EQ(terminal_width(pipe), kUnlimited);
  ::pclose(pipe);
  if (saved != nullptr) ::setenv("COLUMNS", restore.c_str(), 1);
}

}  // namespace
}  // namespace storewatch
