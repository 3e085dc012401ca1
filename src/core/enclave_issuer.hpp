// The issuer of enclave certificates: it signs an enclave's CSR for the names the core
// chose. The built-in CA is one implementation; a cert-manager CertificateRequest is the
// other (src/core/kubernetes). The core checks the CSR (PEM, P-256 key, self-signature)
// before it calls any issuer. Only the CSR reaches an issuer: the enclave's private key
// stays with the enclave.
#pragma once

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.hpp"
#include "crypto/ca.hpp"

namespace licensing::core {

enum class IssuerError {
  invalid_csr,      // the CSR is malformed, its key is not allowed, or it asks for other names
  invalid_request,  // the names or lifetime the core chose are not allowed
  denied,           // the issuer refused to sign (a denied or failed request)
  timed_out,        // no certificate arrived in time
  unavailable,      // the issuer cannot be reached
  signing_failed,   // anything else; the detail says what
};

inline std::string_view to_string(IssuerError code) {
  switch (code) {
    case IssuerError::invalid_csr: return "invalid_csr";
    case IssuerError::invalid_request: return "invalid_request";
    case IssuerError::denied: return "denied";
    case IssuerError::timed_out: return "timed_out";
    case IssuerError::unavailable: return "unavailable";
    case IssuerError::signing_failed: return "signing_failed";
  }
  return "unknown";
}

// A certificate for one enclave, with the names the core chose for it.
struct EnclaveCertificateRequest {
  std::string enclave_id;
  std::string csr_pem;
  std::vector<std::string> dns_names;
  std::vector<std::string> ip_addresses;
  std::chrono::seconds lifetime{24 * 3600};
};

class EnclaveIssuer {
 public:
  virtual ~EnclaveIssuer() = default;

  // Signs a TLS server certificate for `request`. The returned chain starts with the
  // leaf. May block until the issuer answers or its timeout passes. Thread-safe.
  virtual Result<crypto::IssuedCertificate, IssuerError> issue(const EnclaveCertificateRequest& request) = 0;
  // Checks the CSR against the request without signing, so that the core can reject it
  // before the enclave's credential is spent. The default accepts everything.
  virtual Result<void, IssuerError> check(const EnclaveCertificateRequest& request) {
    static_cast<void>(request);
    return {};
  }
};

// Signs with the built-in CA, which takes the names from the request and ignores the
// CSR's own subject and extensions.
class BuiltinIssuer final : public EnclaveIssuer {
 public:
  explicit BuiltinIssuer(crypto::CertificateAuthority& authority) : authority_(authority) {}

  Result<crypto::IssuedCertificate, IssuerError> issue(const EnclaveCertificateRequest& request) override {
    crypto::ServerCertificateRequest server_request;
    server_request.csr_pem = request.csr_pem;
    server_request.dns_names = request.dns_names;
    server_request.ip_addresses = request.ip_addresses;
    server_request.lifetime = request.lifetime;
    auto issued = authority_.issue_server_certificate(server_request);
    if (!issued) {
      const IssuerError code = issued.error().code == crypto::CertificateError::invalid_csr       ? IssuerError::invalid_csr
                               : issued.error().code == crypto::CertificateError::invalid_request ? IssuerError::invalid_request
                                                                                                  : IssuerError::signing_failed;
      return fail(code, issued.error().detail);
    }
    return std::move(*issued);
  }

 private:
  crypto::CertificateAuthority& authority_;
};

}  // namespace licensing::core
