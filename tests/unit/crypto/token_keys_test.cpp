// TokenKeys: key files, rotation and retention, HS256 mode, and PyJWT as an independent
// implementation.
#include "crypto/token_keys.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <atomic>
#include <cstdio>
#include <fstream>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/base64url.hpp"
#include "crypto/jwk.hpp"
#include "crypto/jws.hpp"
#include "crypto/openssl.hpp"
#include "test_support.hpp"

namespace licensing::crypto {

void PrintTo(KeyError code, std::ostream* out) { *out << to_string(code); }

namespace {

using namespace std::chrono_literals;
using testing::at_unix;
using testing::file_mode;
using testing::kNow;
using testing::TempDirectory;

constexpr std::int64_t kRotationPeriod = 30 * 24 * 3600;
constexpr std::int64_t kRetention = 24 * 3600;

nlohmann::json claims_at(std::int64_t issued_at) {
  return {{"iss", "https://licensing.test"},
          {"sub", "user-1"},
          {"aud", "enclave-1"},
          {"iat", issued_at},
          {"nbf", issued_at},
          {"exp", issued_at + 900},
          {"jti", "token-" + std::to_string(issued_at)}};
}

VerifyOptions options_at(std::int64_t now) {
  VerifyOptions options;
  options.issuer = "https://licensing.test";
  options.audience = "enclave-1";
  options.now = at_unix(now);
  return options;
}

nlohmann::json decoded_header(const std::string& token) {
  const auto bytes = base64url::decode(token.substr(0, token.find('.')));
  return nlohmann::json::parse(bytes.value());
}

std::vector<std::string> jwks_kids(const nlohmann::json& jwks) {
  std::vector<std::string> kids;
  for (const auto& key : jwks["keys"]) kids.push_back(key["kid"].get<std::string>());
  return kids;
}

bool contains(const std::vector<std::string>& values, const std::string& value) {
  return std::find(values.begin(), values.end(), value) != values.end();
}

class TokenKeysTest : public ::testing::Test {
 protected:
  TokenKeysConfig config() const {
    TokenKeysConfig config;
    config.key_directory = directory_.path() / "keys";
    config.rotation_period = std::chrono::seconds(kRotationPeriod);
    config.retention = std::chrono::seconds(kRetention);
    return config;
  }

  std::unique_ptr<TokenKeys> open_at(std::int64_t now) const {
    auto keys = TokenKeys::open(config(), at_unix(now));
    EXPECT_TRUE(keys.has_value()) << keys.error().detail;
    return keys.has_value() ? std::move(*keys) : nullptr;
  }

  std::filesystem::path key_file(const std::string& kid) const { return directory_.path() / "keys" / (kid + ".pem"); }

  TempDirectory directory_;
};

// --- files ---

TEST_F(TokenKeysTest, OpenCreatesKeyWithPrivateModes) {
  const auto keys = open_at(kNow);
  ASSERT_TRUE(keys);
  const std::string kid = keys->current_kid();
  EXPECT_EQ(kid.size(), 43u);  // base64url of a SHA-256 thumbprint

  EXPECT_EQ(file_mode(directory_.path() / "keys"), 0700u);
  EXPECT_EQ(file_mode(key_file(kid)), 0600u);
  EXPECT_EQ(file_mode(directory_.path() / "keys" / (kid + ".json")), 0600u);

  const auto pem = ossl::read_private_file(key_file(kid), 65536);
  ASSERT_TRUE(pem.has_value());
  EXPECT_NE(pem->text().find("-----BEGIN PRIVATE KEY-----"), std::string_view::npos);
}

TEST_F(TokenKeysTest, JwksPublishesPublicKeyOnly) {
  const auto keys = open_at(kNow);
  ASSERT_TRUE(keys);
  const auto jwks = keys->jwks();
  ASSERT_EQ(jwks["keys"].size(), 1u);
  const auto& jwk = jwks["keys"][0];
  EXPECT_EQ(jwk["kid"], keys->current_kid());
  EXPECT_EQ(jwk["kty"], "EC");
  EXPECT_EQ(jwk["crv"], "P-256");
  EXPECT_EQ(jwk["alg"], "ES256");
  EXPECT_EQ(jwk["use"], "sig");
  EXPECT_FALSE(jwk.contains("d"));
  auto key = detail::public_key_from_jwk(jwk);
  ASSERT_TRUE(key.has_value());
  EXPECT_EQ(detail::jwk_thumbprint(key->get()).value(), keys->current_kid());
}

TEST_F(TokenKeysTest, GroupOrOtherAccessibleKeyFileRejected) {
  std::string kid;
  {
    const auto keys = open_at(kNow);
    ASSERT_TRUE(keys);
    kid = keys->current_kid();
  }
  for (const mode_t mode : {0640, 0604, 0660, 0610, 0601}) {
    ASSERT_EQ(::chmod(key_file(kid).c_str(), mode), 0);
    const auto reopened = TokenKeys::open(config(), at_unix(kNow));
    ASSERT_FALSE(reopened.has_value()) << std::oct << mode;
    EXPECT_EQ(reopened.error().code, KeyError::permissions) << std::oct << mode;
  }
  ASSERT_EQ(::chmod(key_file(kid).c_str(), 0600), 0);
  EXPECT_TRUE(TokenKeys::open(config(), at_unix(kNow)).has_value());
}

TEST_F(TokenKeysTest, GroupWritableDirectoryRejected) {
  ASSERT_TRUE(open_at(kNow));
  ASSERT_EQ(::chmod((directory_.path() / "keys").c_str(), 0770), 0);
  const auto reopened = TokenKeys::open(config(), at_unix(kNow));
  ASSERT_FALSE(reopened.has_value());
  EXPECT_EQ(reopened.error().code, KeyError::permissions);
}

TEST_F(TokenKeysTest, SymlinkedKeyFileRejected) {
  std::string kid;
  {
    const auto keys = open_at(kNow);
    ASSERT_TRUE(keys);
    kid = keys->current_kid();
  }
  const auto moved = directory_.path() / "elsewhere.pem";
  std::filesystem::rename(key_file(kid), moved);
  std::filesystem::create_symlink(moved, key_file(kid));
  const auto reopened = TokenKeys::open(config(), at_unix(kNow));
  ASSERT_FALSE(reopened.has_value());
  EXPECT_EQ(reopened.error().code, KeyError::io);
}

TEST_F(TokenKeysTest, KeyFileNamedAfterOtherKidRejected) {
  std::string kid;
  {
    const auto keys = open_at(kNow);
    ASSERT_TRUE(keys);
    kid = keys->current_kid();
  }
  std::filesystem::rename(key_file(kid), key_file("renamed-key"));
  const auto reopened = TokenKeys::open(config(), at_unix(kNow));
  ASSERT_FALSE(reopened.has_value());
  EXPECT_EQ(reopened.error().code, KeyError::invalid);
}

TEST_F(TokenKeysTest, NonP256KeyFileRejected) {
  ASSERT_TRUE(ossl::ensure_private_directory(directory_.path() / "keys").has_value());
  ossl::Pkey p384(EVP_EC_gen("P-384"));
  ASSERT_TRUE(p384);
  const auto pem = ossl::private_key_to_pem(p384.get()).value();
  ASSERT_TRUE(ossl::write_file_atomically(key_file("p384"), pem.view(), 0600).has_value());

  const auto opened = TokenKeys::open(config(), at_unix(kNow));
  ASSERT_FALSE(opened.has_value());
  EXPECT_EQ(opened.error().code, KeyError::invalid);
}

TEST_F(TokenKeysTest, GarbageKeyFileRejected) {
  ASSERT_TRUE(ossl::ensure_private_directory(directory_.path() / "keys").has_value());
  ASSERT_TRUE(ossl::write_file_atomically(key_file("garbage"), std::string_view("not a key\n"), 0600).has_value());
  const auto opened = TokenKeys::open(config(), at_unix(kNow));
  ASSERT_FALSE(opened.has_value());
  EXPECT_EQ(opened.error().code, KeyError::invalid);
}

TEST_F(TokenKeysTest, ReopenLoadsSameKey) {
  std::string token;
  std::string kid;
  {
    const auto keys = open_at(kNow);
    ASSERT_TRUE(keys);
    kid = keys->current_kid();
    token = keys->sign(claims_at(kNow)).value();
  }
  const auto reopened = open_at(kNow + 3600);
  ASSERT_TRUE(reopened);
  EXPECT_EQ(reopened->current_kid(), kid);
  EXPECT_TRUE(reopened->verify(token, options_at(kNow + 60)).has_value());
}

TEST_F(TokenKeysTest, CreationTimeFallsBackToFileTime) {
  std::string kid;
  {
    const auto keys = open_at(kNow);
    ASSERT_TRUE(keys);
    kid = keys->current_kid();
  }
  std::filesystem::remove(directory_.path() / "keys" / (kid + ".json"));
  const struct timespec times[2] = {{kNow - 3600, 0}, {kNow - 3600, 0}};
  ASSERT_EQ(::utimensat(AT_FDCWD, key_file(kid).c_str(), times, 0), 0);

  const auto reopened = open_at(kNow);
  ASSERT_TRUE(reopened);
  EXPECT_EQ(reopened->current_kid(), kid);
  EXPECT_FALSE(reopened->rotation_due(at_unix(kNow - 3600 + kRotationPeriod - 1)));
  EXPECT_TRUE(reopened->rotation_due(at_unix(kNow - 3600 + kRotationPeriod)));
}

TEST_F(TokenKeysTest, MalformedCreationTimeRejected) {
  std::string kid;
  {
    const auto keys = open_at(kNow);
    ASSERT_TRUE(keys);
    kid = keys->current_kid();
  }
  std::ofstream(directory_.path() / "keys" / (kid + ".json")) << R"({"created_at": "yesterday"})";
  const auto reopened = TokenKeys::open(config(), at_unix(kNow));
  ASSERT_FALSE(reopened.has_value());
  EXPECT_EQ(reopened.error().code, KeyError::invalid);
}

// --- signing ---

TEST_F(TokenKeysTest, SignVerifyRoundTrip) {
  const auto keys = open_at(kNow);
  ASSERT_TRUE(keys);
  const auto token = keys->sign(claims_at(kNow));
  ASSERT_TRUE(token.has_value()) << token.error().detail;

  const auto header = decoded_header(*token);
  EXPECT_EQ(header, nlohmann::json({{"alg", "ES256"}, {"typ", "JWT"}, {"kid", keys->current_kid()}}));

  const auto verified = keys->verify(*token, options_at(kNow + 1));
  ASSERT_TRUE(verified.has_value()) << verified.error().detail;
  EXPECT_EQ(*verified, claims_at(kNow));

  const auto through_jwks = verify_with_jwks(*token, keys->jwks(), options_at(kNow + 1));
  ASSERT_TRUE(through_jwks.has_value()) << through_jwks.error().detail;
}

TEST_F(TokenKeysTest, VerifyChecksClaims) {
  const auto keys = open_at(kNow);
  ASSERT_TRUE(keys);
  const auto token = keys->sign(claims_at(kNow)).value();
  const auto late = keys->verify(token, options_at(kNow + 900 + 30));
  ASSERT_FALSE(late.has_value());
  EXPECT_EQ(late.error().code, TokenError::expired);

  auto other_audience = options_at(kNow);
  other_audience.audience = "enclave-2";
  const auto elsewhere = keys->verify(token, other_audience);
  ASSERT_FALSE(elsewhere.has_value());
  EXPECT_EQ(elsewhere.error().code, TokenError::wrong_audience);
}

TEST_F(TokenKeysTest, Hs256TokenForEs256KeysRejected) {
  const auto keys = open_at(kNow);
  ASSERT_TRUE(keys);
  // MAC the token with the published JWK text, the public information an attacker has.
  const std::string secret = keys->jwks()["keys"][0].dump();
  const nlohmann::json header = {{"alg", "HS256"}, {"typ", "JWT"}, {"kid", keys->current_kid()}};
  const std::string input = detail::signing_input(header.dump(), claims_at(kNow).dump());
  const auto mac =
      detail::hmac_sha256(std::span(reinterpret_cast<const std::uint8_t*>(secret.data()), secret.size()), input).value();

  const auto verified = keys->verify(input + "." + base64url::encode(mac), options_at(kNow));
  ASSERT_FALSE(verified.has_value());
  EXPECT_EQ(verified.error().code, TokenError::unsupported_algorithm);
}

TEST_F(TokenKeysTest, SignRequiresRegisteredClaims) {
  const auto keys = open_at(kNow);
  ASSERT_TRUE(keys);
  auto partial = claims_at(kNow);
  partial.erase("jti");
  const auto missing = keys->sign(partial);
  ASSERT_FALSE(missing.has_value());
  EXPECT_EQ(missing.error().code, TokenError::missing_claim);

  const auto not_object = keys->sign(nlohmann::json::array());
  ASSERT_FALSE(not_object.has_value());
  EXPECT_EQ(not_object.error().code, TokenError::invalid_claim);
}

// --- rotation ---

TEST_F(TokenKeysTest, RotationKeepsOldTokenValid) {
  const auto keys = open_at(kNow);
  ASSERT_TRUE(keys);
  const std::string first_kid = keys->current_kid();
  const std::int64_t rotated_at = kNow + kRotationPeriod;
  const std::string old_token = keys->sign(claims_at(rotated_at - 60)).value();

  EXPECT_FALSE(keys->rotation_due(at_unix(rotated_at - 1)));
  EXPECT_TRUE(keys->rotation_due(at_unix(rotated_at)));
  const auto second_kid = keys->rotate(at_unix(rotated_at));
  ASSERT_TRUE(second_kid.has_value()) << second_kid.error().detail;
  EXPECT_NE(*second_kid, first_kid);
  EXPECT_EQ(keys->current_kid(), *second_kid);

  const auto new_token = keys->sign(claims_at(rotated_at)).value();
  EXPECT_EQ(decoded_header(new_token)["kid"], *second_kid);
  EXPECT_TRUE(keys->verify(old_token, options_at(rotated_at + 120)).has_value());
  EXPECT_TRUE(keys->verify(new_token, options_at(rotated_at + 120)).has_value());
  EXPECT_TRUE(verify_with_jwks(old_token, keys->jwks(), options_at(rotated_at + 120)).has_value());

  const auto kids = jwks_kids(keys->jwks());
  ASSERT_EQ(kids.size(), 2u);
  EXPECT_EQ(kids[0], *second_kid);  // newest first
  EXPECT_EQ(kids[1], first_kid);
}

TEST_F(TokenKeysTest, RotationDropsKeyPastRetention) {
  const auto keys = open_at(kNow);
  ASSERT_TRUE(keys);
  const std::string first_kid = keys->current_kid();
  const std::string old_token = keys->sign(claims_at(kNow)).value();
  const auto second_kid = keys->rotate(at_unix(kNow + kRotationPeriod)).value();

  // At exactly rotation_period + retention the first key is kept.
  const auto third_kid = keys->rotate(at_unix(kNow + kRotationPeriod + kRetention)).value();
  EXPECT_TRUE(contains(jwks_kids(keys->jwks()), first_kid));

  const auto fourth_kid = keys->rotate(at_unix(kNow + kRotationPeriod + kRetention + 1)).value();
  const auto kids = jwks_kids(keys->jwks());
  EXPECT_FALSE(contains(kids, first_kid));
  EXPECT_TRUE(contains(kids, second_kid));
  EXPECT_TRUE(contains(kids, third_kid));
  EXPECT_TRUE(contains(kids, fourth_kid));
  EXPECT_FALSE(std::filesystem::exists(key_file(first_kid)));
  EXPECT_FALSE(std::filesystem::exists(directory_.path() / "keys" / (first_kid + ".json")));
  EXPECT_TRUE(std::filesystem::exists(key_file(second_kid)));

  const auto verified = keys->verify(old_token, options_at(kNow + 60));
  ASSERT_FALSE(verified.has_value());
  EXPECT_EQ(verified.error().code, TokenError::unknown_key);
}

TEST_F(TokenKeysTest, LateRotationKeepsReplacedKeyForRetention) {
  // The first key stayed current past rotation_period + retention (no rotation while the
  // server was down); it still signed tokens just before the rotation.
  const auto keys = open_at(kNow);
  ASSERT_TRUE(keys);
  const std::string first_kid = keys->current_kid();
  const std::int64_t late = kNow + kRotationPeriod + 2 * kRetention;
  const std::string token = keys->sign(claims_at(late - 10)).value();

  ASSERT_TRUE(keys->rotate(at_unix(late)).has_value());
  EXPECT_TRUE(contains(jwks_kids(keys->jwks()), first_kid));
  EXPECT_TRUE(keys->verify(token, options_at(late + 60)).has_value());

  ASSERT_TRUE(keys->rotate(at_unix(late + kRetention)).has_value());
  EXPECT_FALSE(contains(jwks_kids(keys->jwks()), first_kid));
}

TEST_F(TokenKeysTest, OpenAfterRotationPeriodCreatesNewKey) {
  std::string first_kid;
  {
    const auto keys = open_at(kNow);
    ASSERT_TRUE(keys);
    first_kid = keys->current_kid();
  }
  const auto reopened = open_at(kNow + kRotationPeriod);
  ASSERT_TRUE(reopened);
  EXPECT_NE(reopened->current_kid(), first_kid);
  EXPECT_TRUE(contains(jwks_kids(reopened->jwks()), first_kid));
}

TEST_F(TokenKeysTest, ConcurrentSignVerifyDuringRotation) {
  const auto keys = open_at(kNow);
  ASSERT_TRUE(keys);
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int thread = 0; thread < 4; ++thread) {
    threads.emplace_back([&] {
      for (int i = 0; i < 50; ++i) {
        const auto token = keys->sign(claims_at(kNow));
        if (!token || !keys->verify(*token, options_at(kNow)).has_value()) ++failures;
        static_cast<void>(keys->jwks());
      }
    });
  }
  for (int rotation = 1; rotation <= 3; ++rotation) {
    EXPECT_TRUE(keys->rotate(at_unix(kNow + rotation)).has_value());
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(keys->jwks()["keys"].size(), 4u);
}

// --- HS256 ---

TokenKeysConfig hs256_config(std::size_t secret_bytes) {
  TokenKeysConfig config;
  config.hs256_secret = SecretBytes(std::string(secret_bytes, 's'));
  return config;
}

TEST(Hs256Keys, RoundTrip) {
  auto keys = TokenKeys::open(hs256_config(32), at_unix(kNow));
  ASSERT_TRUE(keys.has_value()) << keys.error().detail;
  const auto token = (*keys)->sign(claims_at(kNow));
  ASSERT_TRUE(token.has_value());
  const auto header = decoded_header(*token);
  EXPECT_EQ(header["alg"], "HS256");
  EXPECT_EQ(header["kid"], (*keys)->current_kid());

  const auto verified = (*keys)->verify(*token, options_at(kNow));
  ASSERT_TRUE(verified.has_value()) << verified.error().detail;
  EXPECT_EQ(*verified, claims_at(kNow));
  EXPECT_TRUE((*keys)->jwks()["keys"].empty());
}

TEST(Hs256Keys, ShortSecretRejected) {
  const auto keys = TokenKeys::open(hs256_config(31), at_unix(kNow));
  ASSERT_FALSE(keys.has_value());
  EXPECT_EQ(keys.error().code, KeyError::config);
}

TEST(Hs256Keys, WrongSecretRejected) {
  auto signer = TokenKeys::open(hs256_config(32), at_unix(kNow)).value();
  TokenKeysConfig other;
  std::string other_secret(32, 's');
  other_secret.back() = 't';
  other.hs256_secret = SecretBytes(std::string_view(other_secret));
  auto verifier = TokenKeys::open(std::move(other), at_unix(kNow)).value();

  // Same kid on purpose, so the failure is the MAC and not the key lookup.
  const nlohmann::json header = {{"alg", "HS256"}, {"typ", "JWT"}, {"kid", verifier->current_kid()}};
  const std::string input = detail::signing_input(header.dump(), claims_at(kNow).dump());
  const std::string secret(32, 's');
  const auto mac =
      detail::hmac_sha256(std::span(reinterpret_cast<const std::uint8_t*>(secret.data()), secret.size()), input).value();
  const auto verified = verifier->verify(input + "." + base64url::encode(mac), options_at(kNow));
  ASSERT_FALSE(verified.has_value());
  EXPECT_EQ(verified.error().code, TokenError::bad_signature);

  const auto other_kid = verifier->verify(signer->sign(claims_at(kNow)).value(), options_at(kNow));
  ASSERT_FALSE(other_kid.has_value());
  EXPECT_EQ(other_kid.error().code, TokenError::unknown_key);
}

TEST(Hs256Keys, TruncatedMacRejected) {
  auto keys = TokenKeys::open(hs256_config(40), at_unix(kNow)).value();
  const std::string token = keys->sign(claims_at(kNow)).value();
  const auto mac = base64url::decode(token.substr(token.rfind('.') + 1)).value();
  const std::string truncated =
      token.substr(0, token.rfind('.') + 1) + base64url::encode(std::span(mac.data(), mac.size() - 1));
  const auto verified = keys->verify(truncated, options_at(kNow));
  ASSERT_FALSE(verified.has_value());
  EXPECT_EQ(verified.error().code, TokenError::bad_signature);
}

TEST(Hs256Keys, Es256AndNoneTokensRejected) {
  auto keys = TokenKeys::open(hs256_config(32), at_unix(kNow)).value();
  for (const char* alg : {"ES256", "none", "hs256"}) {
    const nlohmann::json header = {{"alg", alg}, {"typ", "JWT"}, {"kid", keys->current_kid()}};
    const std::string token = detail::signing_input(header.dump(), claims_at(kNow).dump()) + "." +
                              base64url::encode(std::string(64, 'x'));
    const auto verified = keys->verify(token, options_at(kNow));
    ASSERT_FALSE(verified.has_value()) << alg;
    EXPECT_EQ(verified.error().code, TokenError::unsupported_algorithm) << alg;
  }
}

TEST(Hs256Keys, RotateIsConfigError) {
  auto keys = TokenKeys::open(hs256_config(32), at_unix(kNow)).value();
  const auto rotated = keys->rotate(at_unix(kNow));
  ASSERT_FALSE(rotated.has_value());
  EXPECT_EQ(rotated.error().code, KeyError::config);
  EXPECT_FALSE(keys->rotation_due(at_unix(kNow + 10 * kRotationPeriod)));
}

// --- interoperability with PyJWT (Debian's python3-jwt) ---

// Runs /usr/bin/python3 on `script` with `arguments`; returns the exit status and stdout.
std::pair<int, std::string> run_python(const std::filesystem::path& directory, const std::string& script,
                                       const std::string& arguments) {
  const auto script_path = directory / "check.py";
  std::ofstream(script_path) << script;
  const std::string command = "/usr/bin/python3 " + script_path.string() + " " + arguments + " 2>&1";
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) return {-1, "popen failed"};
  std::string output;
  char buffer[256];
  while (std::fgets(buffer, sizeof(buffer), pipe) != nullptr) output += buffer;
  return {::pclose(pipe), output};
}

TEST_F(TokenKeysTest, PyJwtVerifiesOurToken) {
  const auto keys = open_at(kNow);
  ASSERT_TRUE(keys);
  const std::string token = keys->sign(claims_at(kNow)).value();
  const auto pem = ossl::read_private_file(key_file(keys->current_kid()), 65536).value();
  const auto private_key = ossl::private_key_from_pem(pem.text()).value();
  std::ofstream(directory_.path() / "public.pem") << ossl::public_key_to_pem(private_key.get()).value();
  std::ofstream(directory_.path() / "token") << token;

  const auto [status, output] = run_python(directory_.path(), R"(
import sys, jwt
token = open(sys.argv[1]).read()
key = open(sys.argv[2]).read()
claims = jwt.decode(token, key, algorithms=["ES256"], audience="enclave-1", issuer="https://licensing.test",
                    options={"verify_exp": False, "verify_nbf": False, "verify_iat": False})
print(claims["sub"], jwt.get_unverified_header(token)["kid"])
)",
                                           (directory_.path() / "token").string() + " " +
                                               (directory_.path() / "public.pem").string());
  ASSERT_EQ(status, 0) << output;
  EXPECT_EQ(output, "user-1 " + keys->current_kid() + "\n");
}

TEST_F(TokenKeysTest, PyJwtTokenVerifies) {
  const auto keys = open_at(kNow);
  ASSERT_TRUE(keys);
  const auto key_path = key_file(keys->current_kid());
  const auto [status, output] = run_python(directory_.path(), R"(
import sys, json, jwt
claims = json.loads(sys.argv[3])
print(jwt.encode(claims, open(sys.argv[1]).read(), algorithm="ES256", headers={"kid": sys.argv[2]}), end="")
)",
                                           key_path.string() + " " + keys->current_kid() + " '" +
                                               claims_at(kNow).dump() + "'");
  ASSERT_EQ(status, 0) << output;

  const auto verified = keys->verify(output, options_at(kNow));
  ASSERT_TRUE(verified.has_value()) << verified.error().detail;
  EXPECT_EQ((*verified)["sub"], "user-1");
}

}  // namespace
}  // namespace licensing::crypto
