// JWS/JWT verification through verify_with_jwks and the JWS layer in crypto/jws.hpp.
// Keys are generated per test; the only fixed vector is RFC 7515, appendix A.3.
#include "crypto/jws.hpp"

#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <vector>

#include "common/base64url.hpp"
#include "crypto/jwk.hpp"
#include "crypto/openssl.hpp"
#include "crypto/token_keys.hpp"
#include "test_support.hpp"

namespace licensing::crypto {

void PrintTo(TokenError code, std::ostream* out) { *out << to_string(code); }

namespace {

using testing::at_unix;
using testing::kNow;

// RFC 7515, appendix A.3: the ES256 example. Its header is {"alg":"ES256"} (no kid) and
// its payload {"iss":"joe",\r\n "exp":1300819380,\r\n "http://example.com/is_root":true}.
constexpr const char* kRfc7515A3Token =
    "eyJhbGciOiJFUzI1NiJ9"
    ".eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ"
    ".DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q";
// The public part of the appendix A.3 JWK (its private "d" is left out).
const nlohmann::json kRfc7515A3Jwk = {
    {"kty", "EC"},
    {"crv", "P-256"},
    {"x", "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU"},
    {"y", "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
};
// The RFC 7638 thumbprint of that key, computed independently with Python's hashlib over
// {"crv":"P-256","kty":"EC","x":"f83O...","y":"x_FE..."}.
constexpr const char* kRfc7515A3Thumbprint = "oKIywvGUpTVTyxMQ3bwIIeQUudfr_CkLMjCE19ECD-U";

// The P-256 group order n, big-endian.
const std::vector<std::uint8_t> kP256Order = {
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
};

std::string b64(std::string_view bytes) { return base64url::encode(bytes); }
std::string b64(const std::vector<std::uint8_t>& bytes) { return base64url::encode(bytes); }

class JwsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    key_ = ossl::generate_p256_key();
    ASSERT_TRUE(key_);
    kid_ = detail::jwk_thumbprint(key_.get()).value();
    auto jwk = detail::public_jwk(key_.get()).value();
    jwk["kid"] = kid_;
    jwk["alg"] = "ES256";
    jwks_ = {{"keys", {jwk}}};
  }

  nlohmann::json claims() const {
    return {{"iss", "https://licensing.test"},
            {"sub", "user-1"},
            {"aud", "enclave-1"},
            {"iat", kNow - 60},
            {"nbf", kNow - 60},
            {"exp", kNow + 840},
            {"jti", "token-1"}};
  }

  VerifyOptions options() const {
    VerifyOptions options;
    options.issuer = "https://licensing.test";
    options.audience = "enclave-1";
    options.now = at_unix(kNow);
    options.skew = std::chrono::seconds(30);
    return options;
  }

  nlohmann::json header() const { return {{"alg", "ES256"}, {"typ", "JWT"}, {"kid", kid_}}; }

  std::vector<std::uint8_t> sign(const std::string& input) const { return detail::sign_es256(key_.get(), input).value(); }

  // A token over the exact header and payload text given, signed with the test key.
  std::string token(const std::string& header_json, const std::string& payload_json) const {
    const std::string input = detail::signing_input(header_json, payload_json);
    return input + "." + b64(sign(input));
  }
  std::string token(const nlohmann::json& claims) const { return token(header().dump(), claims.dump()); }
  std::string token() const { return token(claims()); }

  std::string token_with_signature(const std::vector<std::uint8_t>& signature) const {
    return detail::signing_input(header().dump(), claims().dump()) + "." + b64(signature);
  }

  Result<nlohmann::json, TokenError> verify(std::string_view token) const { return verify_with_jwks(token, jwks_, options()); }
  Result<nlohmann::json, TokenError> verify(std::string_view token, const VerifyOptions& options) const {
    return verify_with_jwks(token, jwks_, options);
  }

  // The error code, or nullopt when the token verified.
  std::optional<TokenError> rejection(std::string_view token) const {
    const auto verified = verify(token);
    if (verified) return std::nullopt;
    return verified.error().code;
  }
  std::optional<TokenError> rejection_with_claims(const nlohmann::json& claims) const { return rejection(token(claims)); }

  ossl::Pkey key_;
  std::string kid_;
  nlohmann::json jwks_;
};

// --- RFC vectors and the round trip ---

TEST(Rfc7515, AppendixA3VerifiesWithItsJwk) {
  auto key = detail::public_key_from_jwk(kRfc7515A3Jwk);
  ASSERT_TRUE(key.has_value()) << key.error().detail;

  const auto payload = detail::verify_es256_jws(kRfc7515A3Token, key->get(), 8192);
  ASSERT_TRUE(payload.has_value()) << payload.error().detail;
  EXPECT_EQ((*payload)["iss"], "joe");
  EXPECT_EQ((*payload)["exp"], 1300819380);
  EXPECT_EQ((*payload)["http://example.com/is_root"], true);
}

TEST(Rfc7515, AppendixA3TamperedPayloadFails) {
  auto key = detail::public_key_from_jwk(kRfc7515A3Jwk);
  ASSERT_TRUE(key.has_value());
  std::string token = kRfc7515A3Token;
  const std::string original = "eyJpc3MiOiJqb2Ui";  // {"iss":"joe"
  const std::string replaced = b64(std::string_view(R"({"iss":"eve")"));
  ASSERT_EQ(original.size(), replaced.size());
  token.replace(token.find(original), original.size(), replaced);

  const auto payload = detail::verify_es256_jws(token, key->get(), 8192);
  ASSERT_FALSE(payload.has_value());
  EXPECT_EQ(payload.error().code, TokenError::bad_signature);
}

TEST(Rfc7515, AppendixA3ThroughJwksNeedsKid) {
  // verify_with_jwks selects keys by kid, which the example does not carry.
  nlohmann::json jwk = kRfc7515A3Jwk;
  jwk["kid"] = "a3";
  VerifyOptions options;
  options.issuer = "joe";
  options.audience = "any";
  options.now = at_unix(1300819000);

  const auto verified = verify_with_jwks(kRfc7515A3Token, {{"keys", {jwk}}}, options);
  ASSERT_FALSE(verified.has_value());
  EXPECT_EQ(verified.error().code, TokenError::unknown_key);
}

TEST(Rfc7638, ThumbprintOfAppendixA3Key) {
  auto key = detail::public_key_from_jwk(kRfc7515A3Jwk);
  ASSERT_TRUE(key.has_value());
  EXPECT_EQ(detail::jwk_thumbprint(key->get()).value(), kRfc7515A3Thumbprint);
}

TEST_F(JwsTest, SignedTokenVerifiesAndReturnsClaims) {
  const auto verified = verify(token());
  ASSERT_TRUE(verified.has_value()) << verified.error().detail;
  EXPECT_EQ(*verified, claims());
}

TEST_F(JwsTest, SignatureIsSixtyFourBytesRawRS) {
  const std::string signed_token = token();
  const auto signature = base64url::decode(signed_token.substr(signed_token.rfind('.') + 1));
  ASSERT_TRUE(signature.has_value());
  EXPECT_EQ(signature->size(), 64u);
}

// --- signature ---

TEST_F(JwsTest, EverySignatureBitFlipRejected) {
  const std::string input = detail::signing_input(header().dump(), claims().dump());
  const auto signature = sign(input);
  ASSERT_FALSE(rejection(input + "." + b64(signature)).has_value());

  for (std::size_t bit = 0; bit < signature.size() * 8; ++bit) {
    auto flipped = signature;
    flipped[bit / 8] ^= static_cast<std::uint8_t>(1u << (bit % 8));
    EXPECT_EQ(rejection(input + "." + b64(flipped)), TokenError::bad_signature) << "bit " << bit;
  }
}

TEST_F(JwsTest, EveryEncodedSignatureBitFlipRejected) {
  const std::string signed_token = token();
  const std::size_t start = signed_token.rfind('.') + 1;
  for (std::size_t index = start; index < signed_token.size(); ++index) {
    for (int bit = 0; bit < 8; ++bit) {
      std::string flipped = signed_token;
      flipped[index] = static_cast<char>(flipped[index] ^ (1 << bit));
      const auto code = rejection(flipped);
      ASSERT_TRUE(code.has_value()) << "character " << index << " bit " << bit;
      EXPECT_TRUE(*code == TokenError::bad_signature || *code == TokenError::malformed)
          << "character " << index << " bit " << bit << ": " << to_string(*code);
    }
  }
}

TEST_F(JwsTest, TamperedPayloadRejected) {
  const std::string signed_token = token();
  const std::size_t first_dot = signed_token.find('.');
  const std::size_t second_dot = signed_token.rfind('.');
  auto changed = claims();
  changed["sub"] = "user-2";
  const std::string forged = signed_token.substr(0, first_dot + 1) + b64(changed.dump()) + signed_token.substr(second_dot);
  EXPECT_EQ(rejection(forged), TokenError::bad_signature);
}

TEST_F(JwsTest, ScalarZeroRejected) {
  auto signature = sign(detail::signing_input(header().dump(), claims().dump()));
  auto zero_r = signature;
  std::fill(zero_r.begin(), zero_r.begin() + 32, 0);
  auto zero_s = signature;
  std::fill(zero_s.begin() + 32, zero_s.end(), 0);
  for (const auto& signature_bytes : {zero_r, zero_s, std::vector<std::uint8_t>(64, 0)}) {
    const auto verified = verify(token_with_signature(signature_bytes));
    ASSERT_FALSE(verified.has_value());
    EXPECT_EQ(verified.error().code, TokenError::bad_signature);
    EXPECT_EQ(verified.error().detail, "ECDSA R or S is zero or not below the P-256 group order");
  }
}

TEST_F(JwsTest, ScalarEqualToOrderRejected) {
  const auto signature = sign(detail::signing_input(header().dump(), claims().dump()));
  ASSERT_EQ(signature.size(), 64u);
  auto r_is_n = signature;
  auto s_is_n = signature;
  auto r_is_max = signature;
  for (std::size_t i = 0; i < 32; ++i) {
    r_is_n.at(i) = kP256Order.at(i);
    s_is_n.at(32 + i) = kP256Order.at(i);
    r_is_max.at(i) = 0xff;
  }
  for (const auto& signature_bytes : {r_is_n, s_is_n, r_is_max}) {
    const auto verified = verify(token_with_signature(signature_bytes));
    ASSERT_FALSE(verified.has_value());
    EXPECT_EQ(verified.error().code, TokenError::bad_signature);
    // Rejected by the range check, before the values reach OpenSSL.
    EXPECT_EQ(verified.error().detail, "ECDSA R or S is zero or not below the P-256 group order");
  }
}

TEST_F(JwsTest, WrongSignatureLengthRejected) {
  const auto signature = sign(detail::signing_input(header().dump(), claims().dump()));
  ASSERT_EQ(signature.size(), 64u);
  auto short_signature = signature;
  short_signature.resize(63);
  auto long_signature = signature;
  long_signature.resize(65);
  EXPECT_EQ(rejection(token_with_signature(short_signature)), TokenError::bad_signature);
  EXPECT_EQ(rejection(token_with_signature(long_signature)), TokenError::bad_signature);
  EXPECT_EQ(rejection(token_with_signature({})), TokenError::bad_signature);
}

TEST_F(JwsTest, DerSignatureRejected) {
  // A DER ECDSA-Sig-Value is what OpenSSL produces; JWS requires raw R || S.
  const std::string input = detail::signing_input(header().dump(), claims().dump());
  ossl::MdContext context(EVP_MD_CTX_new());
  ASSERT_EQ(EVP_DigestSignInit(context.get(), nullptr, EVP_sha256(), nullptr, key_.get()), 1);
  std::vector<std::uint8_t> der(80);
  std::size_t length = der.size();
  ASSERT_EQ(EVP_DigestSign(context.get(), der.data(), &length, reinterpret_cast<const unsigned char*>(input.data()),
                           input.size()),
            1);
  der.resize(length);
  EXPECT_EQ(rejection(token_with_signature(der)), TokenError::bad_signature);
}

TEST_F(JwsTest, OtherKeySignatureRejected) {
  ossl::Pkey other = ossl::generate_p256_key();
  const std::string input = detail::signing_input(header().dump(), claims().dump());
  EXPECT_EQ(rejection(input + "." + b64(detail::sign_es256(other.get(), input).value())), TokenError::bad_signature);
}

// --- algorithm ---

TEST_F(JwsTest, AlgNoneRejectedInEverySpelling) {
  for (const char* alg : {"none", "None", "NONE", "nOnE"}) {
    const nlohmann::json none_header = {{"alg", alg}, {"typ", "JWT"}, {"kid", kid_}};
    const std::string unsigned_token = detail::signing_input(none_header.dump(), claims().dump()) + ".";
    EXPECT_EQ(rejection(unsigned_token), TokenError::unsupported_algorithm) << alg;
    EXPECT_EQ(rejection(token(none_header.dump(), claims().dump())), TokenError::unsupported_algorithm) << alg;
  }
}

TEST_F(JwsTest, AlgOtherThanKeyAlgorithmRejected) {
  for (const nlohmann::json& alg : {nlohmann::json("es256"), nlohmann::json("ES384"), nlohmann::json("ES256 "),
                                    nlohmann::json("EdDSA"), nlohmann::json(nullptr), nlohmann::json(256),
                                    nlohmann::json::array({"ES256"})}) {
    nlohmann::json odd_header = header();
    odd_header["alg"] = alg;
    EXPECT_EQ(rejection(token(odd_header.dump(), claims().dump())), TokenError::unsupported_algorithm) << alg.dump();
  }
  nlohmann::json no_alg = header();
  no_alg.erase("alg");
  EXPECT_EQ(rejection(token(no_alg.dump(), claims().dump())), TokenError::unsupported_algorithm);
}

TEST_F(JwsTest, Hs256WithPublicKeyAsSecretRejected) {
  // The classic confusion: an attacker MACs a token with the published public key.
  const std::string public_pem = ossl::public_key_to_pem(key_.get()).value();
  const std::string jwk_json = jwks_["keys"][0].dump();
  const nlohmann::json hs_header = {{"alg", "HS256"}, {"typ", "JWT"}, {"kid", kid_}};
  const std::string input = detail::signing_input(hs_header.dump(), claims().dump());

  for (const std::string& secret : {public_pem, jwk_json}) {
    const auto mac = detail::hmac_sha256(
        std::span(reinterpret_cast<const std::uint8_t*>(secret.data()), secret.size()), input);
    ASSERT_TRUE(mac.has_value());
    EXPECT_EQ(rejection(input + "." + base64url::encode(*mac)), TokenError::unsupported_algorithm);
  }
}

// --- header ---

TEST_F(JwsTest, KeyCarryingAndCriticalHeadersForbidden) {
  const nlohmann::json attacker_jwk = jwks_["keys"][0];
  const std::vector<std::pair<std::string, nlohmann::json>> members = {
      {"jwk", attacker_jwk},
      {"jku", "https://attacker.test/jwks.json"},
      {"x5u", "https://attacker.test/cert.pem"},
      {"x5c", nlohmann::json::array({"MIIB"})},
      {"x5t", "abc"},
      {"x5t#S256", "abc"},
      {"crit", nlohmann::json::array({"exp"})},
      {"cty", "JWT"},
      {"zip", "DEF"},
      {"b64", false},
  };
  for (const auto& [name, value] : members) {
    nlohmann::json extended = header();
    extended[name] = value;
    EXPECT_EQ(rejection(token(extended.dump(), claims().dump())), TokenError::forbidden_header) << name;
  }
}

TEST_F(JwsTest, TypOtherThanJwtForbidden) {
  for (const nlohmann::json& typ : {nlohmann::json("at+jwt"), nlohmann::json("jwt"), nlohmann::json(1)}) {
    nlohmann::json odd = header();
    odd["typ"] = typ;
    EXPECT_EQ(rejection(token(odd.dump(), claims().dump())), TokenError::forbidden_header) << typ.dump();
  }
  nlohmann::json without_typ = header();
  without_typ.erase("typ");
  EXPECT_FALSE(rejection(token(without_typ.dump(), claims().dump())).has_value());
}

TEST_F(JwsTest, OddKidsAreUnknownKeys) {
  const std::vector<nlohmann::json> kids = {
      "", "../x", "a/b", "a.b", std::string(200, 'a'), std::string(129, 'a'), "\xd0\xba\xd0\xbb\xd1\x8e\xd1\x87",
      std::string("kid\0", 4), nullptr, 7, nlohmann::json::array({"x"}), nlohmann::json::object(), "unknown-but-well-formed",
  };
  // The JWKS lists the test key under every odd string kid, so only the kid syntax check
  // can reject these (except "unknown-but-well-formed", which is left out of the JWKS).
  nlohmann::json jwks = jwks_;
  for (const auto& kid : kids) {
    if (!kid.is_string() || kid == "unknown-but-well-formed") continue;
    nlohmann::json jwk = jwks_["keys"][0];
    jwk["kid"] = kid;
    jwks["keys"].push_back(jwk);
  }
  for (const auto& kid : kids) {
    nlohmann::json odd = header();
    odd["kid"] = kid;
    const auto verified = verify_with_jwks(token(odd.dump(), claims().dump()), jwks, options());
    ASSERT_FALSE(verified.has_value()) << kid.dump();
    EXPECT_EQ(verified.error().code, TokenError::unknown_key) << kid.dump();
  }
  nlohmann::json no_kid = header();
  no_kid.erase("kid");
  EXPECT_EQ(rejection(token(no_kid.dump(), claims().dump())), TokenError::unknown_key);
}

TEST_F(JwsTest, KidOfMaximumLengthAccepted) {
  const std::string long_kid(128, 'k');
  nlohmann::json jwk = jwks_["keys"][0];
  jwk["kid"] = long_kid;
  const nlohmann::json jwks = {{"keys", {jwk}}};
  nlohmann::json long_header = header();
  long_header["kid"] = long_kid;
  EXPECT_TRUE(verify_with_jwks(token(long_header.dump(), claims().dump()), jwks, options()).has_value());
}

TEST_F(JwsTest, DuplicateHeaderMemberMalformed) {
  const std::string duplicated = R"({"alg":"ES256","alg":"ES256","kid":")" + kid_ + R"("})";
  EXPECT_EQ(rejection(token(duplicated, claims().dump())), TokenError::malformed);
  const std::string smuggled = R"({"alg":"none","kid":")" + kid_ + R"(","alg":"ES256"})";
  EXPECT_EQ(rejection(token(smuggled, claims().dump())), TokenError::malformed);
}

TEST_F(JwsTest, DuplicateClaimMalformed) {
  std::string payload = claims().dump();
  payload.insert(payload.size() - 1, R"(,"sub":"admin")");
  EXPECT_EQ(rejection(token(header().dump(), payload)), TokenError::malformed);
}

TEST_F(JwsTest, NonObjectHeaderOrPayloadMalformed) {
  EXPECT_EQ(rejection(token("[]", claims().dump())), TokenError::malformed);
  EXPECT_EQ(rejection(token("\"ES256\"", claims().dump())), TokenError::malformed);
  EXPECT_EQ(rejection(token("{\"alg\":\"ES256\"", claims().dump())), TokenError::malformed);
  EXPECT_EQ(rejection(token(header().dump(), "[1]")), TokenError::malformed);
  EXPECT_EQ(rejection(token(header().dump(), "")), TokenError::malformed);
  EXPECT_EQ(rejection(token(header().dump(), claims().dump() + "x")), TokenError::malformed);
}

TEST_F(JwsTest, DeeplyNestedClaimMalformed) {
  std::string payload = claims().dump();
  payload.insert(payload.size() - 1, R"(,"deep":)" + std::string(20, '[') + std::string(20, ']'));
  EXPECT_EQ(rejection(token(header().dump(), payload)), TokenError::malformed);
}

// --- encoding and structure ---

// Returns `part` with non-zero unused bits in its last character, or "" when `part` has no
// unused bits (length divisible by 4).
std::string with_trailing_bits(const std::string& part) {
  static constexpr std::string_view kAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  if (part.size() % 4 == 0) return "";
  std::string changed = part;
  changed.back() = kAlphabet[kAlphabet.find(changed.back()) + 1];
  return changed;
}

TEST_F(JwsTest, NonCanonicalBase64urlMalformed) {
  // Find claims whose encoded payload has unused bits, by growing the jti (at most 3 tries).
  auto padded_claims = claims();
  std::string signed_token;
  std::string payload_part;
  for (std::string jti = "j"; jti.size() <= 4; jti += "j") {
    padded_claims["jti"] = jti;
    signed_token = token(padded_claims);
    payload_part = signed_token.substr(signed_token.find('.') + 1, signed_token.rfind('.') - signed_token.find('.') - 1);
    if (payload_part.size() % 4 != 0) break;
  }
  const std::string header_part = signed_token.substr(0, signed_token.find('.'));
  const std::string signature_part = signed_token.substr(signed_token.rfind('.') + 1);
  ASSERT_FALSE(rejection(signed_token).has_value());

  const std::string payload_bits = with_trailing_bits(payload_part);
  ASSERT_FALSE(payload_bits.empty());
  EXPECT_EQ(rejection(header_part + "." + payload_bits + "." + signature_part), TokenError::malformed);

  const std::string signature_bits = with_trailing_bits(signature_part);
  ASSERT_FALSE(signature_bits.empty());  // 64 bytes encode to 86 characters
  EXPECT_EQ(rejection(header_part + "." + payload_part + "." + signature_bits), TokenError::malformed);

  EXPECT_EQ(rejection(header_part + "." + payload_part + "." + signature_part + "=="), TokenError::malformed);
  EXPECT_EQ(rejection(header_part + "=." + payload_part + "." + signature_part), TokenError::malformed);
  EXPECT_EQ(rejection(header_part + "." + payload_part + "==." + signature_part), TokenError::malformed);

  std::string standard_alphabet = signed_token;
  for (char& c : standard_alphabet) {
    if (c == '-') c = '+';
    if (c == '_') c = '/';
  }
  if (standard_alphabet != signed_token) {
    EXPECT_EQ(rejection(standard_alphabet), TokenError::malformed);
  }
  EXPECT_EQ(rejection(" " + signed_token), TokenError::malformed);
  EXPECT_EQ(rejection(signed_token + "\n"), TokenError::malformed);
}

TEST_F(JwsTest, WrongPartCountMalformed) {
  const std::string signed_token = token();
  const std::string without_signature = signed_token.substr(0, signed_token.rfind('.'));
  EXPECT_EQ(rejection(without_signature), TokenError::malformed);
  EXPECT_EQ(rejection(signed_token + ".AAAA"), TokenError::malformed);
  EXPECT_EQ(rejection(signed_token + "."), TokenError::malformed);
  EXPECT_EQ(rejection(""), TokenError::malformed);
  EXPECT_EQ(rejection(".."), TokenError::malformed);
}

TEST_F(JwsTest, OversizedTokenRejectedBeforeParsing) {
  EXPECT_EQ(rejection(std::string(8193, '.')), TokenError::too_large);

  const std::string signed_token = token();
  auto options = this->options();
  options.max_token_bytes = signed_token.size();
  EXPECT_TRUE(verify(signed_token, options).has_value());
  options.max_token_bytes = signed_token.size() - 1;
  const auto verified = verify(signed_token, options);
  ASSERT_FALSE(verified.has_value());
  EXPECT_EQ(verified.error().code, TokenError::too_large);
}

// --- claims ---

TEST_F(JwsTest, ExpiredTokenRejected) {
  auto expired = claims();
  expired["iat"] = kNow - 1000;
  expired["nbf"] = kNow - 1000;
  expired["exp"] = kNow - 30;  // exp + skew == now
  EXPECT_EQ(rejection_with_claims(expired), TokenError::expired);
  expired["exp"] = kNow - 29;
  EXPECT_FALSE(rejection_with_claims(expired).has_value());
}

TEST_F(JwsTest, FutureIatRejected) {
  auto future = claims();
  future["iat"] = kNow + 31;
  future["nbf"] = kNow;
  future["exp"] = kNow + 900;
  EXPECT_EQ(rejection_with_claims(future), TokenError::issued_in_future);
  future["iat"] = kNow + 30;
  EXPECT_FALSE(rejection_with_claims(future).has_value());
}

TEST_F(JwsTest, NotBeforeInFutureRejected) {
  auto early = claims();
  early["nbf"] = kNow + 31;
  EXPECT_EQ(rejection_with_claims(early), TokenError::not_yet_valid);
  early["nbf"] = kNow + 30;
  EXPECT_FALSE(rejection_with_claims(early).has_value());
}

TEST_F(JwsTest, WrongAudienceRejected) {
  auto other = claims();
  other["aud"] = "enclave-2";
  EXPECT_EQ(rejection_with_claims(other), TokenError::wrong_audience);
  other["aud"] = "ENCLAVE-1";
  EXPECT_EQ(rejection_with_claims(other), TokenError::wrong_audience);
}

TEST_F(JwsTest, AudienceArrayChecked) {
  auto listed = claims();
  listed["aud"] = {"enclave-0", "enclave-1"};
  EXPECT_FALSE(rejection_with_claims(listed).has_value());
  listed["aud"] = {"enclave-0", "enclave-2"};
  EXPECT_EQ(rejection_with_claims(listed), TokenError::wrong_audience);
  listed["aud"] = nlohmann::json::array();
  EXPECT_EQ(rejection_with_claims(listed), TokenError::wrong_audience);
  listed["aud"] = {"enclave-1", 5};
  EXPECT_EQ(rejection_with_claims(listed), TokenError::invalid_claim);
  listed["aud"] = {{"enclave-1", true}};
  EXPECT_EQ(rejection_with_claims(listed), TokenError::invalid_claim);
}

TEST_F(JwsTest, EmptyExpectedAudienceMatchesNothing) {
  auto empty_audience = claims();
  empty_audience["aud"] = "";
  auto options = this->options();
  options.audience = "";
  const auto verified = verify(token(empty_audience), options);
  ASSERT_FALSE(verified.has_value());
  EXPECT_EQ(verified.error().code, TokenError::wrong_audience);
}

TEST_F(JwsTest, WrongIssuerRejected) {
  auto other = claims();
  other["iss"] = "https://attacker.test";
  EXPECT_EQ(rejection_with_claims(other), TokenError::wrong_issuer);
  other["iss"] = "https://licensing.test/";
  EXPECT_EQ(rejection_with_claims(other), TokenError::wrong_issuer);
}

TEST_F(JwsTest, EachMissingClaimRejected) {
  for (const char* name : {"iss", "sub", "aud", "exp", "iat", "nbf", "jti"}) {
    auto partial = claims();
    partial.erase(name);
    const auto verified = verify(token(partial));
    ASSERT_FALSE(verified.has_value()) << name;
    EXPECT_EQ(verified.error().code, TokenError::missing_claim) << name;
    EXPECT_NE(verified.error().detail.find(name), std::string::npos) << verified.error().detail;
  }
}

TEST_F(JwsTest, NonIntegerTimesRejected) {
  for (const char* name : {"exp", "iat", "nbf"}) {
    for (const nlohmann::json& value : {nlohmann::json(double(kNow) + 0.5), nlohmann::json(std::to_string(kNow)),
                                        nlohmann::json(-1), nlohmann::json(nullptr), nlohmann::json(true),
                                        nlohmann::json(std::uint64_t{1} << 63)}) {
      auto odd = claims();
      odd[name] = value;
      EXPECT_EQ(rejection_with_claims(odd), TokenError::invalid_claim) << name << " = " << value.dump();
    }
  }
}

TEST_F(JwsTest, NonStringIdentityClaimsRejected) {
  for (const char* name : {"iss", "sub", "jti"}) {
    for (const nlohmann::json& value : {nlohmann::json(1), nlohmann::json(""), nlohmann::json(nullptr)}) {
      auto odd = claims();
      odd[name] = value;
      EXPECT_EQ(rejection_with_claims(odd), TokenError::invalid_claim) << name << " = " << value.dump();
    }
  }
}

TEST_F(JwsTest, LifetimeChecked) {
  auto long_lived = claims();
  long_lived["exp"] = kNow - 60 + 24 * 3600 + 1;
  EXPECT_EQ(rejection_with_claims(long_lived), TokenError::invalid_claim);
  long_lived["exp"] = kNow - 60 + 24 * 3600;
  EXPECT_FALSE(rejection_with_claims(long_lived).has_value());

  auto inverted = claims();
  inverted["exp"] = kNow - 60;  // equal to iat
  EXPECT_EQ(rejection_with_claims(inverted), TokenError::invalid_claim);
}

// --- JWKS ---

TEST_F(JwsTest, InvalidJwksEntryRejected) {
  const nlohmann::json good = jwks_["keys"][0];
  const auto other_key = ossl::generate_p256_key();
  const auto other_jwk = detail::public_jwk(other_key.get()).value();

  std::vector<std::pair<std::string, nlohmann::json>> cases;
  auto with = [&](std::string label, const std::string& member, nlohmann::json value) {
    nlohmann::json jwk = good;
    if (value.is_discarded()) {
      jwk.erase(member);
    } else {
      jwk[member] = std::move(value);
    }
    cases.emplace_back(std::move(label), std::move(jwk));
  };
  with("private d", "d", "jpsQnnGQmL-YBIffH1136cLmcgLOtlCmBCz4sOI1EiE");
  with("kty RSA", "kty", "RSA");
  with("kty oct", "kty", "oct");
  with("crv P-384", "crv", "P-384");
  with("alg HS256", "alg", "HS256");
  with("use enc", "use", "enc");
  with("short x", "x", b64(std::string(31, 'x')));
  with("x missing", "x", nlohmann::json(nlohmann::json::value_t::discarded));
  with("x not string", "x", 5);
  with("x padded", "x", good["x"].get<std::string>() + "=");
  with("point off curve", "y", other_jwk["y"]);

  for (const auto& [label, jwk] : cases) {
    const auto verified = verify_with_jwks(token(), {{"keys", {jwk}}}, options());
    ASSERT_FALSE(verified.has_value()) << label;
    EXPECT_EQ(verified.error().code, TokenError::unknown_key) << label;
  }
}

TEST_F(JwsTest, MalformedJwksIsUnknownKey) {
  for (const nlohmann::json& jwks : {nlohmann::json::object(), nlohmann::json::array(), nlohmann::json({{"keys", "x"}}),
                                     nlohmann::json({{"keys", nlohmann::json::array()}}),
                                     nlohmann::json({{"keys", {jwks_["keys"][0], jwks_["keys"][0]}}})}) {
    const auto verified = verify_with_jwks(token(), jwks, options());
    ASSERT_FALSE(verified.has_value()) << jwks.dump();
    EXPECT_EQ(verified.error().code, TokenError::unknown_key) << jwks.dump();
  }
}

TEST_F(JwsTest, KeyIsChosenByKid) {
  const auto other_key = ossl::generate_p256_key();
  auto other_jwk = detail::public_jwk(other_key.get()).value();
  other_jwk["kid"] = "other";
  const nlohmann::json jwks = {{"keys", {other_jwk, jwks_["keys"][0]}}};
  EXPECT_TRUE(verify_with_jwks(token(), jwks, options()).has_value());

  // The same token presented under the other key's kid fails its signature check.
  nlohmann::json relabelled = header();
  relabelled["kid"] = "other";
  const std::string input = detail::signing_input(relabelled.dump(), claims().dump());
  const auto verified = verify_with_jwks(input + "." + b64(sign(input)), jwks, options());
  ASSERT_FALSE(verified.has_value());
  EXPECT_EQ(verified.error().code, TokenError::bad_signature);
}

TEST(TokenErrorNames, MatchEnumValues) {
  EXPECT_EQ(to_string(TokenError::too_large), "too_large");
  EXPECT_EQ(to_string(TokenError::malformed), "malformed");
  EXPECT_EQ(to_string(TokenError::unsupported_algorithm), "unsupported_algorithm");
  EXPECT_EQ(to_string(TokenError::forbidden_header), "forbidden_header");
  EXPECT_EQ(to_string(TokenError::unknown_key), "unknown_key");
  EXPECT_EQ(to_string(TokenError::bad_signature), "bad_signature");
  EXPECT_EQ(to_string(TokenError::expired), "expired");
  EXPECT_EQ(to_string(TokenError::not_yet_valid), "not_yet_valid");
  EXPECT_EQ(to_string(TokenError::issued_in_future), "issued_in_future");
  EXPECT_EQ(to_string(TokenError::wrong_issuer), "wrong_issuer");
  EXPECT_EQ(to_string(TokenError::wrong_audience), "wrong_audience");
  EXPECT_EQ(to_string(TokenError::missing_claim), "missing_claim");
  EXPECT_EQ(to_string(TokenError::invalid_claim), "invalid_claim");
  EXPECT_EQ(to_string(TokenError::signing_failed), "signing_failed");
}

}  // namespace
}  // namespace licensing::crypto
