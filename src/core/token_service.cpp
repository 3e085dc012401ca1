#include "core/token_service.hpp"

#include <openssl/rand.h>

#include <array>
#include <regex>

#include "common/base64url.hpp"
#include "common/logging.hpp"

namespace licensing::core {
namespace {

// User ids and session ids are UUIDs; audiences are ids or service names.
bool is_identifier(const std::string& value, std::size_t max_length) {
  static const std::regex allowed("[A-Za-z0-9._:-]+");
  return !value.empty() && value.size() <= max_length && std::regex_match(value, allowed);
}

std::string random_token_id() {
  std::array<std::uint8_t, 16> bytes{};
  if (RAND_bytes(bytes.data(), static_cast<int>(bytes.size())) != 1) return {};
  return base64url::encode(bytes);
}

std::int64_t unix_seconds(std::chrono::system_clock::time_point at) {
  return std::chrono::duration_cast<std::chrono::seconds>(at.time_since_epoch()).count();
}

}  // namespace

TokenServiceImpl::TokenServiceImpl(const KeyHolder& keys, TokenPolicy policy, Clock clock)
    : keys_(keys), policy_(std::move(policy)), clock_(std::move(clock)) {}

grpc::Status TokenServiceImpl::MintAccessToken(grpc::ServerContext*, const licensing::v1::MintAccessTokenRequest* request,
                                               licensing::v1::MintAccessTokenResponse* response) {
  if (!is_identifier(request->subject(), 64)) {
    return {grpc::StatusCode::INVALID_ARGUMENT, "subject must be 1 to 64 characters of [A-Za-z0-9._:-]"};
  }
  if (!is_identifier(request->session_id(), 64)) {
    return {grpc::StatusCode::INVALID_ARGUMENT, "session_id must be 1 to 64 characters of [A-Za-z0-9._:-]"};
  }
  const std::string audience = request->audience().empty() ? policy_.gateway_audience : request->audience();
  if (!is_identifier(audience, 128)) {
    return {grpc::StatusCode::INVALID_ARGUMENT, "audience must be 1 to 128 characters of [A-Za-z0-9._:-]"};
  }

  const std::string token_id = random_token_id();
  if (token_id.empty()) return {grpc::StatusCode::INTERNAL, "random number generator failed"};

  const auto now = unix_seconds(clock_());
  const auto lifetime = policy_.access_token_lifetime.count();
  const nlohmann::json claims = {
      {"iss", policy_.issuer}, {"sub", request->subject()}, {"aud", audience},
      {"iat", now},            {"nbf", now},                {"exp", now + lifetime},
      {"jti", token_id},       {"sid", request->session_id()},
  };

  auto token = keys_.get()->sign(claims);
  if (!token) {
    logging::error("token_signing_failed", {{"error", crypto::to_string(token.error().code)}, {"detail", token.error().detail}});
    return {grpc::StatusCode::INTERNAL, "token signing failed"};
  }
  response->set_access_token(*token);
  response->set_expires_in(lifetime);
  logging::debug("access_token_minted", {{"sub", request->subject()}, {"sid", request->session_id()}, {"jti", token_id}});
  return grpc::Status::OK;
}

grpc::Status TokenServiceImpl::VerifyAccessToken(grpc::ServerContext*,
                                                 const licensing::v1::VerifyAccessTokenRequest* request,
                                                 licensing::v1::VerifyAccessTokenResponse* response) {
  crypto::VerifyOptions options;
  options.issuer = policy_.issuer;
  options.audience = request->audience().empty() ? policy_.gateway_audience : request->audience();
  options.now = clock_();
  options.skew = policy_.clock_skew;
  options.max_lifetime = policy_.access_token_lifetime;

  const auto claims = keys_.get()->verify(request->token(), options);
  if (!claims) {
    response->set_valid(false);
    response->set_error(std::string(crypto::to_string(claims.error().code)));
    return grpc::Status::OK;
  }

  // Access tokens for the gateway name their session; the type checks guard against a
  // token minted by another deployment that shares the keys but not the claim layout.
  const auto session = claims->find("sid");
  if (session == claims->end() || !session->is_string() || !(*claims)["sub"].is_string()) {
    response->set_valid(false);
    response->set_error("missing_claim");
    return grpc::Status::OK;
  }
  response->set_valid(true);
  response->set_subject((*claims)["sub"].get<std::string>());
  response->set_session_id(session->get<std::string>());
  response->set_token_id((*claims)["jti"].is_string() ? (*claims)["jti"].get<std::string>() : "");
  response->set_expires_at((*claims)["exp"].get<std::int64_t>());
  return grpc::Status::OK;
}

grpc::Status TokenServiceImpl::GetJwks(grpc::ServerContext*, const licensing::v1::GetJwksRequest*,
                                       licensing::v1::GetJwksResponse* response) {
  response->set_jwks_json(keys_.get()->jwks().dump());
  return grpc::Status::OK;
}

}  // namespace licensing::core
