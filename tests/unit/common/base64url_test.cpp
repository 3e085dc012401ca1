#include "common/base64url.hpp"

#include <gtest/gtest.h>

namespace licensing {
namespace {

TEST(Base64Url, EncodesRfc4648Vectors) {
  EXPECT_EQ(base64url::encode(std::string_view("")), "");
  EXPECT_EQ(base64url::encode(std::string_view("f")), "Zg");
  EXPECT_EQ(base64url::encode(std::string_view("fo")), "Zm8");
  EXPECT_EQ(base64url::encode(std::string_view("foo")), "Zm9v");
  EXPECT_EQ(base64url::encode(std::string_view("foob")), "Zm9vYg");
  EXPECT_EQ(base64url::encode(std::string_view("fooba")), "Zm9vYmE");
  EXPECT_EQ(base64url::encode(std::string_view("foobar")), "Zm9vYmFy");
}

TEST(Base64Url, UsesUrlSafeAlphabet) {
  const std::vector<std::uint8_t> bytes = {0xfb, 0xff, 0xbf};
  EXPECT_EQ(base64url::encode(bytes), "-_-_");
  EXPECT_EQ(base64url::decode("-_-_"), bytes);
}

TEST(Base64Url, RoundTripsEveryLength) {
  std::vector<std::uint8_t> bytes;
  for (int length = 0; length < 70; ++length) {
    const auto decoded = base64url::decode(base64url::encode(bytes));
    ASSERT_TRUE(decoded.has_value()) << "length " << length;
    EXPECT_EQ(*decoded, bytes) << "length " << length;
    bytes.push_back(static_cast<std::uint8_t>(length * 37));
  }
}

TEST(Base64Url, RejectsPadding) { EXPECT_FALSE(base64url::decode("Zg==").has_value()); }

TEST(Base64Url, RejectsStandardAlphabet) {
  EXPECT_FALSE(base64url::decode("+/+/").has_value());
}

TEST(Base64Url, RejectsImpossibleLength) { EXPECT_FALSE(base64url::decode("Zm9vY").has_value()); }

TEST(Base64Url, RejectsNonZeroTrailingBits) {
  // "Zg" is the one encoding of "f"; "Zh" decodes to the same byte with a stray bit set.
  EXPECT_TRUE(base64url::decode("Zg").has_value());
  EXPECT_FALSE(base64url::decode("Zh").has_value());
  EXPECT_FALSE(base64url::decode("Zm9").has_value());
}

TEST(Base64Url, RejectsWhitespaceAndNul) {
  EXPECT_FALSE(base64url::decode("Zm9v\n").has_value());
  EXPECT_FALSE(base64url::decode(std::string_view("Zm\0v", 4)).has_value());
}

}  // namespace
}  // namespace licensing
