// The ESC/POS real-time status decoder, with the test vectors of FIELD-NOTES.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fmt/format.h>

#include <vector>

#include "probes/escpos_status.h"

namespace storewatch::probes::escpos {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using Level = Assessment::Level;

Result<PrinterStatus> decode_bytes(std::vector<std::uint8_t> bytes) {
  return decode(bytes);
}

Assessment assess_bytes(std::vector<std::uint8_t> bytes) {
  auto s = decode(bytes);
  if (!s) throw std::runtime_error(s.error().message);
  return assess(*s);
}

TEST(EscposStatus, HealthyPrinterIsOk) {
  auto s = decode_bytes({0x12, 0x12, 0x12, 0x12});
  ASSERT_TRUE(s) << s.error().message;
  EXPECT_FALSE(s->offline);
  EXPECT_FALSE(s->cover_open);
  EXPECT_FALSE(s->paper_end);
  EXPECT_FALSE(s->paper_near_end);
  const auto a = assess(*s);
  EXPECT_EQ(a.level, Level::ok);
  EXPECT_TRUE(a.conditions.empty());
}

TEST(EscposStatus, PaperNearEndIsAWarning) {
  auto s = decode_bytes({0x12, 0x12, 0x12, 0x1E});
  ASSERT_TRUE(s);
  EXPECT_TRUE(s->paper_near_end);
  EXPECT_FALSE(s->paper_end);
  const auto a = assess(*s);
  EXPECT_EQ(a.level, Level::warn);
  EXPECT_THAT(a.conditions, ElementsAre("paper near end"));
}

TEST(EscposStatus, PaperEndFailsAndTheOfflineBitIsNamedToo) {
  auto s = decode_bytes({0x1A, 0x32, 0x12, 0x7E});
  ASSERT_TRUE(s);
  EXPECT_TRUE(s->offline);
  EXPECT_TRUE(s->paper_end_stop);
  EXPECT_TRUE(s->paper_end);
  EXPECT_FALSE(s->cover_open);
  const auto a = assess(*s);
  EXPECT_EQ(a.level, Level::fail);
  // Near end is implied by paper end and not repeated.
  EXPECT_THAT(a.conditions, ElementsAre("paper end", "offline"));
}

TEST(EscposStatus, CoverOpenFails) {
  auto s = decode_bytes({0x1A, 0x16, 0x12, 0x12});
  ASSERT_TRUE(s);
  EXPECT_TRUE(s->cover_open);
  EXPECT_TRUE(s->offline);
  EXPECT_FALSE(s->paper_end);
  const auto a = assess(*s);
  EXPECT_EQ(a.level, Level::fail);
  EXPECT_THAT(a.conditions, ElementsAre("cover open", "offline"));
}

TEST(EscposStatus, CutterAndOtherErrorsFail) {
  EXPECT_THAT(assess_bytes({0x1A, 0x52, 0x1A, 0x12}).conditions,
              ElementsAre("autocutter error", "offline"));
  EXPECT_THAT(assess_bytes({0x1A, 0x52, 0x32, 0x12}).conditions,
              ElementsAre("unrecoverable error", "offline"));
  EXPECT_THAT(assess_bytes({0x12, 0x12, 0x52, 0x12}).conditions,
              ElementsAre("auto-recoverable error"));
  EXPECT_THAT(assess_bytes({0x12, 0x52, 0x12, 0x12}).conditions,
              ElementsAre("error (cause not reported)"));
  EXPECT_EQ(assess_bytes({0x12, 0x12, 0x1A, 0x12}).level, Level::fail);
}

TEST(EscposStatus, OfflineAloneFails) {
  const auto a = assess_bytes({0x1A, 0x12, 0x12, 0x12});
  EXPECT_EQ(a.level, Level::fail);
  EXPECT_THAT(a.conditions, ElementsAre("offline"));
}

TEST(EscposStatus, GarbageNamesTheByteAndTheRequest) {
  auto s = decode_bytes({0xFF, 0x00, 0x41, 0x12});
  ASSERT_FALSE(s);
  EXPECT_THAT(s.error().message, HasSubstr("DLE EOT 1"));
  EXPECT_THAT(s.error().message, HasSubstr("0xFF"));
  EXPECT_THAT(s.error().message, HasSubstr("garbage"));

  auto third = decode_bytes({0x12, 0x12, 0x41, 0x12});
  ASSERT_FALSE(third);
  EXPECT_THAT(third.error().message, HasSubstr("DLE EOT 3 was answered with 0x41"));
}

TEST(EscposStatus, ShortAndLongInputAreErrorsNotCrashes) {
  for (std::size_t n = 0; n < 4; ++n) {
    std::vector<std::uint8_t> bytes(n, 0x12);
    auto s = decode(bytes);
    ASSERT_FALSE(s) << n;
    EXPECT_THAT(s.error().message, HasSubstr(fmt::format("short reply: {} of 4", n)));
  }
  auto long_reply = decode_bytes({0x12, 0x12, 0x12, 0x12, 0x12});
  ASSERT_FALSE(long_reply);
  EXPECT_THAT(long_reply.error().message, HasSubstr("long reply"));
  // A bad byte is named even before the reply is complete.
  auto bad_first = decode_bytes({0x00});
  ASSERT_FALSE(bad_first);
  EXPECT_THAT(bad_first.error().message, HasSubstr("0x00"));
}

TEST(EscposStatus, UnknownBitsAreTolerated) {
  // Bits the decoder has no use for (0x04 of DLE EOT 3 is model-specific) or
  // that are informational (drawer pin, feed button, paper being fed) leave a
  // healthy printer healthy; a lone half of the near-end pair is no warning.
  auto s = decode_bytes({0x16 | 0x40, 0x12 | 0x08, 0x12 | 0x04, 0x12 | 0x04});
  ASSERT_TRUE(s) << s.error().message;
  EXPECT_TRUE(s->drawer_pin_high);
  EXPECT_TRUE(s->feed_button_pressed);
  EXPECT_TRUE(s->paper_feeding);
  EXPECT_FALSE(s->paper_near_end);  // only one of the two near-end bits
  EXPECT_EQ(assess(*s).level, Level::ok);
}

TEST(EscposStatus, EveryByteEitherDecodesOrIsRejected) {
  for (int b = 0; b < 256; ++b) {
    const auto byte = static_cast<std::uint8_t>(b);
    std::vector<std::uint8_t> bytes{byte, byte, byte, byte};
    auto s = decode(bytes);
    EXPECT_EQ(s.ok(), is_status_byte(byte)) << b;
    if (s) (void)assess(*s);
  }
}

}  // namespace
}  // namespace storewatch::probes::escpos
