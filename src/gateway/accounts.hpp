// The account endpoints of the REST API: signup, login, refresh, logout, the current
// user, the JWKS, and the original prototype's POST /signup.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "crypto/password.hpp"
#include "gateway/authenticator.hpp"
#include "gateway/core_client.hpp"
#include "gateway/metrics.hpp"
#include "gateway/rate_limiter.hpp"
#include "gateway/worker_pool.hpp"
#include "http/server.hpp"
#include "store/store.hpp"

namespace licensing::gateway {

struct AccountsConfig {
  crypto::PasswordPolicy password_policy;
  crypto::Argon2Params argon2;
  std::chrono::seconds refresh_token_lifetime{30 * 24 * 3600};
  std::size_t max_json_depth = 8;
  // Retry-After for 503 responses when the hashing pool is full.
  std::chrono::seconds overload_retry_after{1};
};

struct AccountsDependencies {
  store::Store& store;
  CoreClient& core;
  Authenticator& authenticator;
  WorkerPool& hashing_pool;
  RateLimiter& failures_per_user;
  RateLimiter& failures_per_address;
  // Every signup that reaches password hashing counts, successful or not.
  RateLimiter& signups_per_address;
  Metrics& metrics;
  std::function<std::chrono::system_clock::time_point()> clock;
};

class AccountsApi {
 public:
  AccountsApi(AccountsConfig config, AccountsDependencies dependencies);

  void register_routes(http::Router& router);

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace licensing::gateway
