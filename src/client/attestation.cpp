#include "client/attestation.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <fmt/core.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <unistd.h>

#include <algorithm>
#include <regex>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "crypto/openssl.hpp"
#include "tpm/quote_verifier.hpp"

namespace licensing::client {
namespace {

namespace fs = std::filesystem;
namespace ossl = crypto::ossl;

// The name every enclave certificate carries besides its address.
std::string enclave_dns_name(std::string_view enclave_id) {
  return std::string(enclave_id) + ".enclaves.licensing.internal";
}

std::vector<std::string> split_pem(std::string_view bundle) {
  constexpr std::string_view end_marker = "-----END CERTIFICATE-----";
  std::vector<std::string> certificates;
  std::size_t position = 0;
  for (;;) {
    const auto begin = bundle.find("-----BEGIN CERTIFICATE-----", position);
    if (begin == std::string_view::npos) break;
    const auto end = bundle.find(end_marker, begin);
    if (end == std::string_view::npos) break;
    certificates.emplace_back(bundle.substr(begin, end + end_marker.size() - begin));
    position = end + end_marker.size();
  }
  return certificates;
}

std::optional<std::string> read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

AttestationCheck passed(std::string name, std::string detail) { return {std::move(name), true, std::move(detail)}; }
AttestationCheck failed(std::string name, std::string detail) { return {std::move(name), false, std::move(detail)}; }

// The subjectAltName entries of `certificate`: DNS names, and IP addresses as text.
std::pair<std::vector<std::string>, std::vector<std::string>> subject_alt_names(X509* certificate) {
  std::vector<std::string> dns_names;
  std::vector<std::string> ip_addresses;
  ossl::GeneralNames names(
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(certificate, NID_subject_alt_name, nullptr, nullptr)));
  if (!names) return {};
  for (int index = 0; index < sk_GENERAL_NAME_num(names.get()); ++index) {
    const GENERAL_NAME* name = sk_GENERAL_NAME_value(names.get(), index);
    if (name->type == GEN_DNS) {
      const auto* text = ASN1_STRING_get0_data(name->d.dNSName);
      dns_names.emplace_back(reinterpret_cast<const char*>(text), static_cast<std::size_t>(ASN1_STRING_length(name->d.dNSName)));
    } else if (name->type == GEN_IPADD) {
      const int length = ASN1_STRING_length(name->d.iPAddress);
      const auto* bytes = ASN1_STRING_get0_data(name->d.iPAddress);
      char text[INET6_ADDRSTRLEN] = {};
      if (length == 4 && inet_ntop(AF_INET, bytes, text, sizeof(text)) != nullptr) ip_addresses.emplace_back(text);
      if (length == 16 && inet_ntop(AF_INET6, bytes, text, sizeof(text)) != nullptr) ip_addresses.emplace_back(text);
    }
  }
  return {dns_names, ip_addresses};
}

std::string lowercase(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return text;
}

}  // namespace

Result<TrustStore, std::string> TrustStore::load(const fs::path& file) {
  TrustStore store;
  if (!fs::exists(file)) return store;
  const auto text = read_text(file);
  if (!text) return fail(std::string(), "cannot read the trust store " + file.string());
  const auto json = nlohmann::json::parse(*text, nullptr, false);
  if (!json.is_object()) return fail(std::string(), "the trust store " + file.string() + " is not a JSON object");
  try {
    store.attestation_keys = json.value("attestation_keys", std::vector<std::string>{});
    store.ca_bundles = json.value("ca_bundles", std::vector<std::string>{});
    store.allowed_image_sha256 = json.value("allowed_image_sha256", std::vector<std::string>{});
    if (json.contains("boot_pcrs")) {
      const nlohmann::json& pcrs = json.at("boot_pcrs");
      if (!pcrs.is_object()) throw std::invalid_argument("boot_pcrs is not an object");
      static const std::regex index_form("[0-9]{1,2}");
      static const std::regex value_form("[0-9a-f]{64}");
      for (auto item = pcrs.begin(); item != pcrs.end(); ++item) {
        const std::string value = item.value().get<std::string>();
        if (!std::regex_match(item.key(), index_form) || std::stoul(item.key()) > 23 || !std::regex_match(value, value_form)) {
          throw std::invalid_argument("boot_pcrs maps a PCR index (0 to 23) to 64 lowercase hex digits");
        }
        store.boot_pcrs[static_cast<std::uint32_t>(std::stoul(item.key()))] = value;
      }
    }
  } catch (const std::exception& error) {
    return fail(std::string(), "the trust store " + file.string() + " has an invalid member: " + error.what());
  }
  return store;
}

Result<void, std::string> TrustStore::save(const fs::path& file) const {
  nlohmann::json pcrs = nlohmann::json::object();
  for (const auto& [index, value] : boot_pcrs) pcrs[std::to_string(index)] = value;
  const nlohmann::json json = {{"attestation_keys", attestation_keys},
                               {"ca_bundles", ca_bundles},
                               {"allowed_image_sha256", allowed_image_sha256},
                               {"boot_pcrs", pcrs}};
  std::error_code error;
  const auto directory = file.parent_path().empty() ? fs::path(".") : file.parent_path();
  if (!fs::exists(directory)) {
    fs::create_directories(directory, error);
    fs::permissions(directory, fs::perms::owner_all, fs::perm_options::replace, error);
  }
  auto written = ossl::write_file_atomically(file, json.dump(2) + "\n", 0600);
  if (!written) return fail(std::string(), written.error().detail);
  return {};
}

fs::path default_trust_store_file() {
  if (const char* config = std::getenv("XDG_CONFIG_HOME"); config != nullptr && *config != '\0') {
    return fs::path(config) / "licensectl" / "trust.json";
  }
  if (const char* home = std::getenv("HOME"); home != nullptr && *home != '\0') {
    return fs::path(home) / ".config" / "licensectl" / "trust.json";
  }
  throw std::runtime_error("set HOME or pass --trust-store FILE");
}

std::string AttestationReport::failed_check() const {
  for (const auto& check : checks) {
    if (!check.passed) return check.name;
  }
  return {};
}

std::vector<AttestationCheck> check_enclave_certificate(const std::vector<std::string>& chain_pem,
                                                        const EnclaveExpectation& expected,
                                                        const std::vector<std::string>& ca_bundle_files) {
  std::vector<AttestationCheck> checks;
  if (chain_pem.empty()) {
    checks.push_back(failed("certificate_malformed", "the certificate chain is empty"));
    return checks;
  }
  auto leaf = ossl::certificate_from_pem(chain_pem.front());
  if (!leaf) {
    checks.push_back(failed("certificate_malformed", "the leaf certificate does not parse"));
    return checks;
  }

  // The chain: the trusted roots come only from the trust store's CA bundles; the
  // document's other certificates serve as untrusted intermediates.
  ossl::X509Store roots(X509_STORE_new());
  std::size_t root_count = 0;
  for (const auto& file : ca_bundle_files) {
    const auto bundle = read_text(file);
    if (!bundle) {
      checks.push_back(failed("certificate_untrusted", "cannot read the CA bundle " + file));
      return checks;
    }
    for (const auto& pem : split_pem(*bundle)) {
      auto root = ossl::certificate_from_pem(pem);
      if (root && X509_STORE_add_cert(roots.get(), root->get()) == 1) ++root_count;
    }
  }
  if (root_count == 0) {
    checks.push_back(failed("certificate_untrusted", "the trust store has no CA certificate (licensectl trust add ca FILE)"));
    return checks;
  }
  ossl::X509Stack intermediates(sk_X509_new_null());
  for (std::size_t index = 1; index < chain_pem.size(); ++index) {
    auto certificate = ossl::certificate_from_pem(chain_pem[index]);
    if (!certificate) {
      checks.push_back(failed("certificate_malformed", "certificate " + std::to_string(index) + " of the chain does not parse"));
      return checks;
    }
    if (sk_X509_push(intermediates.get(), certificate->get()) > 0) certificate->release();
  }
  ossl::X509StoreContext context(X509_STORE_CTX_new());
  X509_STORE_CTX_init(context.get(), roots.get(), leaf->get(), intermediates.get());
  // No purpose is set here: the usage checks below name their own failures.
  X509_VERIFY_PARAM_set_time(X509_STORE_CTX_get0_param(context.get()), std::chrono::system_clock::to_time_t(expected.now));
  const bool chain_ok = X509_verify_cert(context.get()) == 1;
  const int chain_error = X509_STORE_CTX_get_error(context.get());

  // Validity is checked and named on its own, before the chain's verdict, so an expired
  // certificate is reported as expired rather than as untrusted.
  const time_t now = std::chrono::system_clock::to_time_t(expected.now);
  if (X509_cmp_time(X509_get0_notBefore(leaf->get()), const_cast<time_t*>(&now)) > 0) {
    checks.push_back(failed("certificate_not_yet_valid", "the certificate's notBefore is in the future"));
    return checks;
  }
  if (X509_cmp_time(X509_get0_notAfter(leaf->get()), const_cast<time_t*>(&now)) < 0) {
    checks.push_back(failed("certificate_expired", "the certificate's notAfter has passed"));
    return checks;
  }
  checks.push_back(passed("certificate_validity", "within notBefore and notAfter"));

  if (!chain_ok) {
    checks.push_back(failed("certificate_untrusted", std::string("the chain does not verify against the trusted CAs: ") +
                                                         X509_verify_cert_error_string(chain_error)));
    return checks;
  }
  checks.push_back(passed("certificate_chain", "chains to a trusted CA"));

  // basicConstraints: an enclave's certificate is never a CA.
  if (X509_check_ca(leaf->get()) != 0) {
    checks.push_back(failed("certificate_is_ca", "the certificate may act as a CA (basicConstraints CA:TRUE or keyCertSign)"));
    return checks;
  }
  checks.push_back(passed("certificate_not_ca", "CA:FALSE"));

  // extendedKeyUsage must be present and include serverAuth.
  const bool has_eku = (X509_get_extension_flags(leaf->get()) & EXFLAG_XKUSAGE) != 0;
  if (!has_eku || (X509_get_extended_key_usage(leaf->get()) & XKU_SSL_SERVER) == 0) {
    checks.push_back(failed("certificate_eku_missing", "the certificate has no extendedKeyUsage serverAuth"));
    return checks;
  }
  checks.push_back(passed("certificate_eku", "serverAuth"));

  // The names: the enclave's own DNS name binds the certificate to this enclave id, and
  // the endpoint's host must be named for the connection to be this enclave's.
  const auto [dns_names, ip_addresses] = subject_alt_names(leaf->get());
  const std::string own_name = enclave_dns_name(expected.enclave_id);
  const bool names_enclave = std::find(dns_names.begin(), dns_names.end(), own_name) != dns_names.end();
  const std::string host = lowercase(expected.host);
  const bool names_host = std::find(ip_addresses.begin(), ip_addresses.end(), host) != ip_addresses.end() ||
                          std::any_of(dns_names.begin(), dns_names.end(),
                                      [&host](const std::string& name) { return lowercase(name) == host; });
  if (!names_enclave || !names_host) {
    checks.push_back(failed("certificate_name_mismatch",
                            fmt::format("the subjectAltName must contain {} and {}", own_name, expected.host)));
    return checks;
  }
  checks.push_back(passed("certificate_names", own_name + " and " + expected.host));
  return checks;
}

AttestationReport verify_enclave_attestation(const nlohmann::json& evidence, const EnclaveExpectation& expected,
                                             const TrustStore& trust) {
  AttestationReport report;
  auto& checks = report.checks;
  if (trust.attestation_keys.empty()) {
    checks.push_back(failed("ak_untrusted", "no attestation key is pinned (licensectl trust add ak FINGERPRINT)"));
    return report;
  }

  std::vector<std::string> chain;
  if (evidence.is_object() && evidence.contains("certificate_chain_pem") && evidence["certificate_chain_pem"].is_array()) {
    for (const auto& item : evidence["certificate_chain_pem"]) {
      if (item.is_string()) chain.push_back(item.get<std::string>());
    }
  }
  if (chain.empty()) {
    checks.push_back(failed("evidence_malformed", "the document has no certificate_chain_pem"));
    return report;
  }
  auto leaf = ossl::certificate_from_pem(chain.front());
  if (!leaf) {
    checks.push_back(failed("certificate_malformed", "the leaf certificate does not parse"));
    return report;
  }
  auto der = ossl::certificate_to_der(leaf->get());
  if (!der) {
    checks.push_back(failed("certificate_malformed", "the leaf certificate does not encode"));
    return report;
  }

  tpm::QuotePolicy policy;
  policy.trusted_ak_fingerprints = trust.attestation_keys;
  policy.boot_pcrs = trust.boot_pcrs;
  policy.allowed_image_sha256 = trust.allowed_image_sha256;
  tpm::VerificationRequest request{expected.enclave_id, expected.nonce, *der};
  auto verified = tpm::verify_attestation(evidence, request, policy);
  if (!verified) {
    checks.push_back(failed(std::string(tpm::to_string(verified.error().code)), verified.error().detail));
    return report;
  }
  report.ak_fingerprint = verified->ak_fingerprint;
  checks.push_back(passed("ak_trusted", "attestation key " + verified->ak_fingerprint + " is pinned"));
  checks.push_back(passed("quote_signature", "the AK signed TPMS_ATTEST (magic, type, signer, scheme checked)"));
  checks.push_back(passed("quote_nonce", "extraData binds this request's nonce and this certificate"));
  checks.push_back(passed("pcr_digest", "the PCR values match the quoted digest"));
  checks.push_back(passed("event_log", fmt::format("the log replays to PCR {}; event {} measures this certificate",
                                                   policy.event_pcr, verified->event.seq)));
  if (!trust.allowed_image_sha256.empty()) {
    checks.push_back(passed("image_allowed", "image " + verified->event.image_sha256 + " is allowed"));
  }

  for (auto& check : check_enclave_certificate(chain, expected, trust.ca_bundles)) {
    const bool ok = check.passed;
    checks.push_back(std::move(check));
    if (!ok) return report;
  }
  report.certificate_der = std::move(*der);
  report.verified = true;
  return report;
}

Result<HttpResponse, HttpError> send_attested(const HttpRequest& request, const AttestationReport& report,
                                              HttpOptions options) {
  if (!report.verified || report.certificate_der.empty()) {
    return fail(HttpError::certificate_mismatch, "the enclave is not attested; nothing was sent");
  }
  options.pinned_certificate_der = report.certificate_der;
  return send(request, options);
}

}  // namespace licensing::client
