// The JWS compact serialization (RFC 7515) and JWT claim checks (RFC 7519) under
// TokenKeys and verify_with_jwks. Internal to the crypto module and its tests: callers
// use token_keys.hpp.
#pragma once

#include <nlohmann/json.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.hpp"
#include "crypto/openssl.hpp"
#include "crypto/token_keys.hpp"

namespace licensing::crypto::detail {

enum class JwsAlgorithm { es256, hs256 };

// "ES256" or "HS256", the JOSE name (RFC 7518, section 3.1).
std::string_view algorithm_name(JwsAlgorithm algorithm);

// Nesting limit for header and claims JSON. Our claims are flat, so 8 leaves room for a
// nested custom claim and still bounds the parser.
inline constexpr std::size_t kMaxJsonDepth = 8;
inline constexpr std::size_t kMaxKidLength = 128;

// True for 1 to 128 characters of [A-Za-z0-9_-], the alphabet of our base64url kids. A kid
// names a file on disk, so this also keeps "/", "." and NUL out of paths.
bool is_valid_kid(std::string_view kid);

enum class KidPresence { required, optional };

// A compact JWS whose header passed the checks of decode_compact. The signature is not
// verified yet and the payload is not parsed yet.
struct DecodedJws {
  nlohmann::json header;
  std::string kid;                   // empty only when the kid was optional and absent
  std::string_view signing_input;    // BASE64URL(header) "." BASE64URL(payload), inside the token
  std::vector<std::uint8_t> payload;
  std::vector<std::uint8_t> signature;
};

// Checks, in order, each failure returning at once:
//  1. token size <= max_token_bytes (too_large), before anything is parsed;
//  2. exactly three "."-separated parts, each canonical base64url (malformed);
//  3. the header is a JSON object, strictly parsed: no duplicate members, depth <= 8 (malformed);
//  4. header members are only alg, typ and kid (forbidden_header), so jwk, jku, x5u, x5c,
//     x5t and crit are rejected (RFC 7515, sections 4.1.3-4.1.11);
//  5. alg is a string equal to `expected`, byte for byte (unsupported_algorithm), which
//     rejects "none" in any spelling and an HS256 token presented to an ES256 key;
//  6. typ, when present, is exactly "JWT" (forbidden_header);
//  7. kid is a string passing is_valid_kid (unknown_key); absent only when `kid` is optional.
Result<DecodedJws, TokenError> decode_compact(std::string_view token, JwsAlgorithm expected,
                                              std::size_t max_token_bytes, KidPresence kid);

// Verifies an ES256 signature: exactly 64 bytes R || S (RFC 7518, section 3.4), with
// 0 < R < n and 0 < S < n for the P-256 group order n, converted to DER for OpenSSL.
// Returns bad_signature for every failure, and unsupported_algorithm if `key` is not P-256.
Result<void, TokenError> verify_es256(EVP_PKEY* key, std::string_view signing_input,
                                      std::span<const std::uint8_t> signature);

// Signs with a P-256 key and returns the 64-byte R || S signature.
Result<std::vector<std::uint8_t>, TokenError> sign_es256(EVP_PKEY* key, std::string_view signing_input);

// HMAC-SHA-256 (RFC 7518, section 3.2).
Result<std::array<std::uint8_t, 32>, TokenError> hmac_sha256(std::span<const std::uint8_t> secret,
                                                             std::string_view signing_input);

// Verifies an HS256 signature: length 32, compared in constant time.
Result<void, TokenError> verify_hs256(std::span<const std::uint8_t> secret, std::string_view signing_input,
                                      std::span<const std::uint8_t> signature);

// Returns BASE64URL(header_json) "." BASE64URL(payload_json) for the exact bytes given.
std::string signing_input(std::string_view header_json, std::string_view payload_json);

// Serializes a header {"alg", "kid", "typ": "JWT"} and `claims`, and returns the signing
// input. Claims must be a JSON object holding every registered claim that check_claims
// requires (missing_claim, invalid_claim) and valid UTF-8 (signing_failed).
Result<std::string, TokenError> jwt_signing_input(JwsAlgorithm algorithm, std::string_view kid,
                                                  const nlohmann::json& claims);

// Parses the payload as a JSON object: strict, no duplicate members, depth <= 8 (malformed).
Result<nlohmann::json, TokenError> parse_claims(std::span<const std::uint8_t> payload);

// Checks the registered claims (RFC 7519, section 4.1), in this order:
//  - iss, sub, aud, exp, iat, nbf and jti are present (missing_claim).
//  - iss, sub and jti are non-empty strings, aud is a string or an array of strings, and
//    exp, iat and nbf are integer NumericDates in [0, 253402300799] (invalid_claim).
//  - exp > iat and exp - iat <= max_lifetime (invalid_claim).
//  - iss equals options.issuer (wrong_issuer) and aud contains options.audience
//    (wrong_audience). An empty expected issuer or audience matches nothing.
//  - now < exp + skew (expired), nbf <= now + skew (not_yet_valid) and iat <= now + skew
//    (issued_in_future), with now truncated to whole seconds.
// Other claims are not checked.
Result<void, TokenError> check_claims(const nlohmann::json& claims, const VerifyOptions& options);

// Looks up the key for `decoded.kid` and verifies `decoded.signature` over
// `decoded.signing_input`.
using SignatureVerifier = std::function<Result<void, TokenError>(const DecodedJws& decoded)>;

// The whole pipeline: decode_compact (kid required), `verify_signature`, parse_claims,
// check_claims. The payload is parsed only after its signature has verified.
Result<nlohmann::json, TokenError> verify_jwt(std::string_view token, JwsAlgorithm algorithm,
                                              const VerifyOptions& options,
                                              const SignatureVerifier& verify_signature);

// The JWS layer alone, for RFC 7515 test vectors: decode_compact with an optional kid,
// verify_es256 with `key`, and return the payload parsed as a JSON object. No claim is
// checked. Not for accepting tokens.
Result<nlohmann::json, TokenError> verify_es256_jws(std::string_view token, EVP_PKEY* key,
                                                    std::size_t max_token_bytes);

}  // namespace licensing::crypto::detail
