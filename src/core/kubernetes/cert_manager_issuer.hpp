// The cert-manager issuer: signs an enclave's CSR through a cert-manager.io/v1
// CertificateRequest in the enclaves namespace, referring to a CA Issuer. Only the CSR
// travels; the enclave's private key stays in its Pod.
//
// cert-manager's CA issuer copies the names from the CSR into the certificate, unlike the
// built-in CA, which sets them itself. So this issuer first checks that the CSR requests
// no names other than those the core chose.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "core/enclave_issuer.hpp"
#include "core/kubernetes/client.hpp"

namespace licensing::core::kubernetes {

struct CertManagerIssuerConfig {
  std::string namespace_name = "licensing-enclaves";
  std::string issuer_name = "licensing-ca";  // an Issuer (kind Issuer) in that namespace
  std::chrono::milliseconds timeout{std::chrono::seconds(60)};
};

// Checks that the CSR names only what `request` allows. Its subject may be one CN, which
// must be one of the DNS names or IP addresses. Its subjectAltName entries must be DNS
// names or IP addresses of the request, and must include every DNS name of the request.
Result<void, IssuerError> check_csr_names(const EnclaveCertificateRequest& request);

class CertManagerIssuer final : public EnclaveIssuer {
 public:
  CertManagerIssuer(std::shared_ptr<Client> client, CertManagerIssuerConfig config);

  // Creates a CertificateRequest with the usages digital signature, key encipherment and
  // server auth, and the request's lifetime as its duration. Waits until it is Ready or
  // failed or the timeout passes, and deletes it in every case. Returns status.certificate,
  // then status.ca, as the chain. Denied, InvalidRequest and Ready=False with reason
  // Failed are IssuerError::denied with cert-manager's message.
  Result<crypto::IssuedCertificate, IssuerError> issue(const EnclaveCertificateRequest& request) override;
  // The name check of issue(), without a CertificateRequest.
  Result<void, IssuerError> check(const EnclaveCertificateRequest& request) override { return check_csr_names(request); }

 private:
  std::string collection_path() const;
  void delete_request(const std::string& name);

  std::shared_ptr<Client> client_;
  CertManagerIssuerConfig config_;
};

}  // namespace licensing::core::kubernetes
