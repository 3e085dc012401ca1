// The gateway's client for licensing-core. Calls are synchronous with a deadline; a core
// that cannot be reached yields CoreError::unavailable, which the gateway turns into a 503 response.
#pragma once

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "common/error.hpp"
#include "licensing.grpc.pb.h"

namespace licensing::gateway {

enum class CoreError {
  unavailable,         // not reachable, or the deadline passed
  rejected,            // the core refused the arguments (INVALID_ARGUMENT)
  failed,              // any other failure inside the core
  not_found,           // NOT_FOUND: unknown, or another owner's
  precondition,        // FAILED_PRECONDITION: quota reached, not ready, already deleted
  unauthenticated,     // UNAUTHENTICATED: a bad bootstrap or renewal credential
  exhausted,           // RESOURCE_EXHAUSTED: no free port or other capacity
};

struct CoreConnection {
  std::string target;  // "unix:/absolute/path" or "host:port"
  // For a TCP target: mutual TLS with these PEM files.
  std::string tls_ca_file;
  std::string tls_certificate_file;
  std::string tls_key_file;
  std::chrono::milliseconds deadline{5000};
};

struct AccessToken {
  std::string token;
  std::int64_t expires_in = 0;
};

struct VerifiedToken {
  std::string subject;
  std::string session_id;
  std::string token_id;
  std::int64_t expires_at = 0;
};

// Outcome of a verification: the claims, or the core's TokenError name.
struct TokenVerdict {
  bool valid = false;
  std::string error;
  VerifiedToken token;
};

class CoreClient {
 public:
  explicit CoreClient(const CoreConnection& connection);

  Result<AccessToken, CoreError> mint_access_token(const std::string& subject, const std::string& session_id);
  Result<TokenVerdict, CoreError> verify_access_token(const std::string& token);
  Result<std::string, CoreError> jwks_json();
  Result<licensing::v1::IssueServerCertificateResponse, CoreError> issue_server_certificate(
      const std::string& csr_pem, const std::vector<std::string>& dns_names,
      const std::vector<std::string>& ip_addresses, std::chrono::seconds lifetime);
  Result<std::string, CoreError> ca_root_pem();

  Result<licensing::v1::Enclave, CoreError> provision_enclave(const std::string& owner_id,
                                                              const std::string& idempotency_key);
  Result<licensing::v1::Enclave, CoreError> get_enclave(const std::string& owner_id, const std::string& enclave_id);
  Result<std::vector<licensing::v1::Enclave>, CoreError> list_enclaves(const std::string& owner_id);
  Result<licensing::v1::Enclave, CoreError> delete_enclave(const std::string& owner_id, const std::string& enclave_id);
  Result<AccessToken, CoreError> mint_enclave_token(const std::string& owner_id, const std::string& enclave_id,
                                                    const std::string& session_id);
  Result<licensing::v1::SignEnclaveCsrResponse, CoreError> sign_enclave_csr(const std::string& enclave_id,
                                                                            const std::string& credential,
                                                                            const std::string& csr_pem,
                                                                            const std::string& credential_kind);
  Result<licensing::v1::IssueClientCertificateResponse, CoreError> issue_client_certificate(
      const std::string& owner_id, const std::string& csr_pem);
  // The attestation document as JSON text. A TPM failure is `unavailable` with the reason
  // (tpm_unreachable, tpm_lockout, pcr_mismatch, tpm_failed) first in the detail.
  Result<std::string, CoreError> get_attestation(const std::string& owner_id, const std::string& enclave_id,
                                                 const std::string& nonce);
  Result<licensing::v1::AttestationKey, CoreError> attestation_key();

 private:
  std::unique_ptr<grpc::ClientContext> context() const;
  // Provisioning waits for the instance to start, so it gets a longer deadline.
  std::unique_ptr<grpc::ClientContext> long_context() const;

  std::chrono::milliseconds deadline_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<licensing::v1::TokenService::Stub> tokens_;
  std::unique_ptr<licensing::v1::CertificateService::Stub> certificates_;
  std::unique_ptr<licensing::v1::EnclaveService::Stub> enclaves_;
  std::unique_ptr<licensing::v1::AttestationService::Stub> attestation_;
};

}  // namespace licensing::gateway
