#include "base/json_text.h"

#include "base/find_bytes.h"

#include <nlohmann/json.hpp>

#include <gtest/gtest.h>

#include <random>
#include <string>

namespace storewatch::json_text {
namespace {

std::string as_json(std::string_view s) {
  std::string out;
  append_string(out, s);
  return out;
}

TEST(JsonText, EscapesAsNlohmannDoes) {
  const std::string samples[] = {
      "",
      "plain",
      "quote \" backslash \\ slash /",
      std::string("nul \0 byte", 10),
      "\b\f\n\r\t\x01\x1f\x7f",
      "caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80",  // é € 😀
  };
  for (const auto& s : samples) {
    EXPECT_EQ(as_json(s), nlohmann::json(s).dump()) << s;
  }
}

TEST(JsonText, RandomValidTextRoundTrips) {
  std::mt19937 rng(7);
  // Code points from every UTF-8 length, control characters and the
  // characters JSON escapes.
  const char32_t pool[] = {0x00, 0x01,  0x08,  0x1F,   '"',    '\\',   'a',    '~',     0x7F,
                           0x80, 0x7FF, 0x800, 0xD7FF, 0xE000, 0xFFFD, 0xFFFF, 0x10000, 0x10FFFF};
  auto encode = [](std::string& out, char32_t cp) {
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      out += static_cast<char>(0xC0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += static_cast<char>(0xE0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (cp >> 18));
      out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    }
  };
  for (int n = 0; n < 2000; ++n) {
    std::string s;
    const int len = static_cast<int>(rng() % 20);
    for (int i = 0; i < len; ++i) encode(s, pool[rng() % std::size(pool)]);
    const std::string text = as_json(s);
    EXPECT_EQ(text, nlohmann::json(s).dump());
    EXPECT_EQ(nlohmann::json::parse(text).get<std::string>(), s);
  }
}

TEST(JsonText, InvalidUtf8BecomesReplacementCharacters) {
  const std::string bad[] = {
      "\xff",              // never valid
      "\xC0\xAF",          // overlong '/'
      "\xE0\x80\xAF",      // overlong
      "\xED\xA0\x80",      // surrogate U+D800
      "\xF4\x90\x80\x80",  // above U+10FFFF
      "\xE2\x82",          // cut short
      "ok\xC3",            // cut short at the end
  };
  for (const auto& s : bad) {
    const std::string text = as_json(s);
    // Valid JSON whose every invalid byte is now U+FFFD.
    const std::string back = nlohmann::json::parse(text).get<std::string>();
    EXPECT_NE(back.find("\xEF\xBF\xBD"), std::string::npos) << text;
    EXPECT_NO_THROW(nlohmann::json(back).dump()) << text;
  }
  EXPECT_EQ(as_json("a\xff"
                    "b"),
            "\"a\xEF\xBF\xBD"
            "b\"");
}

TEST(JsonText, ObjectWritesMembersInOrder) {
  std::string out;
  Object o(out);
  o.string("s", "x")
      .string_or_null("n", std::nullopt)
      .string_or_null("m", std::string("y"))
      .boolean("b", true)
      .integer("i", -42)
      .raw("r", "[1,2]")
      .close();
  EXPECT_EQ(out, R"({"s":"x","n":null,"m":"y","b":true,"i":-42,"r":[1,2]})");
  std::string empty;
  Object(empty).close();
  EXPECT_EQ(empty, "{}");
}

// The escapers' eight-bytes-at-a-time search finds what find_first_of
// finds, wherever in a word the byte is, on texts of every length.
TEST(FindAnyOf, FindsWhatFindFirstOfFinds) {
  std::mt19937 rng(7);
  const std::string alphabet = std::string("abc\"\\\t\n\r{}:,") + '\0' + "\xc3\xa9\x80\xff";
  for (int round = 0; round < 20'000; ++round) {
    std::string text(rng() % 40, 'x');
    for (char& c : text) {
      if (rng() % 6 == 0) c = alphabet[rng() % alphabet.size()];
    }
    for (std::size_t from = 0; from <= text.size(); from += 1 + rng() % 5) {
      EXPECT_EQ((find_any_of<'\\', '\t', '\n', '\r'>(text, from)),
                std::string_view(text).find_first_of(std::string_view("\\\t\n\r", 4), from))
          << text;
      EXPECT_EQ((find_any_of<'"', '\\'>(text, from)), text.find_first_of("\"\\", from)) << text;
      EXPECT_EQ((find_any_of<'\0'>(text, from)), text.find('\0', from)) << text;
    }
  }
}

}  // namespace
}  // namespace storewatch::json_text
