// The client side of attestation: a trust store, the verification of an attestation
// document (the TPM quote and the enclave certificate), and a connection that accepts
// only the attested certificate.
//
// The quote checks are those of tpm::verify_attestation. The certificate checks are made
// here, because OpenSSL's default verification accepts some certificates an enclave must
// not present: one whose names do not include the enclave, one without the serverAuth
// extended key usage, and a CA certificate.
#pragma once

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "client/https_client.hpp"
#include "common/error.hpp"

namespace licensing::client {

// The client's trust anchors and policy, kept in a JSON file that licensectl trust edits:
//   {"attestation_keys": ["sha256:..."], "ca_bundles": ["/path/ca.pem"],
//    "allowed_image_sha256": ["<hex>"], "boot_pcrs": {"0": "<hex>"}}
struct TrustStore {
  std::vector<std::string> attestation_keys;  // pinned AK fingerprints
  std::vector<std::string> ca_bundles;        // PEM files that enclave certificates must chain to
  std::vector<std::string> allowed_image_sha256;  // empty: any image
  std::map<std::uint32_t, std::string> boot_pcrs;  // SHA-256 bank, index to lowercase hex

  // A missing file is an empty store; a file that does not parse is an error.
  static Result<TrustStore, std::string> load(const std::filesystem::path& file);
  Result<void, std::string> save(const std::filesystem::path& file) const;
};

// ~/.config/licensectl/trust.json (or under XDG_CONFIG_HOME).
std::filesystem::path default_trust_store_file();

// One named check and its outcome.
struct AttestationCheck {
  std::string name;
  bool passed = false;
  std::string detail;
};

struct AttestationReport {
  std::vector<AttestationCheck> checks;  // in order; verification stops at the first failure
  bool verified = false;
  std::vector<std::uint8_t> certificate_der;  // the attested leaf, to pin the connection to
  std::string ak_fingerprint;

  // The name of the failed check, or empty.
  std::string failed_check() const;
};

struct EnclaveExpectation {
  std::string enclave_id;
  std::string host;  // the endpoint's host name or IP address, which the certificate must name
  std::vector<std::uint8_t> nonce;
  std::chrono::system_clock::time_point now = std::chrono::system_clock::now();
};

// Verifies `evidence` (the attestation document of GET /v1/enclaves/{id}/attestation).
AttestationReport verify_enclave_attestation(const nlohmann::json& evidence, const EnclaveExpectation& expected,
                                             const TrustStore& trust);

// The certificate checks alone, on a chain of PEM certificates (leaf first); exposed for
// tests. Each failure is named: certificate_malformed, certificate_untrusted,
// certificate_not_yet_valid, certificate_expired, certificate_is_ca,
// certificate_eku_missing, certificate_name_mismatch.
std::vector<AttestationCheck> check_enclave_certificate(const std::vector<std::string>& chain_pem,
                                                        const EnclaveExpectation& expected,
                                                        const std::vector<std::string>& ca_bundle_files);

// Sends `request` to an attested enclave: the TLS handshake must present the attested
// leaf certificate byte for byte (HttpError::certificate_mismatch otherwise), and only
// then is the request, with its token, sent.
Result<HttpResponse, HttpError> send_attested(const HttpRequest& request, const AttestationReport& report,
                                              HttpOptions options);

}  // namespace licensing::client
