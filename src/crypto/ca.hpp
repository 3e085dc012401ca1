// The built-in certificate authority: an ECDSA P-256 root and an issuing CA below it,
// created on first start in a directory (0700; keys 0600). It signs certificates for
// CSRs whose private keys stay with the requester.
#pragma once

#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.hpp"

namespace licensing::crypto {

enum class CertificateError {
  io,
  invalid_csr,         // not a PEM CSR, a bad self-signature, or a key other than P-256 / Ed25519
  invalid_request,     // no SAN, a malformed DNS name or IP address, a lifetime out of range,
                       // or an organization name that is empty or longer than 64 bytes
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

// A TLS client certificate for a user: CA:FALSE, digitalSignature, clientAuth only, and
// one SAN, the URI urn:licensing:user:<user_id>.
struct ClientCertificateRequest {
  std::string csr_pem;
  std::string user_id;  // 1 to 64 characters of [A-Za-z0-9._-]
  std::chrono::seconds lifetime{24 * 3600};
};

// The URI SAN that names a user in client certificates.
std::string user_uri(std::string_view user_id);

struct IssuedCertificate {
  std::string certificate_pem;  // the leaf
  std::string chain_pem;        // leaf, then the issuing CA
  std::string serial_hex;
  std::chrono::system_clock::time_point not_after;
};

class CertificateAuthority {
 public:
  using TimeSource = std::function<std::chrono::system_clock::time_point()>;

  // Loads the CA from `directory`, creating the root and issuing CA when absent. Files:
  // root.key.pem and issuing.key.pem (0600, rejected when group or others have any access),
  // root.pem and issuing.pem. The loaded keys must match the certificates, and the issuing
  // certificate must be signed by the root. A directory with neither certificate is
  // (re)created; one with only one of them is an io error.
  static Result<std::unique_ptr<CertificateAuthority>, CertificateError> open(const std::filesystem::path& directory,
                                                                              std::string_view organization);
  // The same, reading the time for validity periods from `now` (tests inject a fixed time).
  static Result<std::unique_ptr<CertificateAuthority>, CertificateError> open(const std::filesystem::path& directory,
                                                                              std::string_view organization,
                                                                              TimeSource now);
  virtual ~CertificateAuthority() = default;

  // Signs a TLS server certificate: CA:FALSE, digitalSignature, serverAuth only, and the
  // SANs given here; the CSR's own subject and extensions are ignored. Checks: the CSR's
  // self-signature, a P-256 or Ed25519 key (invalid_csr); 1 to 100 names, DNS names as
  // LDH host names, IP addresses as inet_pton parses them, no duplicates, a lifetime of
  // 5 minutes to 90 days (invalid_request). The subject is CN=<first DNS name, else first
  // IP address>, or empty with a critical SAN when that name is longer than 64 bytes.
  // notBefore is 5 minutes before now. Thread-safe.
  virtual Result<IssuedCertificate, CertificateError> issue_server_certificate(const ServerCertificateRequest& request) = 0;

  // Signs a client certificate for `request.user_id` from a CSR with a P-256 key only;
  // the CSR's subject and extensions are ignored. invalid_csr for a bad CSR or another key
  // type, invalid_request for a malformed user id or a lifetime outside 5 minutes to 90
  // days. Thread-safe.
  virtual Result<IssuedCertificate, CertificateError> issue_client_certificate(const ClientCertificateRequest& request) = 0;

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
// The same, with a subjectAltName extension request naming `dns_names`, for issuers that
// take the names from the CSR (cert-manager's CA issuer does).
Result<KeyAndCsr, CertificateError> generate_key_and_csr(std::string_view common_name,
                                                         const std::vector<std::string>& dns_names);

}  // namespace licensing::crypto
