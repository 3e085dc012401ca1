#include "gateway/authenticator.hpp"

#include "common/logging.hpp"
#include "gateway/responses.hpp"

namespace licensing::gateway {

using http::Request;
using http::Response;
namespace beast_http = boost::beast::http;

namespace {
constexpr std::size_t kMaxAuthorizationBytes = 8192;
}  // namespace

Authenticator::Authenticator(CoreClient& core, store::Store& store, Metrics& metrics)
    : core_(core), store_(store), metrics_(metrics) {
  metrics_.describe("licensing_token_verifications_total", "Access-token checks by outcome");
}

void Authenticator::count(const std::string& outcome) {
  metrics_.increment("licensing_token_verifications_total", {{"outcome", outcome}});
}

// Validates a bearer token with the core and checks that its session is not revoked.
// A request with more than one Authorization header is rejected outright.
std::expected<VerifiedToken, Response> Authenticator::authenticate(const Request& request) {
  if (request.headers.count(beast_http::field::authorization) != 1) {
    count("missing");
    return std::unexpected(invalid_token());
  }
  const auto header = request.headers[beast_http::field::authorization];
  const std::string_view value(header.data(), header.size());
  if (value.size() > kMaxAuthorizationBytes || value.size() < 8 || lowercase(value.substr(0, 7)) != "bearer ") {
    count("malformed");
    return std::unexpected(invalid_token());
  }
  const std::string token(trim(value.substr(7)));

  auto verdict = core_.verify_access_token(token);
  if (!verdict) return std::unexpected(unavailable("the token service"));
  if (!verdict->valid) {
    count(verdict->error);
    logging::debug("access_token_rejected", {{"reason", verdict->error}, {"client", request.client_address}});
    return std::unexpected(invalid_token());
  }

  // A session the database does not know is treated as revoked: a correctly signed
  // token must still name a session that this deployment started.
  auto revoked = store_.is_family_revoked(verdict->token.session_id);
  if (!revoked && revoked.error().code != store::StoreError::not_found) {
    return std::unexpected(unavailable("the database"));
  }
  if (!revoked || *revoked) {
    count("session_revoked");
    return std::unexpected(invalid_token());
  }
  count("valid");
  return verdict->token;
}


}  // namespace licensing::gateway
