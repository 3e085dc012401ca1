// The enclave's HTTP API (docs/enclaves.md): GET /healthz without authentication, and
// behind an access token GET /v1/whoami, PUT/GET/DELETE /v1/secrets/{name} and the
// original prototype's POST /enclave. Client certificates are checked earlier, in the TLS
// handshake (tls.hpp).
#pragma once

#include <chrono>
#include <functional>
#include <memory>

#include "enclave/access.hpp"
#include "enclave/config.hpp"
#include "enclave/secret_store.hpp"
#include "http/server.hpp"

namespace licensing::enclave {

// Problem types of the enclave API.
namespace problem_type {
inline constexpr std::string_view unauthorized = "urn:licensing:problem:unauthorized";          // 401
inline constexpr std::string_view invalid_name = "urn:licensing:problem:invalid-secret-name";    // 400
inline constexpr std::string_view invalid_json = "urn:licensing:problem:invalid-json";           // 400
inline constexpr std::string_view secret_not_found = "urn:licensing:problem:secret-not-found";   // 404
inline constexpr std::string_view secret_limit = "urn:licensing:problem:secret-limit-reached";   // 507
}  // namespace problem_type

struct ApiContext {
  Config config;
  std::shared_ptr<SecretStore> store;
  std::shared_ptr<JwksFile> jwks;
  std::function<std::chrono::system_clock::time_point()> now;
};

// Builds the routes. The router keeps `context` alive.
std::shared_ptr<http::Router> make_router(std::shared_ptr<const ApiContext> context);

// The body limit that the server must enforce: a secret of the maximum size.
constexpr std::size_t max_request_body_bytes = SecretStore::max_value_bytes;

}  // namespace licensing::enclave
