#include "enclave/api.hpp"

#include "common/json.hpp"
#include "common/logging.hpp"

namespace licensing::enclave {
namespace {

namespace net = boost::asio;
using http::Request;
using http::Response;
using Verb = http::beast_http::verb;

constexpr std::size_t max_json_depth = 8;

Response json_response(unsigned status, const nlohmann::json& body) {
  Response response;
  response.status = status;
  response.body = body.dump();
  return response;
}

Response no_content() {
  Response response;
  response.status = 204;
  return response;
}

// 401 with the RFC 6750 section 3 challenge; error="invalid_token" only when a token came.
Response unauthorized(const Error<AccessError>& error) {
  const bool had_token = error.code != AccessError::missing_token && error.code != AccessError::malformed_header;
  Response response = http::problem(401, problem_type::unauthorized, "Unauthorized",
                                    had_token ? "The access token is not valid for this enclave."
                                              : "A Bearer access token for this enclave is required.");
  response.headers.emplace_back("WWW-Authenticate",
                                had_token ? R"(Bearer realm="enclave", error="invalid_token")" : R"(Bearer realm="enclave")");
  return response;
}

// Checks the Bearer token; returns the denial to send, or nullopt when the request may go on.
std::optional<Response> deny(const ApiContext& context, const Request& request) {
  const auto header = request.headers[http::beast_http::field::authorization];
  const TokenPolicy policy{context.config.issuer, context.config.enclave_id, context.config.owner};
  const auto keys = context.jwks->keys();
  auto claims = check_bearer(std::string_view(header.data(), header.size()), *keys, policy, context.now());
  if (claims) return std::nullopt;

  logging::info("request_unauthorized", {{"path", request.path}, {"client", request.client_address},
                                         {"reason", to_string(claims.error().code)}, {"detail", claims.error().detail}});
  return unauthorized(claims.error());
}

Response store_failure(const Error<StoreError>& error, std::string_view name) {
  switch (error.code) {
    case StoreError::invalid_name:
      return http::problem(400, problem_type::invalid_name, "Invalid Secret Name",
                           "A secret name is 1 to 128 characters of [A-Za-z0-9._-], other than \".\" and \"..\".");
    case StoreError::too_large:
      return http::problem(413, http::problem_type::body_too_large, "Content Too Large",
                           "A secret holds at most " + std::to_string(SecretStore::max_value_bytes) + " bytes.");
    case StoreError::not_found:
      return http::problem(404, problem_type::secret_not_found, "Secret Not Found", "No secret has this name.");
    case StoreError::limit_reached:
      return http::problem(507, problem_type::secret_limit, "Secret Limit Reached",
                           "The enclave stores at most " + std::to_string(SecretStore::max_secrets) + " secrets. Delete one first.");
    case StoreError::io:
      break;
  }
  logging::error("secret_store_failed", {{"secret", name}, {"error", error.detail}});
  return http::problem(500, http::problem_type::internal, "Internal Server Error", "The server failed to process the request.");
}

std::string_view secret_name(const Request& request) { return request.path_params.at("name"); }

Response put_secret(const ApiContext& context, Request& request) {
  const auto name = secret_name(request);
  const std::span<const std::uint8_t> value(reinterpret_cast<const std::uint8_t*>(request.body.data()), request.body.size());
  auto stored = context.store->put(name, value);
  wipe_string(request.body);
  if (!stored) return store_failure(stored.error(), name);

  logging::info("secret_stored", {{"secret", name}, {"created", *stored}});
  if (!*stored) return no_content();
  Response response;
  response.status = 201;
  response.headers.emplace_back("Location", "/v1/secrets/" + std::string(name));
  return response;
}

Response get_secret(const ApiContext& context, const Request& request) {
  const auto name = secret_name(request);
  auto value = context.store->get(name);
  if (!value) return store_failure(value.error(), name);

  Response response;
  response.content_type = "application/octet-stream";
  response.body.assign(value->text());
  return response;
}

Response delete_secret(const ApiContext& context, const Request& request) {
  const auto name = secret_name(request);
  auto removed = context.store->remove(name);
  if (!removed) return store_failure(removed.error(), name);

  logging::info("secret_deleted", {{"secret", name}});
  return no_content();
}

// The original prototype's call. NOTE: the username in the body is not compared with the
// token, because tokens name the owner by user id; the token alone grants access.
Response prototype_enclave(const ApiContext& context, const Request& request) {
  auto body = json::parse_strict(request.body, max_json_depth);
  if (!body || !body->is_object()) {
    return http::problem(400, problem_type::invalid_json, "Invalid JSON", "The body must be a JSON object with a \"username\" string.");
  }
  const auto username = body->find("username");
  if (username == body->end() || !username->is_string() || username->get_ref<const std::string&>().empty()) {
    return http::problem(400, problem_type::invalid_json, "Invalid JSON", "The body must be a JSON object with a \"username\" string.");
  }

  return json_response(200, {{"success", true},
                             {"message", "Access to the enclave is granted."},
                             {"enclave_id", context.config.enclave_id},
                             {"owner", context.config.owner}});
}

// Wraps a synchronous handler in the token check.
template <typename Function>
http::Handler authenticated(std::shared_ptr<const ApiContext> context, Function function) {
  return [context = std::move(context), function](Request& request) -> net::awaitable<Response> {
    if (auto denial = deny(*context, request)) co_return std::move(*denial);
    co_return function(*context, request);
  };
}

}  // namespace

std::shared_ptr<http::Router> make_router(std::shared_ptr<const ApiContext> context) {
  auto router = std::make_shared<http::Router>();

  router->add(Verb::get, "/healthz", [](Request&) -> net::awaitable<Response> { co_return json_response(200, {{"status", "ok"}}); });
  router->add(Verb::get, "/v1/whoami", authenticated(context, [](const ApiContext& api, const Request&) {
                return json_response(200, {{"enclave_id", api.config.enclave_id}, {"owner", api.config.owner}});
              }));
  router->add(Verb::put, "/v1/secrets/{name}", authenticated(context, [](const ApiContext& api, Request& request) {
                return put_secret(api, request);
              }));
  router->add(Verb::get, "/v1/secrets/{name}", authenticated(context, [](const ApiContext& api, const Request& request) {
                return get_secret(api, request);
              }));
  router->add(Verb::delete_, "/v1/secrets/{name}", authenticated(context, [](const ApiContext& api, const Request& request) {
                return delete_secret(api, request);
              }));
  router->add(Verb::post, "/enclave", authenticated(context, [](const ApiContext& api, const Request& request) {
                return prototype_enclave(api, request);
              }));
  return router;
}

}  // namespace licensing::enclave
