#include "crypto/jws.hpp"

#include <openssl/ecdsa.h>
#include <openssl/err.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <limits>

#include "common/base64url.hpp"
#include "common/json.hpp"

namespace licensing::crypto::detail {
namespace {

// The order n of the P-256 group (SEC 2, section 2.4.2; FIPS 186-4, D.1.2.3), big-endian.
constexpr std::array<std::uint8_t, 32> kP256Order = {
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
};

// 9999-12-31T23:59:59Z. Larger NumericDates are rejected, so `exp + skew` cannot overflow.
constexpr std::int64_t kMaxNumericDate = 253402300799;

constexpr std::string_view kRequiredClaims[] = {"iss", "sub", "aud", "exp", "iat", "nbf", "jti"};

// Quotes an untrusted value for an error detail, cut to a length that keeps logs readable.
std::string excerpt(const nlohmann::json& value) {
  std::string text = value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  if (text.size() > 40) text = text.substr(0, 40) + "...";
  return text;
}

std::string excerpt(const std::string& value) { return excerpt(nlohmann::json(value)); }

// True when 0 < value < n, comparing 32-byte big-endian numbers.
bool is_in_scalar_range(std::span<const std::uint8_t> value) {
  const bool is_zero = std::all_of(value.begin(), value.end(), [](std::uint8_t byte) { return byte == 0; });
  if (is_zero) return false;
  return std::lexicographical_compare(value.begin(), value.end(), kP256Order.begin(), kP256Order.end());
}

std::int64_t unix_seconds(std::chrono::system_clock::time_point time) {
  return std::chrono::floor<std::chrono::seconds>(time.time_since_epoch()).count();
}

Result<std::int64_t, TokenError> numeric_date(const nlohmann::json& claims, std::string_view name) {
  const auto& value = claims.at(std::string(name));
  const std::string label = "claim [" + std::string(name) + "]";
  if (!value.is_number_integer()) {
    return fail(TokenError::invalid_claim, label + " must be an integer NumericDate, got " + excerpt(value));
  }
  if (value.is_number_unsigned()) {
    const auto seconds = value.get<std::uint64_t>();
    if (seconds > static_cast<std::uint64_t>(kMaxNumericDate)) {
      return fail(TokenError::invalid_claim, label + " is after the year 9999: " + std::to_string(seconds));
    }
    return static_cast<std::int64_t>(seconds);
  }
  const auto seconds = value.get<std::int64_t>();
  if (seconds < 0 || seconds > kMaxNumericDate) {
    return fail(TokenError::invalid_claim, label + " is out of range: " + std::to_string(seconds));
  }
  return seconds;
}

Result<void, TokenError> check_string_claim(const nlohmann::json& claims, std::string_view name) {
  const auto& value = claims.at(std::string(name));
  if (!value.is_string() || value.get_ref<const std::string&>().empty()) {
    return fail(TokenError::invalid_claim, "claim [" + std::string(name) + "] must be a non-empty string, got " + excerpt(value));
  }
  return {};
}

Result<void, TokenError> check_audience(const nlohmann::json& audience, const std::string& expected) {
  // RFC 7519, section 4.1.3: a single string or an array of strings.
  if (audience.is_string()) {
    if (expected.empty() || audience.get_ref<const std::string&>() != expected) {
      return fail(TokenError::wrong_audience, "claim [aud] is " + excerpt(audience) + ", expected " + excerpt(expected));
    }
    return {};
  }
  if (!audience.is_array()) {
    return fail(TokenError::invalid_claim, "claim [aud] must be a string or an array of strings, got " + excerpt(audience));
  }

  bool found = false;
  for (const auto& entry : audience) {
    if (!entry.is_string()) {
      return fail(TokenError::invalid_claim, "claim [aud] has a member that is not a string: " + excerpt(entry));
    }
    if (!expected.empty() && entry.get_ref<const std::string&>() == expected) found = true;
  }
  if (!found) {
    return fail(TokenError::wrong_audience, "claim [aud] " + excerpt(audience) + " does not contain " + excerpt(expected));
  }
  return {};
}

}  // namespace

std::string_view algorithm_name(JwsAlgorithm algorithm) {
  switch (algorithm) {
    case JwsAlgorithm::es256:
      return "ES256";
    case JwsAlgorithm::hs256:
      return "HS256";
  }
  return "unknown";
}

bool is_valid_kid(std::string_view kid) {
  if (kid.empty() || kid.size() > kMaxKidLength) return false;
  return std::all_of(kid.begin(), kid.end(), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
  });
}

Result<DecodedJws, TokenError> decode_compact(std::string_view token, JwsAlgorithm expected,
                                              std::size_t max_token_bytes, KidPresence kid) {
  // Size, before anything is parsed.
  if (token.size() > max_token_bytes) {
    return fail(TokenError::too_large, "token is " + std::to_string(token.size()) + " bytes, the maximum is " +
                                           std::to_string(max_token_bytes));
  }

  // RFC 7515, section 7.1: header "." payload "." signature.
  const auto dots = std::count(token.begin(), token.end(), '.');
  if (dots != 2) {
    return fail(TokenError::malformed, "expected 3 parts separated by '.', got " + std::to_string(dots + 1));
  }
  const std::size_t first_dot = token.find('.');
  const std::size_t second_dot = token.find('.', first_dot + 1);
  const std::string_view header_part = token.substr(0, first_dot);
  const std::string_view payload_part = token.substr(first_dot + 1, second_dot - first_dot - 1);
  const std::string_view signature_part = token.substr(second_dot + 1);

  const auto header_bytes = base64url::decode(header_part);
  if (!header_bytes) return fail(TokenError::malformed, "header is not canonical base64url");

  // The header: a strictly parsed JSON object.
  const std::string_view header_text(reinterpret_cast<const char*>(header_bytes->data()), header_bytes->size());
  auto header = json::parse_strict(header_text, kMaxJsonDepth);
  if (!header) return fail(TokenError::malformed, "header is not valid JSON: " + header.error().detail);
  if (!header->is_object()) return fail(TokenError::malformed, "header is not a JSON object");

  // An allow-list of members. Everything else is rejected, including crit and the keys or
  // key URLs that would let the token choose its own verification key (jwk, jku, x5u, x5c).
  for (const auto& [name, value] : header->items()) {
    if (name != "alg" && name != "typ" && name != "kid") {
      return fail(TokenError::forbidden_header, "header member " + excerpt(name) + " is not accepted");
    }
  }

  // alg must equal the key's algorithm exactly (RFC 8725, section 3.1).
  const auto alg = header->find("alg");
  if (alg == header->end()) return fail(TokenError::unsupported_algorithm, "header has no alg");
  if (!alg->is_string() || alg->get_ref<const std::string&>() != algorithm_name(expected)) {
    return fail(TokenError::unsupported_algorithm,
                "header alg " + excerpt(*alg) + " is not the key's algorithm " + std::string(algorithm_name(expected)));
  }

  // RFC 7519, section 5.1.
  const auto typ = header->find("typ");
  if (typ != header->end() && (!typ->is_string() || typ->get_ref<const std::string&>() != "JWT")) {
    return fail(TokenError::forbidden_header, "header typ must be \"JWT\", got " + excerpt(*typ));
  }

  DecodedJws decoded;
  const auto kid_member = header->find("kid");
  if (kid_member == header->end()) {
    if (kid == KidPresence::required) return fail(TokenError::unknown_key, "header has no kid");
  } else {
    if (!kid_member->is_string() || !is_valid_kid(kid_member->get_ref<const std::string&>())) {
      return fail(TokenError::unknown_key, "header kid " + excerpt(*kid_member) + " is not 1 to 128 characters of [A-Za-z0-9_-]");
    }
    decoded.kid = kid_member->get<std::string>();
  }

  // The payload and signature bytes; the payload is parsed after the signature verifies.
  auto payload = base64url::decode(payload_part);
  if (!payload) return fail(TokenError::malformed, "payload is not canonical base64url");
  auto signature = base64url::decode(signature_part);
  if (!signature) return fail(TokenError::malformed, "signature is not canonical base64url");

  decoded.header = std::move(*header);
  decoded.signing_input = token.substr(0, second_dot);
  decoded.payload = std::move(*payload);
  decoded.signature = std::move(*signature);
  return decoded;
}

Result<void, TokenError> verify_es256(EVP_PKEY* key, std::string_view signing_input,
                                      std::span<const std::uint8_t> signature) {
  if (!ossl::is_p256(key)) return fail(TokenError::unsupported_algorithm, "the verification key is not P-256");

  // RFC 7518, section 3.4: R and S as 32-byte big-endian integers, concatenated.
  if (signature.size() != 64) {
    return fail(TokenError::bad_signature, "ES256 signature must be 64 bytes, got " + std::to_string(signature.size()));
  }
  const auto r_bytes = signature.first(32);
  const auto s_bytes = signature.last(32);
  if (!is_in_scalar_range(r_bytes) || !is_in_scalar_range(s_bytes)) {
    return fail(TokenError::bad_signature, "ECDSA R or S is zero or not below the P-256 group order");
  }

  ossl::BigNum r(BN_bin2bn(r_bytes.data(), 32, nullptr));
  ossl::BigNum s(BN_bin2bn(s_bytes.data(), 32, nullptr));
  ossl::EcdsaSig ecdsa(ECDSA_SIG_new());
  if (!r || !s || !ecdsa || ECDSA_SIG_set0(ecdsa.get(), r.get(), s.get()) != 1) {
    return fail(TokenError::bad_signature, "building the ECDSA signature failed: " + ossl::drain_errors());
  }
  static_cast<void>(r.release());  // owned by `ecdsa` now
  static_cast<void>(s.release());

  unsigned char* der_raw = nullptr;
  const int der_length = i2d_ECDSA_SIG(ecdsa.get(), &der_raw);
  if (der_length <= 0) return fail(TokenError::bad_signature, "DER-encoding the signature failed: " + ossl::drain_errors());
  const std::unique_ptr<unsigned char, decltype([](unsigned char* p) { OPENSSL_free(p); })> der(der_raw);

  ossl::MdContext context(EVP_MD_CTX_new());
  if (!context || EVP_DigestVerifyInit(context.get(), nullptr, EVP_sha256(), nullptr, key) != 1) {
    return fail(TokenError::bad_signature, "preparing ECDSA verification failed: " + ossl::drain_errors());
  }
  const int verified = EVP_DigestVerify(context.get(), der.get(), static_cast<std::size_t>(der_length),
                                        reinterpret_cast<const unsigned char*>(signing_input.data()),
                                        signing_input.size());
  if (verified != 1) {
    ERR_clear_error();
    return fail(TokenError::bad_signature, "ES256 signature does not verify");
  }
  return {};
}

Result<std::vector<std::uint8_t>, TokenError> sign_es256(EVP_PKEY* key, std::string_view signing_input) {
  if (!ossl::is_p256(key)) return fail(TokenError::signing_failed, "the signing key is not P-256");

  ossl::MdContext context(EVP_MD_CTX_new());
  std::size_t der_length = 0;
  const auto* input = reinterpret_cast<const unsigned char*>(signing_input.data());
  if (!context || EVP_DigestSignInit(context.get(), nullptr, EVP_sha256(), nullptr, key) != 1 ||
      EVP_DigestSign(context.get(), nullptr, &der_length, input, signing_input.size()) != 1) {
    return fail(TokenError::signing_failed, "preparing ECDSA signing failed: " + ossl::drain_errors());
  }
  std::vector<unsigned char> der(der_length);
  if (EVP_DigestSign(context.get(), der.data(), &der_length, input, signing_input.size()) != 1) {
    return fail(TokenError::signing_failed, "ECDSA signing failed: " + ossl::drain_errors());
  }

  const unsigned char* cursor = der.data();
  ossl::EcdsaSig ecdsa(d2i_ECDSA_SIG(nullptr, &cursor, static_cast<long>(der_length)));
  if (!ecdsa) return fail(TokenError::signing_failed, "decoding the DER signature failed: " + ossl::drain_errors());

  std::vector<std::uint8_t> raw(64);
  if (BN_bn2binpad(ECDSA_SIG_get0_r(ecdsa.get()), raw.data(), 32) != 32 ||
      BN_bn2binpad(ECDSA_SIG_get0_s(ecdsa.get()), raw.data() + 32, 32) != 32) {
    return fail(TokenError::signing_failed, "an ECDSA value does not fit in 32 bytes: " + ossl::drain_errors());
  }
  return raw;
}

Result<std::array<std::uint8_t, 32>, TokenError> hmac_sha256(std::span<const std::uint8_t> secret,
                                                             std::string_view signing_input) {
  std::array<std::uint8_t, 32> mac{};
  std::size_t length = 0;
  if (EVP_Q_mac(nullptr, "HMAC", nullptr, "SHA256", nullptr, secret.data(), secret.size(),
                reinterpret_cast<const unsigned char*>(signing_input.data()), signing_input.size(), mac.data(),
                mac.size(), &length) == nullptr ||
      length != mac.size()) {
    return fail(TokenError::signing_failed, "HMAC-SHA-256 failed: " + ossl::drain_errors());
  }
  return mac;
}

Result<void, TokenError> verify_hs256(std::span<const std::uint8_t> secret, std::string_view signing_input,
                                      std::span<const std::uint8_t> signature) {
  if (signature.size() != 32) {
    return fail(TokenError::bad_signature, "HS256 signature must be 32 bytes, got " + std::to_string(signature.size()));
  }
  auto mac = hmac_sha256(secret, signing_input);
  if (!mac) return fail(TokenError::bad_signature, mac.error().detail);

  const bool equal = constant_time_equal(*mac, signature);
  OPENSSL_cleanse(mac->data(), mac->size());
  if (!equal) return fail(TokenError::bad_signature, "HS256 signature does not verify");
  return {};
}

std::string signing_input(std::string_view header_json, std::string_view payload_json) {
  return base64url::encode(header_json) + "." + base64url::encode(payload_json);
}

Result<std::string, TokenError> jwt_signing_input(JwsAlgorithm algorithm, std::string_view kid,
                                                  const nlohmann::json& claims) {
  if (!claims.is_object()) return fail(TokenError::invalid_claim, "claims must be a JSON object");
  for (const auto name : kRequiredClaims) {
    if (!claims.contains(std::string(name))) {
      return fail(TokenError::missing_claim, "claim [" + std::string(name) + "] is required");
    }
  }
  if (!is_valid_kid(kid)) return fail(TokenError::signing_failed, "the signing key has an invalid kid");

  const nlohmann::json header = {{"alg", algorithm_name(algorithm)}, {"typ", "JWT"}, {"kid", kid}};
  try {
    return signing_input(header.dump(), claims.dump(-1, ' ', false, nlohmann::json::error_handler_t::strict));
  } catch (const nlohmann::json::type_error& error) {
    return fail(TokenError::signing_failed, std::string("claims are not valid UTF-8: ") + error.what());
  }
}

Result<nlohmann::json, TokenError> parse_claims(std::span<const std::uint8_t> payload) {
  const std::string_view text(reinterpret_cast<const char*>(payload.data()), payload.size());
  auto claims = json::parse_strict(text, kMaxJsonDepth);
  if (!claims) return fail(TokenError::malformed, "payload is not valid JSON: " + claims.error().detail);
  if (!claims->is_object()) return fail(TokenError::malformed, "payload is not a JSON object");
  return std::move(*claims);
}

Result<void, TokenError> check_claims(const nlohmann::json& claims, const VerifyOptions& options) {
  // Presence (RFC 7519, section 4.1; all seven are required by this server).
  for (const auto name : kRequiredClaims) {
    if (!claims.contains(std::string(name))) {
      return fail(TokenError::missing_claim, "claim [" + std::string(name) + "] is required");
    }
  }

  // Types.
  for (const auto name : {"iss", "sub", "jti"}) {
    if (auto checked = check_string_claim(claims, name); !checked) return checked;
  }
  auto exp = numeric_date(claims, "exp");
  if (!exp) return std::unexpected(std::move(exp.error()));
  auto iat = numeric_date(claims, "iat");
  if (!iat) return std::unexpected(std::move(iat.error()));
  auto nbf = numeric_date(claims, "nbf");
  if (!nbf) return std::unexpected(std::move(nbf.error()));

  // Lifetime.
  if (*exp <= *iat) {
    return fail(TokenError::invalid_claim, "claim [exp] " + std::to_string(*exp) + " is not after [iat] " + std::to_string(*iat));
  }
  if (*exp - *iat > options.max_lifetime.count()) {
    return fail(TokenError::invalid_claim, "lifetime exp - iat is " + std::to_string(*exp - *iat) +
                                               " s, the maximum is " + std::to_string(options.max_lifetime.count()) + " s");
  }

  // Issuer and audience.
  const auto& issuer = claims["iss"].get_ref<const std::string&>();
  if (options.issuer.empty() || issuer != options.issuer) {
    return fail(TokenError::wrong_issuer, "claim [iss] is " + excerpt(issuer) + ", expected " + excerpt(options.issuer));
  }
  if (auto audience = check_audience(claims["aud"], options.audience); !audience) return audience;

  // Time, with the allowed clock skew on each side.
  const std::int64_t now = unix_seconds(options.now);
  const std::int64_t skew = options.skew.count();
  if (now >= *exp + skew) {
    return fail(TokenError::expired, "claim [exp] " + std::to_string(*exp) + " + skew " + std::to_string(skew) +
                                         " s is not after now " + std::to_string(now));
  }
  if (*nbf > now + skew) {
    return fail(TokenError::not_yet_valid, "claim [nbf] " + std::to_string(*nbf) + " is after now " +
                                               std::to_string(now) + " + skew " + std::to_string(skew) + " s");
  }
  if (*iat > now + skew) {
    return fail(TokenError::issued_in_future, "claim [iat] " + std::to_string(*iat) + " is after now " +
                                                  std::to_string(now) + " + skew " + std::to_string(skew) + " s");
  }
  return {};
}

Result<nlohmann::json, TokenError> verify_jwt(std::string_view token, JwsAlgorithm algorithm,
                                              const VerifyOptions& options,
                                              const SignatureVerifier& verify_signature) {
  auto decoded = decode_compact(token, algorithm, options.max_token_bytes, KidPresence::required);
  if (!decoded) return std::unexpected(std::move(decoded.error()));

  if (auto verified = verify_signature(*decoded); !verified) return std::unexpected(std::move(verified.error()));

  auto claims = parse_claims(decoded->payload);
  if (!claims) return std::unexpected(std::move(claims.error()));

  if (auto checked = check_claims(*claims, options); !checked) return std::unexpected(std::move(checked.error()));
  return std::move(*claims);
}

Result<nlohmann::json, TokenError> verify_es256_jws(std::string_view token, EVP_PKEY* key,
                                                    std::size_t max_token_bytes) {
  auto decoded = decode_compact(token, JwsAlgorithm::es256, max_token_bytes, KidPresence::optional);
  if (!decoded) return std::unexpected(std::move(decoded.error()));

  if (auto verified = verify_es256(key, decoded->signing_input, decoded->signature); !verified) {
    return std::unexpected(std::move(verified.error()));
  }
  return parse_claims(decoded->payload);
}

}  // namespace licensing::crypto::detail
