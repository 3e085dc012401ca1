#include "enclave/access.hpp"

#include <openssl/x509v3.h>

#include <stdexcept>

#include "common/json.hpp"
#include "crypto/openssl.hpp"
#include "enclave/config.hpp"

namespace licensing::enclave {
namespace {

constexpr std::size_t max_jwks_bytes = 256 * 1024;
constexpr std::size_t max_jwks_depth = 8;

bool iequals_ascii(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) != std::tolower(static_cast<unsigned char>(b[i]))) return false;
  }
  return true;
}

Result<nlohmann::json, AccessError> read_jwks(const std::filesystem::path& path) {
  auto text = crypto::ossl::read_public_file(path, max_jwks_bytes);
  if (!text) return fail(AccessError::invalid_token, "reading the JWKS " + path.string() + " failed: " + text.error().detail);

  auto keys = parse_jwks(*text);
  if (!keys) return fail(AccessError::invalid_token, "the JWKS " + path.string() + " is not an object with a \"keys\" array");
  return std::move(*keys);
}

}  // namespace

std::string_view to_string(AccessError code) {
  switch (code) {
    case AccessError::missing_token: return "missing_token";
    case AccessError::malformed_header: return "malformed_header";
    case AccessError::invalid_token: return "invalid_token";
    case AccessError::wrong_subject: return "wrong_subject";
  }
  return "unknown";
}

std::string_view to_string(ClientCertificateError code) {
  switch (code) {
    case ClientCertificateError::no_user_uri: return "no_user_uri";
    case ClientCertificateError::several_uris: return "several_uris";
    case ClientCertificateError::wrong_user: return "wrong_user";
  }
  return "unknown";
}

Result<nlohmann::json, AccessError> check_bearer(std::string_view authorization, const nlohmann::json& jwks,
                                                 const TokenPolicy& policy, std::chrono::system_clock::time_point now) {
  if (authorization.empty()) return fail(AccessError::missing_token, "no Authorization header");

  constexpr std::string_view scheme = "Bearer ";
  if (authorization.size() <= scheme.size() || !iequals_ascii(authorization.substr(0, scheme.size()), scheme)) {
    return fail(AccessError::malformed_header, "the Authorization scheme is not Bearer");
  }
  const std::string_view token = authorization.substr(scheme.size());

  crypto::VerifyOptions options;
  options.issuer = policy.issuer;
  options.audience = policy.enclave_id;
  options.now = now;
  auto claims = crypto::verify_with_jwks(token, jwks, options);
  if (!claims) {
    return fail(AccessError::invalid_token, "the token failed verification: " + std::string(crypto::to_string(claims.error().code)));
  }

  // verify_with_jwks requires sub to be present; it must also be a string naming the owner.
  const auto subject = claims->find("sub");
  if (subject == claims->end() || !subject->is_string() || !constant_time_equal(subject->get_ref<const std::string&>(), policy.owner)) {
    return fail(AccessError::wrong_subject, "the token's sub is not the enclave owner");
  }
  return std::move(*claims);
}

Result<void, ClientCertificateError> check_client_certificate(X509* certificate, std::string_view owner) {
  const crypto::ossl::GeneralNames names(
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(certificate, NID_subject_alt_name, nullptr, nullptr)));

  std::optional<std::string> uri;
  const int count = names ? sk_GENERAL_NAME_num(names.get()) : 0;
  for (int i = 0; i < count; ++i) {
    const GENERAL_NAME* name = sk_GENERAL_NAME_value(names.get(), i);
    if (name->type != GEN_URI) continue;
    if (uri) return fail(ClientCertificateError::several_uris, "the certificate carries more than one URI");

    const ASN1_IA5STRING* text = name->d.uniformResourceIdentifier;
    uri = std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(text)), static_cast<std::size_t>(ASN1_STRING_length(text)));
  }
  if (!uri) return fail(ClientCertificateError::no_user_uri, "the certificate carries no subjectAltName URI");

  if (*uri != owner_uri(owner)) {
    return fail(ClientCertificateError::wrong_user, "expected " + owner_uri(owner) + ", the certificate names " + *uri);
  }
  return {};
}

std::optional<nlohmann::json> parse_jwks(std::string_view text) {
  auto parsed = json::parse_strict(text, max_jwks_depth);
  if (!parsed || !parsed->is_object()) return std::nullopt;

  const auto keys = parsed->find("keys");
  if (keys == parsed->end() || !keys->is_array()) return std::nullopt;
  return std::move(*parsed);
}

JwksFile::JwksFile(std::filesystem::path path) : path_(std::move(path)) {
  auto keys = read_jwks(path_);
  if (!keys) throw std::runtime_error(keys.error().detail);
  keys_ = std::make_shared<const nlohmann::json>(std::move(*keys));
}

Result<void, AccessError> JwksFile::reload() {
  auto keys = read_jwks(path_);
  if (!keys) return std::unexpected(keys.error());

  const std::lock_guard lock(mutex_);
  keys_ = std::make_shared<const nlohmann::json>(std::move(*keys));
  return {};
}

std::shared_ptr<const nlohmann::json> JwksFile::keys() const {
  const std::lock_guard lock(mutex_);
  return keys_;
}

}  // namespace licensing::enclave
