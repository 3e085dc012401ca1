// Enclave provisioning: EnclaveManager contains the logic (records, instances, credentials,
// certificates, tokens) and EnclaveServiceImpl maps it onto the gRPC EnclaveService.
//
// ProvisionEnclave does not wait for readiness: it returns once the instance was started
// (state "starting"), or the failed record. A monitor thread then health-checks the
// instance over TLS and moves it to "ready", or to "failed" after the ready deadline. The
// same thread restarts instances that died and stops instances without a live record.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "common/error.hpp"
#include "core/certificate_observer.hpp"
#include "core/enclave_issuer.hpp"
#include "core/provisioner.hpp"
#include "core/token_service.hpp"
#include "crypto/ca.hpp"
#include "licensing.grpc.pb.h"
#include "store/store.hpp"

namespace licensing::core {

enum class EnclaveError {
  invalid_argument,  // a malformed id, owner, key or CSR
  not_found,         // no such enclave, or another owner's
  quota_exceeded,    // the owner has the maximum number of live enclaves
  not_ready,         // the enclave is not in the state the call needs
  unauthenticated,   // a missing, unknown, used or expired credential
  no_free_port,      // every port of the range is taken
  unavailable,       // the database cannot be reached
  internal,
};

grpc::Status to_status(const Error<EnclaveError>& error);

struct EnclavePolicy {
  std::size_t quota = 1;
  store::PortRange ports;
  std::string csr_url;
  std::chrono::seconds certificate_lifetime{24 * 3600};
  std::chrono::seconds bootstrap_lifetime{600};
  std::chrono::seconds ready_deadline{30};
  std::chrono::milliseconds monitor_interval{500};
  std::chrono::seconds health_timeout{2};
  int max_restarts = 3;  // a live instance that dies more often than this is marked failed
  bool require_client_certificate = true;
  std::filesystem::path ca_root_file;  // the built-in root (PEM); health-check client keys go beside it
  // The roots the health check trusts (PEM); empty means ca_root_file.
  std::filesystem::path health_ca_bundle_file;
  // Roots appended to the instances' CA bundle (PEM), such as the root behind a
  // cert-manager Issuer, so that an instance accepts the chain that issuer returns.
  std::string extra_ca_bundle_pem;
};

class EnclaveManager {
 public:
  // Enclave certificates are signed by `authority` (the built-in issuer).
  EnclaveManager(store::Store& store, Provisioner& provisioner, crypto::CertificateAuthority& authority,
                 const KeyHolder& keys, TokenPolicy token_policy, EnclavePolicy policy, CertificateObserver& observer);
  // Enclave certificates are signed by `issuer`. `authority` still signs client
  // certificates and provides the root that instances trust.
  EnclaveManager(store::Store& store, Provisioner& provisioner, crypto::CertificateAuthority& authority,
                 EnclaveIssuer& issuer, const KeyHolder& keys, TokenPolicy token_policy, EnclavePolicy policy,
                 CertificateObserver& observer);
  ~EnclaveManager();

  // Hands every live instance the new JWKS (after a key rotation). Failures are logged.
  void publish_jwks(const std::string& jwks_json);

  // One pass of reconciliation, then the monitor thread. Call once, before serving.
  void start();
  // Stops the monitor thread. Instances keep running; the next start adopts them.
  void stop();

  Result<store::Enclave, EnclaveError> provision(const std::string& owner_id, const std::string& idempotency_key);
  Result<store::Enclave, EnclaveError> get(const std::string& owner_id, const std::string& enclave_id);
  Result<std::vector<store::Enclave>, EnclaveError> list(const std::string& owner_id);
  Result<store::Enclave, EnclaveError> remove(const std::string& owner_id, const std::string& enclave_id);
  Result<licensing::v1::MintAccessTokenResponse, EnclaveError> mint_token(const std::string& owner_id,
                                                                          const std::string& enclave_id,
                                                                          const std::string& session_id);
  Result<licensing::v1::SignEnclaveCsrResponse, EnclaveError> sign_csr(const std::string& enclave_id,
                                                                       const std::string& credential,
                                                                       const std::string& csr_pem,
                                                                       std::string_view credential_kind = {});
  Result<licensing::v1::IssueClientCertificateResponse, EnclaveError> issue_client_certificate(
      const std::string& owner_id, const std::string& csr_pem);

  // Compares records with running instances and acts on every difference once: stops
  // instances without a live record, starts or restarts live records whose instance is
  // gone, finishes deletions, and health-checks starting instances (reconciler.cpp).
  void reconcile();

 private:
  // Per-enclave memory of the monitor, lost on restart.
  struct Watch {
    std::chrono::steady_clock::time_point starting_since;
    int restarts = 0;
    std::chrono::steady_clock::time_point next_restart;
  };

  Result<store::Enclave, EnclaveError> find_owned(const std::string& owner_id, const std::string& enclave_id);
  // Starts the instance of `enclave`, with a new bootstrap credential when it has no
  // valid certificate. Returns the instance name.
  // `was_ready`: the instance passed its health check before, so it stored its certificate.
  // The names and lifetime the core chooses for an enclave's certificate.
  EnclaveCertificateRequest certificate_request(const store::Enclave& enclave, const std::string& csr_pem) const;
  Result<std::string, EnclaveError> launch(const store::Enclave& enclave, bool was_ready = false);
  Result<store::Enclave, EnclaveError> fail_enclave(const store::Enclave& enclave, const std::string& reason);
  Result<store::Enclave, EnclaveError> finish_delete(store::Enclave enclave);
  bool is_healthy(const store::Enclave& enclave);
  void reconcile_one(const store::Enclave& enclave, const std::set<std::string>& running);
  void monitor_loop();
  // Marks `id` as handled by a request, so the monitor leaves it alone; false when it is
  // busy already.
  bool claim(const std::string& id);
  void release(const std::string& id);

  store::Store& store_;
  Provisioner& provisioner_;
  crypto::CertificateAuthority& authority_;
  std::unique_ptr<EnclaveIssuer> builtin_issuer_;  // set when no issuer was passed in
  EnclaveIssuer* issuer_;
  const KeyHolder& keys_;
  TokenPolicy token_policy_;
  EnclavePolicy policy_;
  CertificateObserver& observer_;

  // Short-lived client certificates for health checks, by owner, with their expiry.
  std::optional<std::pair<std::string, std::string>> health_client_files(const std::string& owner_id);
  std::mutex health_mutex_;
  std::map<std::string, std::chrono::system_clock::time_point> health_clients_;

  std::mutex mutex_;  // guards busy_, watches_ and stopping_
  std::condition_variable wake_;
  std::set<std::string> busy_;
  std::map<std::string, Watch> watches_;
  bool stopping_ = false;
  std::mutex reconcile_mutex_;  // one reconcile pass at a time
  std::thread monitor_;
};

class EnclaveServiceImpl final : public licensing::v1::EnclaveService::Service {
 public:
  explicit EnclaveServiceImpl(EnclaveManager& manager) : manager_(manager) {}

  grpc::Status ProvisionEnclave(grpc::ServerContext*, const licensing::v1::ProvisionEnclaveRequest* request,
                                licensing::v1::Enclave* response) override;
  grpc::Status GetEnclave(grpc::ServerContext*, const licensing::v1::GetEnclaveRequest* request,
                          licensing::v1::Enclave* response) override;
  grpc::Status ListEnclaves(grpc::ServerContext*, const licensing::v1::ListEnclavesRequest* request,
                            licensing::v1::ListEnclavesResponse* response) override;
  grpc::Status DeleteEnclave(grpc::ServerContext*, const licensing::v1::DeleteEnclaveRequest* request,
                             licensing::v1::Enclave* response) override;
  grpc::Status MintEnclaveToken(grpc::ServerContext*, const licensing::v1::MintEnclaveTokenRequest* request,
                                licensing::v1::MintAccessTokenResponse* response) override;
  grpc::Status SignEnclaveCsr(grpc::ServerContext*, const licensing::v1::SignEnclaveCsrRequest* request,
                              licensing::v1::SignEnclaveCsrResponse* response) override;
  grpc::Status IssueClientCertificate(grpc::ServerContext*, const licensing::v1::IssueClientCertificateRequest* request,
                                      licensing::v1::IssueClientCertificateResponse* response) override;

 private:
  EnclaveManager& manager_;
};

// The DNS name in an enclave's certificate.
std::string enclave_dns_name(std::string_view enclave_id);

}  // namespace licensing::core
