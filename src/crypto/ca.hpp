// The built-in certificate authority: an ECDSA P-256 root and an issuing CA below it,
// created on first start in a directory (0700; keys 0600). It signs certificates for
// CSRs whose private keys stay with the requester.
#pragma once

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.hpp"

namespace licensing::crypto {

enum class CertificateError {
  io,
  invalid_csr,         // not a PEM CSR, a bad self-signature, or a key other than P-256 / Ed25519
  invalid_request,     // no SAN, a malformed DNS name or IP address, a lifetime out of range
  permissions,         // a CA key file readable by group or others
  signing_failed,
};

std::string_view to_string(CertificateError code);

struct ServerCertificateRequest {
  std::string csr_pem;
  std::vector<std::string> dns_names;
  std::vector<std::string> ip_addresses;
  std::chrono::seconds lifetime{24 * 3600};
};

struct IssuedCertificate {
  std::string certificate_pem;  // the leaf
  std::string chain_pem;        // leaf, then the issuing CA
  std::string serial_hex;
};

class CertificateAuthority {
 public:
  // Loads the CA from `directory`, creating the root and issuing CA when absent.
  static Result<std::unique_ptr<CertificateAuthority>, CertificateError> open(const std::filesystem::path& directory,
                                                                              std::string_view organization);
  virtual ~CertificateAuthority() = default;

  // Signs a TLS server certificate: CA:FALSE, digitalSignature, serverAuth only, and the
  // SANs given here; the CSR's own subject and extensions are ignored.
  virtual Result<IssuedCertificate, CertificateError> issue_server_certificate(const ServerCertificateRequest& request) = 0;

  // The root certificate, PEM: what clients trust.
  virtual std::string root_pem() const = 0;
  // The issuing CA certificate, PEM.
  virtual std::string issuing_pem() const = 0;
};

// Helpers for callers that need a key and CSR of their own (the gateway, tests).
struct KeyAndCsr {
  std::string private_key_pem;  // PKCS#8
  std::string csr_pem;
};
Result<KeyAndCsr, CertificateError> generate_key_and_csr(std::string_view common_name);

}  // namespace licensing::crypto
