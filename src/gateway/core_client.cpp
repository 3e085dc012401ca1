#include "gateway/core_client.hpp"

#include <fstream>
#include <sstream>
#include <stdexcept>

#include "common/logging.hpp"

namespace licensing::gateway {
namespace {

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

std::shared_ptr<grpc::ChannelCredentials> credentials(const CoreConnection& connection) {
  if (connection.target.starts_with("unix:")) return grpc::InsecureChannelCredentials();
  if (connection.tls_ca_file.empty() || connection.tls_certificate_file.empty() || connection.tls_key_file.empty()) {
    throw std::runtime_error("a TCP core address requires --core-tls-ca, --core-tls-cert and --core-tls-key");
  }
  grpc::SslCredentialsOptions tls;
  tls.pem_root_certs = read_file(connection.tls_ca_file);
  tls.pem_private_key = read_file(connection.tls_key_file);
  tls.pem_cert_chain = read_file(connection.tls_certificate_file);
  return grpc::SslCredentials(tls);
}

template <typename T>
Result<T, CoreError> failure(const grpc::Status& status, const char* call) {
  const auto code = status.error_code();
  const bool caller_caused = code == grpc::StatusCode::INVALID_ARGUMENT || code == grpc::StatusCode::NOT_FOUND ||
                             code == grpc::StatusCode::FAILED_PRECONDITION || code == grpc::StatusCode::UNAUTHENTICATED;
  (caller_caused ? logging::debug : logging::warn)("core_call_failed", {{"call", call}, {"grpc_code", static_cast<int>(status.error_code())},
                                     {"message", status.error_message()}});
  switch (status.error_code()) {
    case grpc::StatusCode::UNAVAILABLE:
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return fail(CoreError::unavailable, status.error_message());
    case grpc::StatusCode::INVALID_ARGUMENT:
      return fail(CoreError::rejected, status.error_message());
    case grpc::StatusCode::NOT_FOUND:
      return fail(CoreError::not_found, status.error_message());
    case grpc::StatusCode::FAILED_PRECONDITION:
    case grpc::StatusCode::ALREADY_EXISTS:
      return fail(CoreError::precondition, status.error_message());
    case grpc::StatusCode::UNAUTHENTICATED:
    case grpc::StatusCode::PERMISSION_DENIED:
      return fail(CoreError::unauthenticated, status.error_message());
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return fail(CoreError::exhausted, status.error_message());
    default:
      return fail(CoreError::failed, status.error_message());
  }
}

}  // namespace

CoreClient::CoreClient(const CoreConnection& connection)
    : deadline_(connection.deadline),
      channel_(grpc::CreateChannel(connection.target, credentials(connection))),
      tokens_(licensing::v1::TokenService::NewStub(channel_)),
      certificates_(licensing::v1::CertificateService::NewStub(channel_)),
      enclaves_(licensing::v1::EnclaveService::NewStub(channel_)),
      attestation_(licensing::v1::AttestationService::NewStub(channel_)) {}

std::unique_ptr<grpc::ClientContext> CoreClient::context() const {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(std::chrono::system_clock::now() + deadline_);
  return context;
}

std::unique_ptr<grpc::ClientContext> CoreClient::long_context() const {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(std::chrono::system_clock::now() + std::max(deadline_, std::chrono::milliseconds(60000)));
  return context;
}

Result<AccessToken, CoreError> CoreClient::mint_access_token(const std::string& subject, const std::string& session_id) {
  licensing::v1::MintAccessTokenRequest request;
  request.set_subject(subject);
  request.set_session_id(session_id);
  licensing::v1::MintAccessTokenResponse response;
  const auto status = tokens_->MintAccessToken(context().get(), request, &response);
  if (!status.ok()) return failure<AccessToken>(status, "MintAccessToken");
  return AccessToken{response.access_token(), response.expires_in()};
}

Result<TokenVerdict, CoreError> CoreClient::verify_access_token(const std::string& token) {
  licensing::v1::VerifyAccessTokenRequest request;
  request.set_token(token);
  licensing::v1::VerifyAccessTokenResponse response;
  const auto status = tokens_->VerifyAccessToken(context().get(), request, &response);
  if (!status.ok()) return failure<TokenVerdict>(status, "VerifyAccessToken");
  TokenVerdict verdict;
  verdict.valid = response.valid();
  verdict.error = response.error();
  verdict.token = {response.subject(), response.session_id(), response.token_id(), response.expires_at()};
  return verdict;
}

Result<std::string, CoreError> CoreClient::jwks_json() {
  licensing::v1::GetJwksResponse response;
  const auto status = tokens_->GetJwks(context().get(), licensing::v1::GetJwksRequest{}, &response);
  if (!status.ok()) return failure<std::string>(status, "GetJwks");
  return response.jwks_json();
}

Result<licensing::v1::IssueServerCertificateResponse, CoreError> CoreClient::issue_server_certificate(
    const std::string& csr_pem, const std::vector<std::string>& dns_names, const std::vector<std::string>& ip_addresses,
    std::chrono::seconds lifetime) {
  licensing::v1::IssueServerCertificateRequest request;
  request.set_csr_pem(csr_pem);
  for (const auto& name : dns_names) request.add_dns_names(name);
  for (const auto& address : ip_addresses) request.add_ip_addresses(address);
  request.set_lifetime_seconds(lifetime.count());
  licensing::v1::IssueServerCertificateResponse response;
  const auto status = certificates_->IssueServerCertificate(context().get(), request, &response);
  if (!status.ok()) return failure<licensing::v1::IssueServerCertificateResponse>(status, "IssueServerCertificate");
  return response;
}

Result<std::string, CoreError> CoreClient::ca_root_pem() {
  licensing::v1::GetCaBundleResponse response;
  const auto status = certificates_->GetCaBundle(context().get(), licensing::v1::GetCaBundleRequest{}, &response);
  if (!status.ok()) return failure<std::string>(status, "GetCaBundle");
  return response.root_pem();
}

Result<licensing::v1::Enclave, CoreError> CoreClient::provision_enclave(const std::string& owner_id,
                                                                        const std::string& idempotency_key) {
  licensing::v1::ProvisionEnclaveRequest request;
  request.set_owner_id(owner_id);
  request.set_idempotency_key(idempotency_key);
  licensing::v1::Enclave response;
  const auto status = enclaves_->ProvisionEnclave(long_context().get(), request, &response);
  if (!status.ok()) return failure<licensing::v1::Enclave>(status, "ProvisionEnclave");
  return response;
}

Result<licensing::v1::Enclave, CoreError> CoreClient::get_enclave(const std::string& owner_id,
                                                                  const std::string& enclave_id) {
  licensing::v1::GetEnclaveRequest request;
  request.set_owner_id(owner_id);
  request.set_enclave_id(enclave_id);
  licensing::v1::Enclave response;
  const auto status = enclaves_->GetEnclave(context().get(), request, &response);
  if (!status.ok()) return failure<licensing::v1::Enclave>(status, "GetEnclave");
  return response;
}

Result<std::string, CoreError> CoreClient::get_attestation(const std::string& owner_id, const std::string& enclave_id,
                                                          const std::string& nonce) {
  licensing::v1::GetAttestationRequest request;
  request.set_owner_id(owner_id);
  request.set_enclave_id(enclave_id);
  request.set_nonce(nonce);
  licensing::v1::GetAttestationResponse response;
  // A quote takes tens of milliseconds on a TPM that serves one command at a time.
  const auto status = attestation_->GetAttestation(long_context().get(), request, &response);
  if (!status.ok()) return failure<std::string>(status, "GetAttestation");
  return std::move(*response.mutable_evidence_json());
}

Result<licensing::v1::AttestationKey, CoreError> CoreClient::attestation_key() {
  licensing::v1::AttestationKey response;
  const auto status = attestation_->GetAttestationKey(context().get(), {}, &response);
  if (!status.ok()) return failure<licensing::v1::AttestationKey>(status, "GetAttestationKey");
  return response;
}

Result<std::vector<licensing::v1::Enclave>, CoreError> CoreClient::list_enclaves(const std::string& owner_id) {
  licensing::v1::ListEnclavesRequest request;
  request.set_owner_id(owner_id);
  licensing::v1::ListEnclavesResponse response;
  const auto status = enclaves_->ListEnclaves(context().get(), request, &response);
  if (!status.ok()) return failure<std::vector<licensing::v1::Enclave>>(status, "ListEnclaves");
  return std::vector<licensing::v1::Enclave>(response.enclaves().begin(), response.enclaves().end());
}

Result<licensing::v1::Enclave, CoreError> CoreClient::delete_enclave(const std::string& owner_id,
                                                                     const std::string& enclave_id) {
  licensing::v1::DeleteEnclaveRequest request;
  request.set_owner_id(owner_id);
  request.set_enclave_id(enclave_id);
  licensing::v1::Enclave response;
  const auto status = enclaves_->DeleteEnclave(long_context().get(), request, &response);
  if (!status.ok()) return failure<licensing::v1::Enclave>(status, "DeleteEnclave");
  return response;
}

Result<AccessToken, CoreError> CoreClient::mint_enclave_token(const std::string& owner_id, const std::string& enclave_id,
                                                              const std::string& session_id) {
  licensing::v1::MintEnclaveTokenRequest request;
  request.set_owner_id(owner_id);
  request.set_enclave_id(enclave_id);
  request.set_session_id(session_id);
  licensing::v1::MintAccessTokenResponse response;
  const auto status = enclaves_->MintEnclaveToken(context().get(), request, &response);
  if (!status.ok()) return failure<AccessToken>(status, "MintEnclaveToken");
  return AccessToken{response.access_token(), response.expires_in()};
}

Result<licensing::v1::SignEnclaveCsrResponse, CoreError> CoreClient::sign_enclave_csr(const std::string& enclave_id,
                                                                                      const std::string& credential,
                                                                                      const std::string& csr_pem,
                                                                                      const std::string& credential_kind) {
  licensing::v1::SignEnclaveCsrRequest request;
  request.set_credential_kind(credential_kind);
  request.set_enclave_id(enclave_id);
  request.set_credential(credential);
  request.set_csr_pem(csr_pem);
  licensing::v1::SignEnclaveCsrResponse response;
  // cert-manager may take up to its timeout to sign, so this call gets the long deadline.
  const auto status = enclaves_->SignEnclaveCsr(long_context().get(), request, &response);
  if (!status.ok()) return failure<licensing::v1::SignEnclaveCsrResponse>(status, "SignEnclaveCsr");
  return response;
}

Result<licensing::v1::IssueClientCertificateResponse, CoreError> CoreClient::issue_client_certificate(
    const std::string& owner_id, const std::string& csr_pem) {
  licensing::v1::IssueClientCertificateRequest request;
  request.set_owner_id(owner_id);
  request.set_csr_pem(csr_pem);
  licensing::v1::IssueClientCertificateResponse response;
  const auto status = enclaves_->IssueClientCertificate(context().get(), request, &response);
  if (!status.ok()) return failure<licensing::v1::IssueClientCertificateResponse>(status, "IssueClientCertificate");
  return response;
}

}  // namespace licensing::gateway
