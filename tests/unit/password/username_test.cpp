#include "common/username.hpp"

#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <vector>

namespace licensing {
namespace {

std::string repeat(std::string_view piece, std::size_t count) {
  std::string out;
  for (std::size_t i = 0; i < count; ++i) out += piece;
  return out;
}

std::string key_of(std::string_view raw) {
  const auto result = normalize_username(raw);
  EXPECT_TRUE(result.has_value()) << "rejected: " << raw;
  return result ? result->key : std::string("<rejected>");
}

struct UsernameCase {
  std::string label;
  std::string raw;
  std::optional<UsernameError> expected;  // nullopt: accepted
};

std::vector<UsernameCase> username_cases() {
  return {
      // Accepted.
      {"ascii lowercase", "alice", std::nullopt},
      {"ascii mixed case", "Alice", std::nullopt},
      {"digits and separators", "a.b-c_d9", std::nullopt},
      {"digits only", "123", std::nullopt},
      {"exactly 3", "abc", std::nullopt},
      {"exactly 32", std::string(32, 'a'), std::nullopt},
      {"precomposed accent", "jos\u00e9", std::nullopt},
      {"decomposed accent", "jose\u0301", std::nullopt},
      {"full-width latin", "\uff21\uff4c\uff49\uff43\uff45", std::nullopt},
      {"sharp s", "stra\u00dfe", std::nullopt},
      {"ligature", "\ufb01sh", std::nullopt},
      {"greek", "\u0395\u03bb\u03ad\u03bd\u03b7", std::nullopt},
      {"cyrillic", "\u041d\u0430\u0442\u0430\u0448\u0430", std::nullopt},
      {"han", "\u5c71\u7530\u592a\u90ce", std::nullopt},
      {"han with hiragana", "\u5c71\u7530\u305f\u308d\u3046", std::nullopt},
      {"hangul", "\uae40\ucca0\uc218", std::nullopt},
      {"devanagari with marks", "\u0938\u0941\u0928\u0940\u0932", std::nullopt},
      {"32 han", repeat("\u6f22", 32), std::nullopt},
      {"32 code points after nfc", repeat("e\u0301", 32), std::nullopt},

      // Length and encoding.
      {"empty", "", UsernameError::too_short},
      {"two letters", "ab", UsernameError::too_short},
      {"33 ascii", std::string(33, 'a'), UsernameError::too_long},
      {"33 han", repeat("\u6f22", 33), UsernameError::too_long},
      {"257 bytes", std::string(257, 'a'), UsernameError::too_long},
      {"nul", std::string("al\0ice", 6), UsernameError::invalid_utf8},
      {"bad continuation", "al\xc3\x28ice", UsernameError::invalid_utf8},
      {"overlong slash", "al\xc0\xafice", UsernameError::invalid_utf8},
      {"surrogate", "al\xed\xa0\x80ice", UsernameError::invalid_utf8},
      {"above U+10FFFF", "al\xf4\x90\x80\x80ice", UsernameError::invalid_utf8},
      {"truncated", "alice\xe2\x82", UsernameError::invalid_utf8},

      // Invisible, control, space, symbol.
      {"zero width space", "alice\u200b", UsernameError::disallowed_character},
      {"zero width joiner", "al\u200dice", UsernameError::disallowed_character},
      {"zero width non-joiner", "al\u200cice", UsernameError::disallowed_character},
      {"soft hyphen", "al\u00adice", UsernameError::disallowed_character},
      {"right-to-left override", "\u202ealice", UsernameError::disallowed_character},
      {"left-to-right isolate", "al\u2066ice", UsernameError::disallowed_character},
      {"variation selector", "alice\ufe0f", UsernameError::disallowed_character},
      {"combining grapheme joiner", "al\u034fice", UsernameError::disallowed_character},
      {"hangul filler", "al\u3164ice", UsernameError::disallowed_character},
      {"space", "al ice", UsernameError::disallowed_character},
      {"no-break space", "al\u00a0ice", UsernameError::disallowed_character},
      {"tab", "al\tice", UsernameError::disallowed_character},
      {"delete", "al\x7f" "ice", UsernameError::disallowed_character},
      {"at sign", "al@ice", UsernameError::disallowed_character},
      {"plus", "al+ice", UsernameError::disallowed_character},
      {"emoji", "alice\U0001f600", UsernameError::disallowed_character},
      {"full-width full stop", "al\uff0eice", UsernameError::disallowed_character},
      {"roman numeral", "abc\u216b", UsernameError::disallowed_character},
      {"leading combining mark", "\u0301alice", UsernameError::disallowed_character},
      {"mark after digit", "abc1\u0301", UsernameError::disallowed_character},
      {"obsolete gothic script", "\U00010330\U00010331\U00010332", UsernameError::disallowed_character},
      {"repeated combining mark", "ale\u0301\u0301x", UsernameError::disallowed_character},

      // Separators.
      {"leading dot", ".alice", UsernameError::misplaced_separator},
      {"trailing dot", "alice.", UsernameError::misplaced_separator},
      {"leading hyphen", "-alice", UsernameError::misplaced_separator},
      {"trailing underscore", "alice_", UsernameError::misplaced_separator},
      {"double dot", "al..ice", UsernameError::misplaced_separator},
      {"dot underscore", "al._ice", UsernameError::misplaced_separator},

      // Scripts.
      {"cyrillic a in latin", "\u0430lice", UsernameError::mixed_script},
      {"cyrillic a in paypal", "p\u0430yp\u0430l", UsernameError::mixed_script},
      {"greek alpha in latin", "\u0391lice", UsernameError::mixed_script},
      {"latin with han", "alice\u5c71", UsernameError::mixed_script},
      {"arabic-indic digits with latin", "abc\u0661\u0662", UsernameError::mixed_script},
      {"two digit systems", "\u0938\u0941\u0928\u0940\u0932\u0967" "1", UsernameError::mixed_script},
  };
}

TEST(Username, TableGivesExactCodes) {
  for (const auto& test_case : username_cases()) {
    const auto result = normalize_username(test_case.raw);
    if (!test_case.expected) {
      EXPECT_TRUE(result.has_value()) << test_case.label << ": " << (result ? "" : result.error().detail);
      continue;
    }
    ASSERT_FALSE(result.has_value()) << test_case.label;
    EXPECT_EQ(result.error().code, *test_case.expected) << test_case.label << ": " << result.error().detail;
  }
}

TEST(Username, NormalizationIsIdempotent) {
  for (const auto& test_case : username_cases()) {
    const auto first = normalize_username(test_case.raw);
    if (!first) continue;

    const auto second = normalize_username(first->display);
    ASSERT_TRUE(second.has_value()) << test_case.label;
    EXPECT_EQ(*second, *first) << test_case.label;
  }
}

TEST(Username, DisplayIsNfcOfInput) {
  const auto decomposed = normalize_username("jose\u0301");
  ASSERT_TRUE(decomposed.has_value());
  EXPECT_EQ(decomposed->display, "jos\u00e9");

  const auto mixed_case = normalize_username("Alice");
  ASSERT_TRUE(mixed_case.has_value());
  EXPECT_EQ(mixed_case->display, "Alice");
}

TEST(Username, CaseVariantsShareKey) {
  const std::string alice = key_of("alice");
  EXPECT_EQ(key_of("Alice"), alice);
  EXPECT_EQ(key_of("ALICE"), alice);
  EXPECT_EQ(key_of("aLiCe"), alice);
  EXPECT_EQ(key_of("stra\u00dfe"), key_of("STRASSE"));
  EXPECT_EQ(key_of("\u03a3\u03bf\u03c6\u03af\u03b1"), key_of("\u03c3\u03bf\u03c6\u03af\u03b1"));
}

TEST(Username, NfcAndNfdShareKey) { EXPECT_EQ(key_of("jos\u00e9"), key_of("jose\u0301")); }

TEST(Username, FullWidthSharesLatinKey) {
  EXPECT_EQ(key_of("\uff21\uff4c\uff49\uff43\uff45"), key_of("alice"));
  EXPECT_EQ(key_of("\ufb01sh"), key_of("fish"));
}

TEST(Username, WholeScriptLookalikesShareLatinKey) {
  // Cyrillic а, р, е and Greek ο, ρ look like Latin a, p, e and o, p.
  EXPECT_EQ(key_of("\u0430\u0440\u0435"), key_of("ape"));
  EXPECT_EQ(key_of("\u0410\u0420\u0415"), key_of("ape"));
  EXPECT_EQ(key_of("\u03bf\u03c1\u03bf"), key_of("opo"));
}

TEST(Username, DigitLookalikesShareKey) {
  // The skeleton maps 0 to O, which the final case fold turns into o.
  EXPECT_EQ(key_of("bob0"), key_of("bobo"));
  EXPECT_EQ(key_of("BOB0"), key_of("bobo"));
  EXPECT_EQ(key_of("alice1"), key_of("alicel"));
}

TEST(Username, DistinctNamesHaveDistinctKeys) {
  EXPECT_NE(key_of("alice"), key_of("alicia"));
  EXPECT_NE(key_of("bob"), key_of("rob"));
  EXPECT_NE(key_of("\u5c71\u7530\u592a"), key_of("\u5c71\u672c\u592a"));
}

TEST(Username, DetailOmitsInput) {
  const auto result = normalize_username("secret name");
  ASSERT_FALSE(result.has_value());
  EXPECT_EQ(result.error().detail.find("secret"), std::string::npos);
}

}  // namespace
}  // namespace licensing
