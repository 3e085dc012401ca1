// gRPC TokenService: mints and verifies access tokens with the core's signing keys.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include "crypto/token_keys.hpp"
#include "licensing.grpc.pb.h"

namespace licensing::core {

struct TokenPolicy {
  std::string issuer = "licensing-server";
  std::string gateway_audience = "licensing-gateway";
  std::chrono::seconds access_token_lifetime{15 * 60};
  std::chrono::seconds clock_skew{30};
};

using Clock = std::function<std::chrono::system_clock::time_point()>;

// Holds the current TokenKeys; `replace` swaps in a reloaded set (after a rotation)
// while requests in flight keep the set they started with.
class KeyHolder {
 public:
  explicit KeyHolder(std::shared_ptr<crypto::TokenKeys> keys) : keys_(std::move(keys)) {}
  std::shared_ptr<crypto::TokenKeys> get() const {
    std::lock_guard lock(mutex_);
    return keys_;
  }
  void replace(std::shared_ptr<crypto::TokenKeys> keys) {
    std::lock_guard lock(mutex_);
    keys_ = std::move(keys);
  }

 private:
  mutable std::mutex mutex_;
  std::shared_ptr<crypto::TokenKeys> keys_;
};

class TokenServiceImpl final : public licensing::v1::TokenService::Service {
 public:
  TokenServiceImpl(const KeyHolder& keys, TokenPolicy policy, Clock clock);

  grpc::Status MintAccessToken(grpc::ServerContext* context, const licensing::v1::MintAccessTokenRequest* request,
                               licensing::v1::MintAccessTokenResponse* response) override;
  grpc::Status VerifyAccessToken(grpc::ServerContext* context, const licensing::v1::VerifyAccessTokenRequest* request,
                                 licensing::v1::VerifyAccessTokenResponse* response) override;
  grpc::Status GetJwks(grpc::ServerContext* context, const licensing::v1::GetJwksRequest* request,
                       licensing::v1::GetJwksResponse* response) override;

 private:
  const KeyHolder& keys_;
  TokenPolicy policy_;
  Clock clock_;
};

}  // namespace licensing::core
