// The Monitoring Plugins output contract: perfdata items, the message line,
// and how a plugin's exit reads as a check result.

#include "probes/perfdata.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fmt/format.h>

#include <cmath>

#include "probes/exec_probe.h"

namespace storewatch::probes {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

std::vector<std::string> labels(const std::vector<PerfItem>& items) {
  std::vector<std::string> out;
  for (const auto& i : items) out.push_back(i.label);
  return out;
}

TEST(Perfdata, FullItem) {
  auto items = parse_perfdata("time=0.012s;1.000;2.000;0.000;10.000");
  ASSERT_EQ(items.size(), 1u);
  EXPECT_EQ(items[0].label, "time");
  EXPECT_DOUBLE_EQ(items[0].value, 0.012);
  EXPECT_EQ(items[0].unit, "s");
  EXPECT_EQ(items[0].warn, "1.000");
  EXPECT_EQ(items[0].crit, "2.000");
  ASSERT_TRUE(items[0].min.has_value());
  EXPECT_DOUBLE_EQ(*items[0].min, 0);
  ASSERT_TRUE(items[0].max.has_value());
  EXPECT_DOUBLE_EQ(*items[0].max, 10);
}

TEST(Perfdata, ValueOnly) {
  auto items = parse_perfdata("users=3");
  ASSERT_EQ(items.size(), 1u);
  EXPECT_DOUBLE_EQ(items[0].value, 3);
  EXPECT_EQ(items[0].unit, "");
  EXPECT_EQ(items[0].warn, "");
  EXPECT_FALSE(items[0].min.has_value());
  EXPECT_FALSE(items[0].max.has_value());
}

TEST(Perfdata, TrailingEmptyFieldsAndRanges) {
  auto items = parse_perfdata("a=1;;;; b=2MB;@10:20;~:30;; c=3%;;;0;100;extra");
  ASSERT_THAT(labels(items), ElementsAre("a", "b", "c"));
  EXPECT_EQ(items[1].unit, "MB");
  EXPECT_EQ(items[1].warn, "@10:20");
  EXPECT_EQ(items[1].crit, "~:30");
  EXPECT_FALSE(items[1].min.has_value());
  EXPECT_DOUBLE_EQ(*items[2].max, 100);
}

TEST(Perfdata, QuotedLabelsWithSpacesEqualsAndQuotes) {
  auto items = parse_perfdata("'/var lib'=12MB;;;0;100 'a=b'=1 'it''s'=2 ''''=3");
  ASSERT_THAT(labels(items), ElementsAre("/var lib", "a=b", "it's", "'"));
  EXPECT_DOUBLE_EQ(items[0].value, 12);
  EXPECT_DOUBLE_EQ(items[1].value, 1);
  EXPECT_DOUBLE_EQ(items[3].value, 3);
}

TEST(Perfdata, UndeterminedValuesAreSkipped) {
  auto items = parse_perfdata("a=U b=U;1;2 c=4");
  EXPECT_THAT(labels(items), ElementsAre("c"));
}

TEST(Perfdata, NegativeExponentAndSignedNumbers) {
  auto items = parse_perfdata("a=-1.5 b=1e3 c=2.5E-2ms d=+7 e=-0.0c f=.5");
  ASSERT_THAT(labels(items), ElementsAre("a", "b", "c", "d", "e", "f"));
  EXPECT_DOUBLE_EQ(items[0].value, -1.5);
  EXPECT_DOUBLE_EQ(items[1].value, 1000);
  EXPECT_DOUBLE_EQ(items[2].value, 0.025);
  EXPECT_EQ(items[2].unit, "ms");
  EXPECT_DOUBLE_EQ(items[3].value, 7);
  EXPECT_EQ(items[4].unit, "c");
  EXPECT_DOUBLE_EQ(items[5].value, 0.5);
}

TEST(Perfdata, UnitsAreKeptAsWrittenAndValuesUnscaled) {
  auto items = parse_perfdata("a=1us b=2KB c=3TB d=4B e=5% f=6°C g=7req/s");
  ASSERT_EQ(items.size(), 7u);
  EXPECT_EQ(items[0].unit, "us");
  EXPECT_EQ(items[1].unit, "KB");
  EXPECT_DOUBLE_EQ(items[1].value, 2);  // not 2048: units are not normalised
  EXPECT_EQ(items[2].unit, "TB");
  EXPECT_EQ(items[5].unit, "°C");
  EXPECT_EQ(items[6].unit, "req/s");
}

TEST(Perfdata, GarbageItemsAreSkippedNotFatal) {
  auto items = parse_perfdata(
      "good=1 =5 noequals 'unclosed=3 x");  // the unterminated quote swallows the rest
  EXPECT_THAT(labels(items), ElementsAre("good"));

  items = parse_perfdata(
      "a= b=abc c=1.2.3 d=1,5 e=nan f=inf g=0x10 h=12 i=1;2;3;notanumber;5 'q'x=1 j=5");
  EXPECT_THAT(labels(items), ElementsAre("h", "i", "j"));
  EXPECT_FALSE(items[1].min.has_value());  // a bad min is dropped, the item kept
  EXPECT_DOUBLE_EQ(*items[1].max, 5);
}

TEST(Perfdata, EmptyAndWhitespace) {
  EXPECT_THAT(parse_perfdata(""), IsEmpty());
  EXPECT_THAT(parse_perfdata("   \t\n "), IsEmpty());
  EXPECT_THAT(parse_perfdata("|||"), IsEmpty());
}

TEST(Perfdata, MultipleItemsAnyWhitespace) {
  auto items = parse_perfdata("  a=1\tb=2\n\nc=3  ");
  EXPECT_THAT(labels(items), ElementsAre("a", "b", "c"));
}

TEST(Perfdata, BinaryLabelsAreMadePrintableAndBounded) {
  std::string junk = "a\x01\xff";
  auto items = parse_perfdata(junk + "=1 " + std::string(1000, 'x') + "=2");
  ASSERT_EQ(items.size(), 2u);
  EXPECT_EQ(items[0].label, "a \xEF\xBF\xBD");
  EXPECT_LE(items[1].label.size(), kMaxLabelBytes + 3);
}

TEST(Perfdata, AtMostMaxItems) {
  std::string many;
  for (int i = 0; i < 500; ++i) many += fmt::format("m{}={} ", i, i);
  EXPECT_EQ(parse_perfdata(many).size(), kMaxPerfItems);
}

TEST(PluginOutput, MessageAndPerfdataOnTheFirstLine) {
  auto out =
      parse_plugin_output("DISK OK - free space: / 3326 MB (56%); | /=2643MB;5948;5958;0;5968\n");
  EXPECT_EQ(out.message, "DISK OK - free space: / 3326 MB (56%);");
  ASSERT_EQ(out.perfdata.size(), 1u);
  EXPECT_EQ(out.perfdata[0].label, "/");
  EXPECT_DOUBLE_EQ(out.perfdata[0].value, 2643);
}

TEST(PluginOutput, NoPerfdata) {
  auto out = parse_plugin_output("OK: all good");
  EXPECT_EQ(out.message, "OK: all good");
  EXPECT_THAT(out.perfdata, IsEmpty());
}

TEST(PluginOutput, MultiLineLongTextAndPerfdata) {
  // The guidelines' example: long text lines, then a '|' and more perfdata
  // lines.
  auto out = parse_plugin_output(
      "DISK OK - free space: / 3326 MB (56%); | /=2643MB;5948;5958;0;5968\n"
      "/ 15272 MB (77%);\n"
      "/boot 68 MB (69%);\n"
      "/home 69357 MB (27%);\n"
      "/var/log 819 MB (84%); | /boot=68MB;88;93;0;98\n"
      "/home=69357MB;253404;253409;0;253414 \n"
      "/var/log=818MB;970;975;0;980\n");
  EXPECT_EQ(out.message, "DISK OK - free space: / 3326 MB (56%);");
  EXPECT_THAT(labels(out.perfdata), ElementsAre("/", "/boot", "/home", "/var/log"));
  EXPECT_DOUBLE_EQ(out.perfdata[3].value, 818);
}

TEST(PluginOutput, LongTextWithoutPerfdataAddsNone) {
  auto out = parse_plugin_output("OK | a=1\nline two\nline three a=2\n");
  EXPECT_THAT(labels(out.perfdata), ElementsAre("a"));
}

TEST(PluginOutput, EmptyAndOnlyBar) {
  EXPECT_EQ(parse_plugin_output("").message, "");
  auto out = parse_plugin_output("| a=1");
  EXPECT_EQ(out.message, "");
  EXPECT_THAT(labels(out.perfdata), ElementsAre("a"));
  EXPECT_EQ(parse_plugin_output("\r\n").message, "");
  EXPECT_EQ(parse_plugin_output("OK\r\nmore").message, "OK");
}

TEST(Printable, ControlAndInvalidBytes) {
  EXPECT_EQ(printable("a\tb\x1b[31mc\x7f"), "a b [31mc");
  EXPECT_EQ(printable("\xff\xfe ok"), "\xEF\xBF\xBD\xEF\xBF\xBD ok");
  EXPECT_EQ(printable("caf\xc3\xa9"), "caf\xc3\xa9");            // é kept
  EXPECT_EQ(printable("\xc3"), "\xEF\xBF\xBD");                  // truncated sequence
  EXPECT_EQ(printable("\xc0\xaf"), "\xEF\xBF\xBD\xEF\xBF\xBD");  // overlong '/'
  EXPECT_EQ(printable("\xed\xa0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");  // surrogate
  EXPECT_EQ(printable(std::string("a\0b", 3)), "a b");
  EXPECT_EQ(printable("  \t padded \n "), "padded");
}

TEST(Printable, BoundedAtACharacterBoundary) {
  std::string text = "x" + std::string(2000, '\xc3');
  for (int i = 0; i < 1000; ++i) text += "\xc3\xa9";
  auto s = printable(text, 100);
  EXPECT_LE(s.size(), 103u);
  EXPECT_EQ(s.substr(s.size() - 3), "\xE2\x80\xA6");
  EXPECT_EQ(printable(s, 1000), s);  // still valid UTF-8: nothing replaced

  EXPECT_EQ(printable(std::string(5000, 'a')).size(), kMaxMessageBytes + 3);
  EXPECT_EQ(printable("short", 100), "short");
}

os::ProcessResult exited(int code, std::string out, std::string err = "") {
  os::ProcessResult r;
  r.outcome = os::ProcessResult::Outcome::exited;
  r.exit_code = code;
  r.out = std::move(out);
  r.err = std::move(err);
  return r;
}

TEST(PluginResult, ExitCodesMapToStatuses) {
  EXPECT_EQ(plugin_result(exited(0, "OK")).status, ProbeStatus::ok);
  EXPECT_EQ(plugin_result(exited(1, "WARN")).status, ProbeStatus::warn);
  EXPECT_EQ(plugin_result(exited(2, "CRIT")).status, ProbeStatus::fail);
  EXPECT_EQ(plugin_result(exited(3, "UNKNOWN")).status, ProbeStatus::unknown);
  auto r = plugin_result(exited(2, "CRITICAL - down | rta=1ms;2;3 pl=100%"));
  EXPECT_EQ(r.message, "CRITICAL - down");
  EXPECT_DOUBLE_EQ(r.metrics.at("rta"), 1);
  EXPECT_DOUBLE_EQ(r.metrics.at("pl"), 100);
}

TEST(PluginResult, OtherExitCodesAndSignalsAreUnknownSayingSo) {
  auto r = plugin_result(exited(127, "", "sh: 1: frobnicate: not found"));
  EXPECT_EQ(r.status, ProbeStatus::unknown);
  EXPECT_THAT(r.message, HasSubstr("exited with code 127, not 0-3"));
  EXPECT_THAT(r.message, HasSubstr("frobnicate: not found"));

  os::ProcessResult killed;
  killed.outcome = os::ProcessResult::Outcome::signalled;
  killed.signal = 11;
  killed.out = "half a line";
  r = plugin_result(killed);
  EXPECT_EQ(r.status, ProbeStatus::unknown);
  EXPECT_THAT(r.message, HasSubstr("killed by signal 11 (SIGSEGV)"));
  EXPECT_THAT(r.message, HasSubstr("half a line"));
}

TEST(PluginResult, SpawnFailuresAreUnknown) {
  os::ProcessResult f;
  f.outcome = os::ProcessResult::Outcome::spawn_failed;
  f.spawn_error = os::ProcessResult::SpawnError::not_executable;
  f.error = "/x: not executable (Permission denied)";
  auto r = plugin_result(f);
  EXPECT_EQ(r.status, ProbeStatus::unknown);
  EXPECT_THAT(r.message, HasSubstr("cannot run the plugin: /x: not executable"));
}

TEST(PluginResult, NoStdoutFallsBackToStderr) {
  auto r = plugin_result(exited(2, "", "connect failed\nsecond line"));
  EXPECT_EQ(r.message, "no output on stdout, stderr: connect failed");
  EXPECT_EQ(plugin_result(exited(0, "")).message, "no output on stdout");
}

TEST(PluginResult, FirstLabelWinsAndTruncationIsSaid) {
  auto run = exited(0, "OK | a=1 a=2");
  run.out_truncated = true;
  auto r = plugin_result(run);
  EXPECT_DOUBLE_EQ(r.metrics.at("a"), 1);
  EXPECT_THAT(r.message, HasSubstr("stdout cut at"));
}

}  // namespace
}  // namespace storewatch::probes
