// Access-token signing and verification (JWS compact serialization, RFC 7515; JWT claims,
// RFC 7519). ES256 with keys on disk is the default; HS256 with a shared secret is a
// compatibility option. Verification pins the algorithm to the key named by `kid`.
#pragma once

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstddef>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "common/error.hpp"
#include "common/secret.hpp"

namespace licensing::crypto {

enum class TokenError {
  too_large,             // longer than VerifyOptions::max_token_bytes; rejected before parsing
  malformed,             // not three base64url parts, non-canonical base64url, bad JSON, duplicate members
  unsupported_algorithm, // alg missing, "none" in any spelling, or not the key's algorithm
  forbidden_header,      // jwk, jku, x5u, x5c, crit or another header we do not accept
  unknown_key,           // kid missing, malformed, or not in the key set
  bad_signature,         // signature does not verify, or ECDSA values out of range
  expired,               // exp + skew <= now
  not_yet_valid,         // nbf - skew > now
  issued_in_future,      // iat - skew > now
  wrong_issuer,
  wrong_audience,
  missing_claim,         // iss, sub, aud, exp, iat, nbf or jti absent
  invalid_claim,         // a claim of the wrong type, or a lifetime over the maximum
  signing_failed,
};

// Returns the stable short name of a code ("expired", "bad_signature", ...).
std::string_view to_string(TokenError code);

enum class KeyError {
  io,          // reading or writing a key file failed
  invalid,     // a key file that does not hold a P-256 private key
  permissions, // a key file readable by group or others
  config,      // an HS256 secret shorter than 32 bytes, say
};

std::string_view to_string(KeyError code);

struct VerifyOptions {
  std::string issuer;
  std::string audience;
  std::chrono::system_clock::time_point now;
  std::chrono::seconds skew{30};
  std::chrono::seconds max_lifetime{24 * 3600};  // exp - iat must not exceed it
  std::size_t max_token_bytes = 8192;
};

struct TokenKeysConfig {
  // ES256: directory of PEM keys, one per kid, created 0700 with files 0600. Each key is
  // "<kid>.pem" (PKCS#8), where kid is the RFC 7638 JWK thumbprint of its public key, and
  // "<kid>.json" records its creation time as {"created_at": <Unix seconds>}. Without that
  // file, the key file's modification time is used.
  std::filesystem::path key_directory;
  // Keys older than this are no longer used to sign; they stay in the JWKS for
  // `retention` more, so tokens they signed keep verifying until they expire.
  std::chrono::seconds rotation_period{30 * 24 * 3600};
  std::chrono::seconds retention{24 * 3600};
  // HS256 compatibility mode: when set, tokens are signed and verified with this secret
  // only, and the JWKS is empty.
  std::optional<SecretBytes> hs256_secret;
};

// The core's token keys. Thread-safe.
class TokenKeys {
 public:
  // Loads every key in the directory, creating one when there is none or the newest is
  // older than rotation_period. Fails with `permissions` for a key file that group or
  // others can access (or a directory they can write), with `invalid` for a "*.pem" file
  // that is not a P-256 key named by its thumbprint, and with `config` for an HS256
  // secret shorter than 32 bytes.
  static Result<std::unique_ptr<TokenKeys>, KeyError> open(TokenKeysConfig config,
                                                           std::chrono::system_clock::time_point now);
  virtual ~TokenKeys() = default;

  // Signs `claims` with the current key; the header is {"alg", "typ": "JWT", "kid"}.
  virtual Result<std::string, TokenError> sign(const nlohmann::json& claims) const = 0;

  // Verifies signature and the registered claims, and returns the claims.
  virtual Result<nlohmann::json, TokenError> verify(std::string_view token, const VerifyOptions& options) const = 0;

  // {"keys": [...]} with the public JWK (RFC 7517, 7518) of every retained ES256 key.
  virtual nlohmann::json jwks() const = 0;

  // Makes a new current key and drops keys past their retention; returns the new kid.
  virtual Result<std::string, KeyError> rotate(std::chrono::system_clock::time_point now) = 0;

  virtual std::string current_kid() const = 0;

  // True when the current key is at least rotation_period old at `now`, so the caller
  // should call rotate(). Always false in HS256 mode, where rotate() is not available.
  virtual bool rotation_due(std::chrono::system_clock::time_point now) const = 0;
};

// Verifies a token against a published JWKS (the path the enclave and clients take).
Result<nlohmann::json, TokenError> verify_with_jwks(std::string_view token, const nlohmann::json& jwks,
                                                    const VerifyOptions& options);

}  // namespace licensing::crypto
