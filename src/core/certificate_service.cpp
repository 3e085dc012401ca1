#include "core/certificate_service.hpp"

#include "common/logging.hpp"

namespace licensing::core {

grpc::Status CertificateServiceImpl::IssueServerCertificate(grpc::ServerContext*,
                                                            const licensing::v1::IssueServerCertificateRequest* request,
                                                            licensing::v1::IssueServerCertificateResponse* response) {
  constexpr std::size_t kMaxCsrBytes = 16 * 1024;
  constexpr int kMaxNames = 16;
  if (request->csr_pem().size() > kMaxCsrBytes) {
    return {grpc::StatusCode::INVALID_ARGUMENT, "csr_pem is longer than 16 KiB"};
  }
  if (request->dns_names_size() + request->ip_addresses_size() > kMaxNames) {
    return {grpc::StatusCode::INVALID_ARGUMENT, "more than 16 subject alternative names"};
  }

  crypto::ServerCertificateRequest certificate_request;
  certificate_request.csr_pem = request->csr_pem();
  certificate_request.dns_names.assign(request->dns_names().begin(), request->dns_names().end());
  certificate_request.ip_addresses.assign(request->ip_addresses().begin(), request->ip_addresses().end());
  if (request->lifetime_seconds() > 0) certificate_request.lifetime = std::chrono::seconds(request->lifetime_seconds());

  auto issued = authority_.issue_server_certificate(certificate_request);
  if (!issued) {
    logging::warn("certificate_rejected", {{"error", crypto::to_string(issued.error().code)}, {"detail", issued.error().detail}});
    const auto code = issued.error().code == crypto::CertificateError::invalid_csr ||
                              issued.error().code == crypto::CertificateError::invalid_request
                          ? grpc::StatusCode::INVALID_ARGUMENT
                          : grpc::StatusCode::INTERNAL;
    return {code, std::string(crypto::to_string(issued.error().code)) + ": " + issued.error().detail};
  }

  response->set_certificate_pem(issued->certificate_pem);
  response->set_chain_pem(issued->chain_pem);
  return grpc::Status::OK;
}

grpc::Status CertificateServiceImpl::GetCaBundle(grpc::ServerContext*, const licensing::v1::GetCaBundleRequest*,
                                                 licensing::v1::GetCaBundleResponse* response) {
  response->set_root_pem(authority_.root_pem());
  return grpc::Status::OK;
}

}  // namespace licensing::core
