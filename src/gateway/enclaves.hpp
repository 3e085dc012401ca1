// The enclave endpoints of the REST API: create, list, show and delete a user's enclaves,
// enclave-scoped tokens, client certificates, and the CSR endpoint that enclaves call
// with their bootstrap or renewal credential.
#pragma once

#include <nlohmann/json.hpp>

#include <memory>

#include "gateway/authenticator.hpp"
#include "gateway/core_client.hpp"
#include "gateway/metrics.hpp"
#include "http/server.hpp"

namespace licensing::gateway {

struct EnclavesDependencies {
  CoreClient& core;
  Authenticator& authenticator;
  Metrics& metrics;
};

class EnclavesApi {
 public:
  explicit EnclavesApi(EnclavesDependencies dependencies);

  void register_routes(http::Router& router);

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

// {"id", "state", "endpoint", "created_at"} and, for a failed enclave, "failure_reason".
nlohmann::json enclave_json(const licensing::v1::Enclave& enclave);

// Maps a core failure on an enclave request to the REST response.
http::Response enclave_problem(const Error<CoreError>& error);

}  // namespace licensing::gateway
