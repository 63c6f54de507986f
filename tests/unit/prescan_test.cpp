// The pre-scan that bounds a TOML text before toml++ parses it
// (config/prescan.h): each limit, where it reports, and no false alarm on
// brackets, dots and '#' inside strings and comments. Then through the
// loader: the hostile files of issue 18 are errors at file:line:col, not a
// crash.
#include "config/prescan.h"

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

#include "config/config.h"
#include "probes/registry.h"

namespace storewatch::config::detail {
namespace {

using ::testing::HasSubstr;

std::string repeat_joined(const std::string& part, int n, const std::string& sep) {
  std::string out;
  for (int i = 0; i < n; ++i) {
    if (i > 0) out += sep;
    out += part;
  }
  return out;
}

std::string repeated(const std::string& s, int n) {
  std::string out;
  for (int i = 0; i < n; ++i) out += s;
  return out;
}

/// "line:col: message" of the problem, or "" when there is none.
std::string problem_of(const std::string& text) {
  auto p = prescan_toml(text);
  return p ? fmt::format("{}:{}: {}", p->line, p->column, p->message) : std::string();
}

TEST(Prescan, ARealConfigPasses) {
  EXPECT_EQ(problem_of(R"(# storewatch
[store]
id = "store-0042"
name = "Main St [north] # 2"   # a comment with [[brackets]] and a.b.c
trading_hours = "Mon-Sat 07:00-22:00"

[agent.extra]
dotted.key = 1
when = 1979-05-27 07:32:00Z

[[probe]]
name = "lane-01"
type = "exec"
command = ["/bin/sh", "-c", "echo '[a.b.c]' # not a comment"]
labels = { lane = "01", "quoted.key" = 'x', nested = { a = [1, [2, [3]]] } }
matrix = [
  [1, 2], # a comment inside an array [[[
  [3, 4],
]
text = """
[a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a]
quotes "" and \""" inside""""
lit = '''
{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{ ''' 
)"),
            "");
}

TEST(Prescan, BracketsDotsAndHashesInStringsAndCommentsAreText) {
  const std::string deep = "[" + repeat_joined("a", 100, ".") + "]";
  const std::string nested = repeated("[", 100);
  for (const std::string& text : {
           fmt::format("x = \"{}\"\n", deep),
           fmt::format("x = '{}'\n", nested),
           fmt::format("x = \"\"\"\n{}\n{}\n\"\"\"\n", deep, nested),
           fmt::format("x = '''\n{}\n'''\n", deep),
           fmt::format("# {}\n", deep),
           fmt::format("x = 1 # {}\n", nested),
           fmt::format("x = [ # {}\n 1,\n]\n", nested),
           fmt::format("\"{}\" = 1\n", repeat_joined("a", 100, ".")),
           fmt::format("x = \"escaped \\\" {}\"\n", deep),
           fmt::format("x = \"\"\"a \\\"\"\" {}\"\"\"\n", deep),
       }) {
    EXPECT_EQ(problem_of(text), "") << text;
  }
}

TEST(Prescan, UpToTheLimitsPasses) {
  EXPECT_EQ(problem_of("[" + repeat_joined("a", kMaxTomlDepth, ".") + "]\n"), "");
  EXPECT_EQ(problem_of(repeat_joined("a", kMaxTomlDepth, ".") + " = 1\n"), "");
  EXPECT_EQ(problem_of("x = " + repeated("[", kMaxTomlDepth - 1) +
                       repeated("]", kMaxTomlDepth - 1) + "\n"),
            "");
  EXPECT_EQ(problem_of(std::string(kMaxTomlKeyBytes, 'k') + " = 1\n"), "");
  EXPECT_EQ(problem_of("\"" + std::string(kMaxTomlKeyBytes, 'k') + "\" = 1\n"), "");
}

TEST(Prescan, ADeepTableHeaderIsRefusedAtThePartPastTheLimit) {
  // Part 33 of line 3 starts at column 1 + 2 * 32 + 1.
  const std::string text = "[store]\nid = \"s\"\n[" + repeat_joined("a", 40000, ".") + "]\n";
  auto p = prescan_toml(text);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->line, 3);
  EXPECT_EQ(p->column, 2 + 2 * kMaxTomlDepth);
  EXPECT_THAT(p->message, HasSubstr("table header nests more than 32 levels"));
  // An array of tables too, and spaces around the dots.
  p = prescan_toml("[[" + repeat_joined("a", 40, " . ") + "]]\n");
  ASSERT_TRUE(p);
  EXPECT_EQ(p->line, 1);
  EXPECT_EQ(p->column, 3 + 4 * kMaxTomlDepth);
}

TEST(Prescan, ALongDottedKeyIsRefused) {
  auto p = prescan_toml("x = 1\n" + repeat_joined("a", 50000, ".") + " = 1\n");
  ASSERT_TRUE(p);
  EXPECT_EQ(p->line, 2);
  EXPECT_EQ(p->column, 1 + 2 * kMaxTomlDepth);
  EXPECT_THAT(p->message, HasSubstr("dotted key nests more than 32 levels"));
  // A dotted key counts from the depth of the table it is in.
  p = prescan_toml("[" + repeat_joined("t", 30, ".") + "]\na.b.c = 1\n");
  ASSERT_TRUE(p);
  EXPECT_EQ(p->line, 2);
  EXPECT_EQ(p->column, 5);
  // And inside an inline table.
  p = prescan_toml("x = { " + repeat_joined("'q'", 40, ".") + " = 1 }\n");
  ASSERT_TRUE(p);
  EXPECT_EQ(p->column, 7 + 4 * (kMaxTomlDepth - 2));  // x and {} are 2 levels
}

TEST(Prescan, DeepArraysAndInlineTablesAreRefused) {
  auto p = prescan_toml("x = " + repeated("[", 50000) + repeated("]", 50000) + "\n");
  ASSERT_TRUE(p);
  EXPECT_EQ(p->line, 1);
  EXPECT_EQ(p->column, 5 + kMaxTomlDepth - 1);  // the key is level 1
  EXPECT_THAT(p->message, HasSubstr("array nests more than 32 levels"));

  // Keys inside inline tables are levels too: x, {, a, {, a, … puts a key at 33.
  p = prescan_toml("x = " + repeated("{a=", 50000) + "1" + repeated("}", 50000) + "\n");
  ASSERT_TRUE(p);
  EXPECT_EQ(p->line, 1);
  EXPECT_EQ(p->column, 5 + 3 * 15 + 1);
  EXPECT_THAT(p->message, HasSubstr("key nests more than 32 levels"));
  p = prescan_toml("[" + repeat_joined("t", kMaxTomlDepth - 1, ".") + "]\nx = { a = 1 }\n");
  ASSERT_TRUE(p);
  EXPECT_EQ(p->line, 2);
  EXPECT_EQ(p->column, 5);
  EXPECT_THAT(p->message, HasSubstr("inline table nests more than 32 levels"));

  // Across lines, with comments between the elements.
  p = prescan_toml("x = [\n" + repeated("[ # c\n", 40) + "]\n");
  ASSERT_TRUE(p);
  EXPECT_EQ(p->line, 1 + kMaxTomlDepth - 1);
  EXPECT_EQ(p->column, 1);
}

TEST(Prescan, ALongKeyIsRefused) {
  auto p = prescan_toml("[store]\n  " + std::string(kMaxTomlKeyBytes + 1, 'k') + " = 1\n");
  ASSERT_TRUE(p);
  EXPECT_EQ(p->line, 2);
  EXPECT_EQ(p->column, 3);
  EXPECT_THAT(p->message, HasSubstr("a key of 257 bytes; keys are at most 256 bytes"));
  p = prescan_toml("[a.'" + std::string(100000, 'k') + "']\n");
  ASSERT_TRUE(p);
  EXPECT_EQ(p->column, 4);
  EXPECT_THAT(p->message, HasSubstr("a key of 100000 bytes"));
  p = prescan_toml("x = { \"" + std::string(300, 'k') + "\" = 1 }\n");
  ASSERT_TRUE(p);
  EXPECT_EQ(p->column, 7);
}

TEST(Prescan, ColumnsCountCharactersAndAByteOrderMarkIsSkipped) {
  // "é" is two bytes, one column.
  auto p = prescan_toml("x = \"é\" # é\n[" + repeat_joined("a", 40, ".") + "]\n");
  ASSERT_TRUE(p);
  EXPECT_EQ(p->line, 2);
  p = prescan_toml("\"é\" = { " + std::string(300, 'k') + " = 1 }\n");
  ASSERT_TRUE(p);
  EXPECT_EQ(p->column, 9);
  p = prescan_toml("\xEF\xBB\xBF[" + repeat_joined("a", 40, ".") + "]\n");
  ASSERT_TRUE(p);
  EXPECT_EQ(p->line, 1);
}

TEST(Prescan, TextThatIsNotTomlIsLeftToTheParserAndStillScanned) {
  // Nothing to say about broken syntax: toml++ reports it.
  for (const std::string text : {"this is not toml\n", "x = \"unterminated\n", "x = [1, 2\n",
                                 "[a.b\n", "= 1\n", "x = '''never closed\n", "[[\n", "x = {\n"}) {
    EXPECT_EQ(problem_of(text), "") << text;
  }
  // A broken line does not hide a hostile one after it.
  EXPECT_THAT(problem_of("this is not toml\n[" + repeat_joined("a", 40, ".") + "]\n"),
              HasSubstr("2:"));
}

TEST(Prescan, TheLoaderReportsItAtFileLineColumn) {
  // Under [store], a key starts one level deep: its 32nd part is one too many.
  auto loaded = load_string("[store]\nid = \"s\"\n" + repeat_joined("a", 50000, ".") + " = 1\n",
                            "hostile.toml", probes::schemas());
  EXPECT_FALSE(loaded.ok());
  ASSERT_EQ(loaded.diagnostics.size(), 1u);
  EXPECT_THAT(to_string(loaded.diagnostics[0]),
              HasSubstr("hostile.toml:3:63: error: dotted key nests more than 32 levels deep"));
  auto hq = load_hq_string("[" + repeat_joined("h", 40000, ".") + "]\n", "hq.toml");
  EXPECT_FALSE(hq.ok());
  ASSERT_EQ(hq.diagnostics.size(), 1u);
  EXPECT_THAT(to_string(hq.diagnostics[0]), HasSubstr("hq.toml:1:66: error: table header"));
}

}  // namespace
}  // namespace storewatch::config::detail
