// Bearer-token authentication for gateway endpoints: the core verifies the token, and
// the store confirms that the session it names is live.
#pragma once

#include <expected>

#include "gateway/core_client.hpp"
#include "gateway/metrics.hpp"
#include "http/server.hpp"
#include "store/store.hpp"

namespace licensing::gateway {

class Authenticator {
 public:
  Authenticator(CoreClient& core, store::Store& store, Metrics& metrics);

  // The verified token, or the response to send: 401 for a missing, malformed, invalid
  // or revoked token (also for more than one Authorization header), 503 when the core
  // or the database is unavailable.
  std::expected<VerifiedToken, http::Response> authenticate(const http::Request& request);

 private:
  void count(const std::string& outcome);

  CoreClient& core_;
  store::Store& store_;
  Metrics& metrics_;
};

}  // namespace licensing::gateway
