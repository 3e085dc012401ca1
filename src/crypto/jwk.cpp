#include "crypto/jwk.hpp"

#include "common/base64url.hpp"

namespace licensing::crypto::detail {
namespace {

Result<std::string, ossl::CryptoError> string_member(const nlohmann::json& jwk, const char* name) {
  const auto member = jwk.find(name);
  if (member == jwk.end()) return fail(ossl::CryptoError::invalid, std::string("JWK has no \"") + name + "\" member");
  if (!member->is_string()) return fail(ossl::CryptoError::invalid, std::string("JWK member \"") + name + "\" is not a string");
  return member->get<std::string>();
}

}  // namespace

Result<nlohmann::json, ossl::CryptoError> public_jwk(const EVP_PKEY* key) {
  auto coordinates = ossl::p256_coordinates(key);
  if (!coordinates) return std::unexpected(std::move(coordinates.error()));

  return nlohmann::json{
      {"kty", "EC"},
      {"crv", "P-256"},
      {"x", base64url::encode(coordinates->first)},
      {"y", base64url::encode(coordinates->second)},
  };
}

Result<std::string, ossl::CryptoError> jwk_thumbprint(const EVP_PKEY* key) {
  auto jwk = public_jwk(key);
  if (!jwk) return std::unexpected(std::move(jwk.error()));

  // RFC 7638, section 3.2: required members only, sorted, no whitespace. Built by hand
  // so the byte sequence does not depend on a JSON library's output settings. The
  // coordinate values are base64url, which needs no JSON escaping.
  const std::string canonical = R"({"crv":"P-256","kty":"EC","x":")" + (*jwk)["x"].get<std::string>() +
                                R"(","y":")" + (*jwk)["y"].get<std::string>() + R"("})";
  const auto digest = ossl::sha256(canonical);
  return base64url::encode(digest);
}

Result<ossl::Pkey, ossl::CryptoError> public_key_from_jwk(const nlohmann::json& jwk) {
  if (!jwk.is_object()) return fail(ossl::CryptoError::invalid, "JWK is not a JSON object");
  if (jwk.contains("d")) return fail(ossl::CryptoError::invalid, "JWK contains the private member \"d\"");

  auto kty = string_member(jwk, "kty");
  if (!kty) return std::unexpected(std::move(kty.error()));
  if (*kty != "EC") return fail(ossl::CryptoError::invalid, "JWK kty must be \"EC\", got " + nlohmann::json(*kty).dump());

  auto crv = string_member(jwk, "crv");
  if (!crv) return std::unexpected(std::move(crv.error()));
  if (*crv != "P-256") return fail(ossl::CryptoError::invalid, "JWK crv must be \"P-256\", got " + nlohmann::json(*crv).dump());

  if (jwk.contains("alg")) {
    const auto& alg = jwk["alg"];
    if (!alg.is_string() || alg.get<std::string>() != "ES256") {
      return fail(ossl::CryptoError::invalid, "JWK alg must be \"ES256\", got " + alg.dump());
    }
  }
  if (jwk.contains("use")) {
    const auto& use = jwk["use"];
    if (!use.is_string() || use.get<std::string>() != "sig") {
      return fail(ossl::CryptoError::invalid, "JWK use must be \"sig\", got " + use.dump());
    }
  }

  auto x_text = string_member(jwk, "x");
  if (!x_text) return std::unexpected(std::move(x_text.error()));
  auto y_text = string_member(jwk, "y");
  if (!y_text) return std::unexpected(std::move(y_text.error()));
  const auto x = base64url::decode(*x_text);
  const auto y = base64url::decode(*y_text);
  if (!x || !y) return fail(ossl::CryptoError::invalid, "JWK x or y is not canonical base64url");

  // RFC 7518, section 6.2.1.2: each coordinate is the full 32 bytes for P-256, even
  // when it has leading zero bytes.
  if (x->size() != 32 || y->size() != 32) {
    return fail(ossl::CryptoError::invalid, "JWK x and y must decode to 32 bytes each, got " +
                                                std::to_string(x->size()) + " and " + std::to_string(y->size()));
  }
  return ossl::p256_public_key(*x, *y);
}

}  // namespace licensing::crypto::detail
