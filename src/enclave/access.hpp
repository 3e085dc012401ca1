// The enclave's two credential checks. A request passes only when both pass: the client
// certificate (checked during the TLS handshake, see tls.hpp) and the access token.
#pragma once

#include <openssl/x509.h>

#include <nlohmann/json.hpp>

#include <chrono>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "common/error.hpp"
#include "crypto/token_keys.hpp"

namespace licensing::enclave {

enum class AccessError {
  missing_token,    // no Authorization header
  malformed_header, // an Authorization header that is not "Bearer <token>"
  invalid_token,    // verify_with_jwks failed; the detail names the TokenError
  wrong_subject,    // a valid token whose sub is not the owner
};

std::string_view to_string(AccessError code);

struct TokenPolicy {
  std::string issuer;
  std::string enclave_id;  // the required audience
  std::string owner;       // the required subject
};

// Checks an Authorization header value: the "Bearer" scheme (case-insensitive, RFC 9110
// section 11.1), the token's signature against `jwks`, its registered claims with
// iss = policy.issuer and aud = policy.enclave_id at `now` (30 s skew), and sub =
// policy.owner. Returns the claims.
Result<nlohmann::json, AccessError> check_bearer(std::string_view authorization, const nlohmann::json& jwks,
                                                 const TokenPolicy& policy, std::chrono::system_clock::time_point now);

enum class ClientCertificateError {
  no_user_uri,      // no subjectAltName URI
  several_uris,     // more than one subjectAltName URI, so the certificate is ambiguous
  wrong_user,       // one URI, but not urn:licensing:user:<owner>
};

std::string_view to_string(ClientCertificateError code);

// Checks that `certificate` names exactly one user through a subjectAltName URI and that
// it is `owner`. It does not check the chain, validity or key usage: the TLS handshake
// does (see tls.hpp).
Result<void, ClientCertificateError> check_client_certificate(X509* certificate, std::string_view owner);

// The token signing keys from the JWKS file. reload() replaces them when the file parses,
// so a SIGHUP picks up a rotated key set. Thread-safe.
class JwksFile {
 public:
  // Reads the file; throws std::runtime_error when it cannot be read or is not a JWKS.
  explicit JwksFile(std::filesystem::path path);

  // Rereads the file; keeps the previous keys and returns the reason when it fails.
  Result<void, AccessError> reload();
  std::shared_ptr<const nlohmann::json> keys() const;

 private:
  const std::filesystem::path path_;
  mutable std::mutex mutex_;
  std::shared_ptr<const nlohmann::json> keys_;  // guarded by mutex_
};

// Parses a JWKS document: an object with a "keys" array. Returns nullopt otherwise.
std::optional<nlohmann::json> parse_jwks(std::string_view text);

}  // namespace licensing::enclave
