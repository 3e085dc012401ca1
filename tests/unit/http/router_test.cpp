#include <utility>  // Boost 1.74's awaitable.hpp needs it first with GCC 12.

#include "http/server.hpp"
#include "http/target.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <stdexcept>

namespace licensing::http {
namespace {

namespace net = boost::asio;
using beast_http::verb;

Handler ok_handler() {
  return [](Request&) -> net::awaitable<Response> { co_return Response{}; };
}

TEST(ProblemTest, BodyHasExactlyTheRfc9457Members) {
  const auto response = problem(409, "urn:licensing:problem:conflict", "Conflict", "The enclave exists.");

  EXPECT_EQ(response.status, 409u);
  EXPECT_EQ(response.content_type, "application/problem+json");
  const auto body = nlohmann::json::parse(response.body);
  EXPECT_EQ(body, (nlohmann::json{
                      {"type", "urn:licensing:problem:conflict"},
                      {"title", "Conflict"},
                      {"status", 409},
                      {"detail", "The enclave exists."},
                  }));
}

TEST(RouterTest, ParameterSegmentMatchesOneSegment) {
  Router router;
  router.add(verb::get, "/v1/enclaves/{id}/attestation", ok_handler());

  const auto match = router.match(verb::get, "/v1/enclaves/e-1/attestation");
  ASSERT_NE(match.handler, nullptr);
  EXPECT_EQ(match.params.at("id"), "e-1");
  EXPECT_EQ(match.pattern, "/v1/enclaves/{id}/attestation");

  EXPECT_FALSE(router.match(verb::get, "/v1/enclaves/a/b/attestation").path_known);
  EXPECT_FALSE(router.match(verb::get, "/v1/enclaves//attestation").path_known);
  EXPECT_FALSE(router.match(verb::get, "/v1/enclaves/e-1/attestation/").path_known);
}

TEST(RouterTest, OtherMethodIsKnownPathWithAllowed) {
  Router router;
  router.add(verb::get, "/v1/enclaves/{id}", ok_handler());
  router.add(verb::delete_, "/v1/enclaves/{id}", ok_handler());

  const auto match = router.match(verb::put, "/v1/enclaves/e-1");
  EXPECT_EQ(match.handler, nullptr);
  EXPECT_TRUE(match.path_known);
  EXPECT_EQ(match.allowed, (std::vector<verb>{verb::get, verb::delete_}));
}

TEST(RouterTest, FirstAddedRouteWins) {
  Router router;
  router.add(verb::get, "/v1/users/me", ok_handler());
  router.add(verb::get, "/v1/users/{id}", ok_handler());

  EXPECT_EQ(router.match(verb::get, "/v1/users/me").pattern, "/v1/users/me");
  EXPECT_EQ(router.match(verb::get, "/v1/users/u-2").pattern, "/v1/users/{id}");
}

TEST(RouterTest, InvalidPatternsAreRejected) {
  Router router;
  router.add(verb::get, "/v1/things/{id}", ok_handler());

  EXPECT_THROW(router.add(verb::get, "v1/things", ok_handler()), std::invalid_argument);
  EXPECT_THROW(router.add(verb::get, "/v1/{}", ok_handler()), std::invalid_argument);
  EXPECT_THROW(router.add(verb::get, "/v1/{id}/{id}", ok_handler()), std::invalid_argument);
  EXPECT_THROW(router.add(verb::get, "/v1/x{id}", ok_handler()), std::invalid_argument);
  EXPECT_THROW(router.add(verb::get, "/v1/things/{id}", ok_handler()), std::invalid_argument);
  EXPECT_THROW(router.add(verb::get, "/v1/other", Handler{}), std::invalid_argument);
}

TEST(TargetTest, QueryIsDecoded) {
  const auto parsed = parse_target("/v1/x?nonce=a%2Fb%2bc+d&flag&&empty=");

  ASSERT_TRUE(parsed);
  EXPECT_EQ(parsed->path, "/v1/x");
  EXPECT_EQ(parsed->query, (std::map<std::string, std::string>{{"nonce", "a/b+c d"}, {"flag", ""}, {"empty", ""}}));
}

TEST(TargetTest, PathIsNotDecoded) {
  const auto parsed = parse_target("/v1/a%2Fb");

  ASSERT_TRUE(parsed);
  EXPECT_EQ(parsed->path, "/v1/a%2Fb");
  EXPECT_TRUE(parsed->query.empty());
}

TEST(TargetTest, MalformedEscapesAreRejected) {
  for (const std::string_view target : {"/x?a=%", "/x?a=%4", "/x?a=%g1", "/x?a=%00", "/x?%=1"}) {
    SCOPED_TRACE(target);
    const auto parsed = parse_target(target);
    ASSERT_FALSE(parsed);
    EXPECT_EQ(parsed.error().code, TargetError::malformed_escape);
  }
}

TEST(TargetTest, RepeatedParameterIsRejected) {
  const auto parsed = parse_target("/x?nonce=1&nonce=1");

  ASSERT_FALSE(parsed);
  EXPECT_EQ(parsed.error().code, TargetError::duplicate_parameter);
}

TEST(TargetTest, AbsoluteFormIsRejected) {
  const auto parsed = parse_target("http://example.test/x");

  ASSERT_FALSE(parsed);
  EXPECT_EQ(parsed.error().code, TargetError::not_origin_form);
}

}  // namespace
}  // namespace licensing::http
