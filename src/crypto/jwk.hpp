// Public JSON Web Keys for ECDSA P-256 (RFC 7517; RFC 7518, section 6.2) and their
// thumbprints (RFC 7638). Internal to the crypto module and its tests.
#pragma once

#include <nlohmann/json.hpp>

#include <string>

#include "common/error.hpp"
#include "crypto/openssl.hpp"

namespace licensing::crypto::detail {

// Returns {"kty": "EC", "crv": "P-256", "x", "y"} for a P-256 key; other keys are invalid.
Result<nlohmann::json, ossl::CryptoError> public_jwk(const EVP_PKEY* key);

// Returns the RFC 7638 thumbprint: base64url(SHA-256) of the JSON object with exactly the
// required members crv, kty, x, y in lexicographic order and no whitespace (section 3.2).
Result<std::string, ossl::CryptoError> jwk_thumbprint(const EVP_PKEY* key);

// Imports a public JWK for ES256 verification. Accepts only kty "EC", crv "P-256", and x
// and y of 32 bytes each in canonical base64url that form a point on the curve. "alg" must
// be "ES256" and "use" must be "sig" when present. A JWK with the private member "d" is
// rejected, so a private key published by mistake is never used. "kid" is not checked here.
Result<ossl::Pkey, ossl::CryptoError> public_key_from_jwk(const nlohmann::json& jwk);

}  // namespace licensing::crypto::detail
