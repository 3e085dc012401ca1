#include "common/json.hpp"

#include <gtest/gtest.h>

namespace licensing::json {
namespace {

TEST(ParseStrict, AcceptsObject) {
  const auto parsed = parse_strict(R"({"username": "alice", "n": [1, 2, {"a": null}]})", 8);
  ASSERT_TRUE(parsed.has_value());
  EXPECT_EQ((*parsed)["username"], "alice");
}

TEST(ParseStrict, RejectsDuplicateMember) {
  const auto parsed = parse_strict(R"({"alg": "ES256", "alg": "none"})", 8);
  ASSERT_FALSE(parsed.has_value());
  EXPECT_EQ(parsed.error().code, JsonError::duplicate_member);
  EXPECT_NE(parsed.error().detail.find("alg"), std::string::npos);
}

TEST(ParseStrict, AllowsSameNameInSiblingObjects) {
  EXPECT_TRUE(parse_strict(R"({"a": {"x": 1}, "b": {"x": 2}})", 8).has_value());
}

TEST(ParseStrict, RejectsDeepNesting) {
  const std::string deep = std::string(100000, '[') + std::string(100000, ']');
  const auto parsed = parse_strict(deep, 16);
  ASSERT_FALSE(parsed.has_value());
  EXPECT_EQ(parsed.error().code, JsonError::too_deep);
}

TEST(ParseStrict, AcceptsNestingAtLimit) {
  EXPECT_TRUE(parse_strict("[[[1]]]", 3).has_value());
  EXPECT_FALSE(parse_strict("[[[[1]]]]", 3).has_value());
}

TEST(ParseStrict, RejectsInvalidUtf8) {
  const auto parsed = parse_strict("{\"username\": \"\xc3\x28\"}", 8);
  ASSERT_FALSE(parsed.has_value());
  EXPECT_EQ(parsed.error().code, JsonError::syntax);
}

TEST(ParseStrict, RejectsTrailingBytes) {
  EXPECT_FALSE(parse_strict(R"({"a": 1} x)", 8).has_value());
  EXPECT_FALSE(parse_strict(R"({"a": 1}{"b": 2})", 8).has_value());
}

TEST(ParseStrict, RejectsComments) { EXPECT_FALSE(parse_strict("{/* c */}", 8).has_value()); }

}  // namespace
}  // namespace licensing::json
