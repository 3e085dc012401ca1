#include "enclave/access.hpp"

#include <gtest/gtest.h>

#include "enclave/config.hpp"
#include "test_pki.hpp"

namespace licensing::enclave {
namespace {

using namespace std::chrono_literals;

crypto::TokenKeysConfig token_keys_config(const std::filesystem::path& directory) {
  crypto::TokenKeysConfig config;
  config.key_directory = directory;
  return config;
}
using SystemClock = std::chrono::system_clock;

constexpr std::string_view enclave_id = "0f8fad5b-d9cb-469f-a165-70867728950e";
constexpr std::string_view owner = "7c9e6679-7425-40de-944b-e07fc1f90ae7";
constexpr std::string_view issuer = "https://licensing.test";

class TokenCheckTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto keys = crypto::TokenKeys::open(token_keys_config(temp_.path() / "keys"), now_);
    ASSERT_TRUE(keys.has_value()) << keys.error().detail;
    keys_ = std::move(*keys);

    // The enclave reads the JWKS from a file, so the test goes through one too.
    test::write_file(temp_.path() / "jwks.json", keys_->jwks().dump(), std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
    jwks_ = std::make_unique<JwksFile>(temp_.path() / "jwks.json");
  }

  nlohmann::json claims() const {
    const auto issued = SystemClock::to_time_t(now_ - 1min);
    return {{"iss", issuer}, {"sub", owner}, {"aud", enclave_id}, {"iat", issued}, {"nbf", issued},
            {"exp", SystemClock::to_time_t(now_ + 14min)}, {"jti", "token-1"}};
  }

  std::string sign(const nlohmann::json& token_claims) const {
    auto token = keys_->sign(token_claims);
    EXPECT_TRUE(token.has_value());
    return token.value_or("");
  }

  Result<nlohmann::json, AccessError> check(std::string_view authorization) const {
    return check_bearer(authorization, *jwks_->keys(), {std::string(issuer), std::string(enclave_id), std::string(owner)}, now_);
  }

  test::TempDir temp_;
  SystemClock::time_point now_ = SystemClock::from_time_t(1'900'000'000);
  std::unique_ptr<crypto::TokenKeys> keys_;
  std::unique_ptr<JwksFile> jwks_;
};

TEST_F(TokenCheckTest, ValidTokenPasses) {
  const auto result = check("Bearer " + sign(claims()));
  ASSERT_TRUE(result.has_value()) << result.error().detail;
  EXPECT_EQ((*result)["sub"], owner);
}

TEST_F(TokenCheckTest, SchemeIsCaseInsensitive) {
  EXPECT_TRUE(check("bearer " + sign(claims())).has_value());
}

TEST_F(TokenCheckTest, WrongAudienceIsRejected) {
  auto token_claims = claims();
  token_claims["aud"] = "11111111-2222-4333-8444-555555555555";
  const auto result = check("Bearer " + sign(token_claims));
  ASSERT_FALSE(result.has_value());
  EXPECT_EQ(result.error().code, AccessError::invalid_token);
  EXPECT_NE(result.error().detail.find("wrong_audience"), std::string::npos) << result.error().detail;
}

TEST_F(TokenCheckTest, WrongSubjectIsRejected) {
  auto token_claims = claims();
  token_claims["sub"] = "another-user";
  const auto result = check("Bearer " + sign(token_claims));
  ASSERT_FALSE(result.has_value());
  EXPECT_EQ(result.error().code, AccessError::wrong_subject);
}

TEST_F(TokenCheckTest, WrongIssuerIsRejected) {
  auto token_claims = claims();
  token_claims["iss"] = "https://elsewhere.test";
  const auto result = check("Bearer " + sign(token_claims));
  ASSERT_FALSE(result.has_value());
  EXPECT_EQ(result.error().code, AccessError::invalid_token);
  EXPECT_NE(result.error().detail.find("wrong_issuer"), std::string::npos) << result.error().detail;
}

TEST_F(TokenCheckTest, ExpiredTokenIsRejected) {
  auto token_claims = claims();
  token_claims["iat"] = SystemClock::to_time_t(now_ - 20min);
  token_claims["nbf"] = SystemClock::to_time_t(now_ - 20min);
  token_claims["exp"] = SystemClock::to_time_t(now_ - 5min);
  const auto result = check("Bearer " + sign(token_claims));
  ASSERT_FALSE(result.has_value());
  EXPECT_EQ(result.error().code, AccessError::invalid_token);
  EXPECT_NE(result.error().detail.find("expired"), std::string::npos) << result.error().detail;
}

TEST_F(TokenCheckTest, TamperedSignatureIsRejected) {
  std::string token = sign(claims());
  token.back() = token.back() == 'A' ? 'B' : 'A';
  const auto result = check("Bearer " + token);
  ASSERT_FALSE(result.has_value());
  EXPECT_EQ(result.error().code, AccessError::invalid_token);
}

TEST_F(TokenCheckTest, MissingHeaderIsRejected) {
  const auto result = check("");
  ASSERT_FALSE(result.has_value());
  EXPECT_EQ(result.error().code, AccessError::missing_token);
}

TEST_F(TokenCheckTest, OtherSchemeIsRejected) {
  for (const std::string header : {"Basic dXNlcjpwYXNz", "Bearer", "Bearer ", "Bootstrap abc"}) {
    SCOPED_TRACE(header);
    const auto result = check(header);
    ASSERT_FALSE(result.has_value());
    EXPECT_EQ(result.error().code, AccessError::malformed_header);
  }
}

TEST_F(TokenCheckTest, JwksReloadKeepsKeysOnBadFile) {
  test::write_file(temp_.path() / "jwks.json", "not json", std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  const auto reloaded = jwks_->reload();
  ASSERT_FALSE(reloaded.has_value());
  EXPECT_TRUE(check("Bearer " + sign(claims())).has_value());
}

class ClientCertificateTest : public ::testing::Test {
 protected:
  crypto::ossl::X509Cert issue(const std::vector<std::string>& uris) {
    return test::parse_certificate(ca_.issue_client(uris).certificate_pem);
  }

  test::TempDir temp_;
  test::TestCa ca_{temp_.path() / "ca", [] { return SystemClock::from_time_t(1'900'000'000); }};
};

TEST_F(ClientCertificateTest, OwnerUriPasses) {
  const auto certificate = issue({owner_uri(owner)});
  const auto result = check_client_certificate(certificate.get(), owner);
  EXPECT_TRUE(result.has_value()) << result.error().detail;
}

TEST_F(ClientCertificateTest, OtherUserIsRejected) {
  const auto certificate = issue({owner_uri("another-user")});
  const auto result = check_client_certificate(certificate.get(), owner);
  ASSERT_FALSE(result.has_value());
  EXPECT_EQ(result.error().code, ClientCertificateError::wrong_user);
}

TEST_F(ClientCertificateTest, OwnerPrefixIsRejected) {
  const auto certificate = issue({owner_uri(std::string(owner) + "-extra")});
  const auto result = check_client_certificate(certificate.get(), owner);
  ASSERT_FALSE(result.has_value());
  EXPECT_EQ(result.error().code, ClientCertificateError::wrong_user);
}

TEST_F(ClientCertificateTest, MissingUriIsRejected) {
  const auto certificate = issue({});
  const auto result = check_client_certificate(certificate.get(), owner);
  ASSERT_FALSE(result.has_value());
  EXPECT_EQ(result.error().code, ClientCertificateError::no_user_uri);
}

TEST_F(ClientCertificateTest, SecondUriIsRejected) {
  const auto certificate = issue({owner_uri(owner), owner_uri("another-user")});
  const auto result = check_client_certificate(certificate.get(), owner);
  ASSERT_FALSE(result.has_value());
  EXPECT_EQ(result.error().code, ClientCertificateError::several_uris);
}

}  // namespace
}  // namespace licensing::enclave
