// Short uids (base/short_uid.h): git's shortest unique start, and the
// answer to a start that names several.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "base/clock.h"
#include "base/short_uid.h"
#include "incident/incident.h"

namespace storewatch {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(UniquePrefixes, AreEightCharactersWhenTheUidsDifferThere) {
  EXPECT_THAT(unique_prefixes(
                  {"01a21ce0-92af-7000-8000-000000000001", "01a21cf1-92af-7000-8000-000000000002"}),
              ElementsAre("01a21ce0", "01a21cf1"));
  EXPECT_THAT(unique_prefixes({"01a21ce0-92af-7000-8000-000000000001"}), ElementsAre("01a21ce0"));
  EXPECT_THAT(unique_prefixes({}), ElementsAre());
}

TEST(UniquePrefixes, RunThroughTheHyphenToTheFirstCharacterThatDiffers) {
  // Opened a second apart: the same first 8 characters and more.
  EXPECT_THAT(unique_prefixes({"01a21ce0-92af-7000-8000-000000000001",
                               "01a21ce0-9a03-7000-8000-000000000002",
                               "01a21ce0-9a11-7000-8000-000000000003"}),
              ElementsAre("01a21ce0-92", "01a21ce0-9a0", "01a21ce0-9a1"));
  // Never ends on the hyphen: "01a21ce0-" names nothing more than "01a21ce0".
  EXPECT_THAT(unique_prefixes({"01a21ce0-92af", "01a21ce1-92af"}, 8),
              ElementsAre("01a21ce0", "01a21ce1"));
  EXPECT_THAT(unique_prefixes({"01a21ce0-92af", "01a21ce0x92af"}, 8),
              ElementsAre("01a21ce0-9", "01a21ce0x"));
}

TEST(UniquePrefixes, KeepTheOrderAndGiveADuplicateOrAStartWhole) {
  EXPECT_THAT(unique_prefixes({"bbbbbbbbbb2", "aaaaaaaaaa", "bbbbbbbbbb1", "aaaaaaaaaa"}),
              ElementsAre("bbbbbbbbbb2", "aaaaaaaaaa", "bbbbbbbbbb1", "aaaaaaaaaa"));
  EXPECT_THAT(unique_prefixes({"abcdefghij", "abcdefghijkl"}),
              ElementsAre("abcdefghij", "abcdefghijk"));
  EXPECT_THAT(unique_prefixes({"abc", "abd"}), ElementsAre("abc", "abd"));
  EXPECT_THAT(unique_prefixes({"abcdef", "abcxyz"}, 2), ElementsAre("abcd", "abcx"));
}

TEST(UniquePrefixes, TellApartIncidentsOpenedInTheSameMillisecond) {
  const WallTime t = SystemClock().wall_now();
  std::vector<std::string> uids;
  for (int i = 0; i < 50; ++i) uids.push_back(new_uid(t));
  const auto shown = unique_prefixes(uids);
  for (std::size_t i = 0; i < uids.size(); ++i) {
    EXPECT_EQ(uids[i].rfind(shown[i], 0), 0u);
    EXPECT_GE(shown[i].size(), 14u) << shown[i];  // the millisecond is shared
    EXPECT_NE(shown[i].back(), '-');
    for (std::size_t j = 0; j < uids.size(); ++j) {
      if (j == i) continue;
      EXPECT_NE(uids[j].rfind(shown[i], 0), 0u) << shown[i] << " names " << uids[j];
    }
  }
}

TEST(AmbiguousUidMessage, ListsEachCandidateByItsUniquePrefix) {
  const std::string text = ambiguous_uid_message(
      "01a21ce0", "incidents", {"UID", "PROBE", "STATE", "DETECTED"},
      {{"01a21ce0-92af-7000-8000-000000000001", "lane-02-pos", "open", "2026-12-07 10:58:25Z"},
       {"01a21ce0-9a03-7000-8000-000000000002", "printer-01", "resolved", "2026-12-07 10:58:26Z"}},
      3);
  EXPECT_THAT(text, HasSubstr("'01a21ce0' matches 5 incidents; give more of the uid:\n"));
  EXPECT_THAT(text, HasSubstr("\n  UID          PROBE        STATE     DETECTED\n"));
  EXPECT_THAT(text, HasSubstr("\n  01a21ce0-92  lane-02-pos  open      2026-12-07 10:58:25Z\n"));
  EXPECT_THAT(text, HasSubstr("\n  01a21ce0-9a  printer-01   resolved  2026-12-07 10:58:26Z\n"));
  EXPECT_THAT(text, HasSubstr("\n  and 3 more"));
  EXPECT_NE(text.back(), '\n');
}

}  // namespace
}  // namespace storewatch
