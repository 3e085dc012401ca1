#include "crypto/ca.hpp"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <array>
#include <ctime>
#include <mutex>
#include <set>
#include <utility>

#include "common/logging.hpp"
#include "crypto/openssl.hpp"

namespace licensing::crypto {
namespace {

using Clock = std::chrono::system_clock;
using namespace std::chrono_literals;

constexpr auto kRootLifetime = 10 * 365 * 24h;
constexpr auto kIssuingLifetime = 5 * 365 * 24h;
constexpr auto kBackdate = 5min;  // tolerates clients whose clocks run a little behind
constexpr auto kMinLeafLifetime = std::chrono::seconds(5min);
constexpr auto kMaxLeafLifetime = std::chrono::seconds(90 * 24h);
constexpr std::size_t kMaxCsrBytes = 16 * 1024;
constexpr std::size_t kMaxKeyFileBytes = 64 * 1024;
constexpr std::size_t kMaxCertificateFileBytes = 64 * 1024;
constexpr std::size_t kMaxSubjectAltNames = 100;
constexpr std::size_t kMaxCommonNameBytes = 64;  // ub-common-name, RFC 5280 appendix A.1

constexpr const char* kRootKeyFile = "root.key.pem";
constexpr const char* kRootCertificateFile = "root.pem";
constexpr const char* kIssuingKeyFile = "issuing.key.pem";
constexpr const char* kIssuingCertificateFile = "issuing.pem";

CertificateError certificate_error(ossl::FileError error) {
  return error == ossl::FileError::permissions ? CertificateError::permissions : CertificateError::io;
}

std::unexpected<Error<CertificateError>> fail_signing(std::string_view what) {
  return fail(CertificateError::signing_failed, std::string(what) + ": " + ossl::drain_errors());
}

// RFC 1123, section 2.1 host names: dot-separated labels of letters, digits and hyphens,
// 1 to 63 characters each, not starting or ending with a hyphen, at most 253 in total.
// The last label must not be all digits (RFC 3696, section 2), so "10.0.0.1" is not a DNS
// name. Wildcards, a trailing dot and internationalized (non-ASCII) names are rejected.
bool is_valid_dns_name(std::string_view name) {
  if (name.empty() || name.size() > 253) return false;

  std::size_t start = 0;
  bool last_label_is_numeric = false;
  while (start <= name.size()) {
    const std::size_t end = std::min(name.find('.', start), name.size());
    const std::string_view label = name.substr(start, end - start);
    if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-') return false;
    const bool is_ldh = std::all_of(label.begin(), label.end(), [](char c) {
      return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
    });
    if (!is_ldh) return false;
    last_label_is_numeric = std::all_of(label.begin(), label.end(), [](char c) { return c >= '0' && c <= '9'; });
    start = end + 1;
  }
  return !last_label_is_numeric;
}

// Parses an IPv4 or IPv6 address in the text forms inet_pton accepts (no zone id).
std::optional<std::vector<std::uint8_t>> parse_ip_address(const std::string& text) {
  std::array<std::uint8_t, 16> bytes{};
  if (::inet_pton(AF_INET, text.c_str(), bytes.data()) == 1) return std::vector<std::uint8_t>(bytes.begin(), bytes.begin() + 4);
  if (::inet_pton(AF_INET6, text.c_str(), bytes.data()) == 1) return std::vector<std::uint8_t>(bytes.begin(), bytes.end());
  return std::nullopt;
}

// A positive serial number of 16 random bytes (RFC 5280, section 4.1.2.2; CA/Browser Forum
// baseline requirements ask for at least 64 random bits). The top bit is cleared so the
// DER INTEGER stays positive, which leaves 127 random bits.
Result<std::pair<ossl::Asn1Integer, std::string>, CertificateError> random_serial() {
  std::array<std::uint8_t, 16> bytes{};
  if (!ossl::random_bytes(bytes)) return fail(CertificateError::signing_failed, "the random number generator failed");
  bytes[0] &= 0x7f;
  if (bytes[0] == 0) bytes[0] = 0x01;

  ossl::BigNum number(BN_bin2bn(bytes.data(), static_cast<int>(bytes.size()), nullptr));
  if (!number) return fail_signing("converting the serial number failed");
  ossl::Asn1Integer serial(BN_to_ASN1_INTEGER(number.get(), nullptr));
  if (!serial) return fail_signing("converting the serial number failed");
  return std::pair(std::move(serial), ossl::to_hex(bytes));
}

Result<ossl::X509NameOwner, CertificateError> make_name(const std::vector<std::pair<const char*, std::string>>& entries) {
  ossl::X509NameOwner name(X509_NAME_new());
  if (!name) return fail_signing("allocating a name failed");
  for (const auto& [field, value] : entries) {
    if (X509_NAME_add_entry_by_txt(name.get(), field, MBSTRING_UTF8, reinterpret_cast<const unsigned char*>(value.data()),
                                   static_cast<int>(value.size()), -1, 0) != 1) {
      return fail_signing(std::string("setting ") + field + " failed");
    }
  }
  return name;
}

// Adds an extension given in OpenSSL's configuration syntax. Only constant strings are
// passed here: nothing from a request is ever parsed as configuration.
Result<void, CertificateError> add_extension(X509* certificate, X509* issuer, int nid, const char* value) {
  X509V3_CTX context;
  X509V3_set_ctx_nodb(&context);
  X509V3_set_ctx(&context, issuer, certificate, nullptr, nullptr, 0);
  ossl::X509Extension extension(X509V3_EXT_conf_nid(nullptr, &context, nid, value));
  if (!extension || X509_add_ext(certificate, extension.get(), -1) != 1) {
    return fail_signing(std::string("adding extension ") + OBJ_nid2sn(nid) + " failed");
  }
  return {};
}

struct CertificateTemplate {
  const X509_NAME* subject = nullptr;
  EVP_PKEY* public_key = nullptr;
  X509* issuer = nullptr;  // null for a self-signed certificate
  EVP_PKEY* signing_key = nullptr;
  Clock::time_point not_before;
  Clock::time_point not_after;
};

// Creates a v3 certificate with a random serial, the subject, key, validity and issuer
// from `spec`, and no extensions yet. Returns it with the serial in hex.
Result<std::pair<ossl::X509Cert, std::string>, CertificateError> start_certificate(const CertificateTemplate& spec) {
  ossl::X509Cert certificate(X509_new());
  if (!certificate) return fail_signing("allocating a certificate failed");

  auto serial = random_serial();
  if (!serial) return std::unexpected(std::move(serial.error()));

  const X509_NAME* issuer_name = spec.issuer != nullptr ? X509_get_subject_name(spec.issuer) : spec.subject;
  if (X509_set_version(certificate.get(), X509_VERSION_3) != 1 ||
      X509_set_serialNumber(certificate.get(), serial->first.get()) != 1 ||
      X509_set_subject_name(certificate.get(), spec.subject) != 1 ||
      X509_set_issuer_name(certificate.get(), issuer_name) != 1 ||
      X509_set_pubkey(certificate.get(), spec.public_key) != 1 ||
      ASN1_TIME_set(X509_getm_notBefore(certificate.get()), Clock::to_time_t(spec.not_before)) == nullptr ||
      ASN1_TIME_set(X509_getm_notAfter(certificate.get()), Clock::to_time_t(spec.not_after)) == nullptr) {
    return fail_signing("filling in the certificate failed");
  }
  return std::pair(std::move(certificate), std::move(serial->second));
}

Result<void, CertificateError> finish_certificate(X509* certificate, EVP_PKEY* signing_key) {
  if (X509_sign(certificate, signing_key, EVP_sha256()) <= 0) return fail_signing("signing the certificate failed");
  return {};
}

// Creates a CA certificate with `basic_constraints` (critical, CA:TRUE and a pathlen),
// keyUsage keyCertSign and cRLSign, a subject key identifier, and, for a subordinate CA,
// the authority key identifier.
Result<ossl::X509Cert, CertificateError> make_ca_certificate(const CertificateTemplate& spec, const char* basic_constraints) {
  auto started = start_certificate(spec);
  if (!started) return std::unexpected(std::move(started.error()));
  X509* certificate = started->first.get();
  X509* issuer = spec.issuer != nullptr ? spec.issuer : certificate;

  for (const auto& [nid, value] : {std::pair{NID_basic_constraints, basic_constraints},
                                   std::pair{NID_key_usage, "critical,keyCertSign,cRLSign"},
                                   std::pair{NID_subject_key_identifier, "hash"}}) {
    if (auto added = add_extension(certificate, issuer, nid, value); !added) return std::unexpected(std::move(added.error()));
  }
  if (spec.issuer != nullptr) {
    if (auto added = add_extension(certificate, issuer, NID_authority_key_identifier, "keyid:always"); !added) {
      return std::unexpected(std::move(added.error()));
    }
  }
  if (auto signed_certificate = finish_certificate(certificate, spec.signing_key); !signed_certificate) {
    return std::unexpected(std::move(signed_certificate.error()));
  }
  return std::move(started->first);
}

// The loaded or newly created CA: keys and certificates, immutable after open().
struct CaMaterial {
  ossl::Pkey root_key;
  ossl::X509Cert root;
  ossl::Pkey issuing_key;
  ossl::X509Cert issuing;
};

Result<CaMaterial, CertificateError> create_ca(std::string_view organization, Clock::time_point now) {
  CaMaterial ca;
  ca.root_key = ossl::generate_p256_key();
  ca.issuing_key = ossl::generate_p256_key();
  if (!ca.root_key || !ca.issuing_key) return fail(CertificateError::signing_failed, "generating a P-256 key failed");

  auto root_name = make_name({{"O", std::string(organization)}, {"CN", "Licensing Root CA"}});
  if (!root_name) return std::unexpected(std::move(root_name.error()));
  auto root = make_ca_certificate({root_name->get(), ca.root_key.get(), nullptr, ca.root_key.get(), now - kBackdate,
                                   now + kRootLifetime},
                                  "critical,CA:TRUE,pathlen:1");
  if (!root) return std::unexpected(std::move(root.error()));
  ca.root = std::move(*root);

  auto issuing_name = make_name({{"O", std::string(organization)}, {"CN", "Licensing Issuing CA"}});
  if (!issuing_name) return std::unexpected(std::move(issuing_name.error()));
  auto issuing = make_ca_certificate({issuing_name->get(), ca.issuing_key.get(), ca.root.get(), ca.root_key.get(),
                                      now - kBackdate, now + kIssuingLifetime},
                                     "critical,CA:TRUE,pathlen:0");
  if (!issuing) return std::unexpected(std::move(issuing.error()));
  ca.issuing = std::move(*issuing);
  return ca;
}

Result<void, CertificateError> write_key(const std::filesystem::path& path, EVP_PKEY* key) {
  auto pem = ossl::private_key_to_pem(key);
  if (!pem) return fail(CertificateError::signing_failed, pem.error().detail);
  if (auto written = ossl::write_file_atomically(path, pem->view(), 0600); !written) {
    return fail(certificate_error(written.error().code), written.error().detail);
  }
  return {};
}

Result<void, CertificateError> write_certificate(const std::filesystem::path& path, X509* certificate) {
  auto pem = ossl::certificate_to_pem(certificate);
  if (!pem) return fail(CertificateError::signing_failed, pem.error().detail);
  if (auto written = ossl::write_file_atomically(path, *pem, 0644); !written) {
    return fail(certificate_error(written.error().code), written.error().detail);
  }
  return {};
}

// Writes the keys first and the certificates last. A directory with neither certificate was
// never handed out, so the next start creates the CA afresh.
Result<void, CertificateError> save_ca(const std::filesystem::path& directory, const CaMaterial& ca) {
  if (auto written = write_key(directory / kRootKeyFile, ca.root_key.get()); !written) return written;
  if (auto written = write_key(directory / kIssuingKeyFile, ca.issuing_key.get()); !written) return written;
  if (auto written = write_certificate(directory / kRootCertificateFile, ca.root.get()); !written) return written;
  return write_certificate(directory / kIssuingCertificateFile, ca.issuing.get());
}

Result<ossl::Pkey, CertificateError> load_key(const std::filesystem::path& path) {
  auto pem = ossl::read_private_file(path, kMaxKeyFileBytes);
  if (!pem) return fail(certificate_error(pem.error().code), pem.error().detail);
  auto key = ossl::private_key_from_pem(pem->text());
  if (!key) return fail(CertificateError::io, path.string() + ": " + key.error().detail);
  if (!ossl::is_p256(key->get())) return fail(CertificateError::io, path.string() + " does not hold a P-256 key");
  return std::move(*key);
}

Result<ossl::X509Cert, CertificateError> load_certificate(const std::filesystem::path& path) {
  auto pem = ossl::read_public_file(path, kMaxCertificateFileBytes);
  if (!pem) return fail(certificate_error(pem.error().code), pem.error().detail);
  auto certificate = ossl::certificate_from_pem(*pem);
  if (!certificate) return fail(CertificateError::io, path.string() + ": " + certificate.error().detail);
  return std::move(*certificate);
}

// Loads the four files and checks that they form one CA: each key matches its certificate
// and the issuing certificate is signed by the root.
Result<CaMaterial, CertificateError> load_ca(const std::filesystem::path& directory) {
  CaMaterial ca;
  auto root_key = load_key(directory / kRootKeyFile);
  if (!root_key) return std::unexpected(std::move(root_key.error()));
  auto issuing_key = load_key(directory / kIssuingKeyFile);
  if (!issuing_key) return std::unexpected(std::move(issuing_key.error()));
  auto root = load_certificate(directory / kRootCertificateFile);
  if (!root) return std::unexpected(std::move(root.error()));
  auto issuing = load_certificate(directory / kIssuingCertificateFile);
  if (!issuing) return std::unexpected(std::move(issuing.error()));

  if (X509_check_private_key(root->get(), root_key->get()) != 1 ||
      X509_check_private_key(issuing->get(), issuing_key->get()) != 1) {
    return fail(CertificateError::io, "a CA key in " + directory.string() + " does not match its certificate: " +
                                          ossl::drain_errors());
  }
  if (X509_verify(issuing->get(), root_key->get()) != 1) {
    return fail(CertificateError::io, kIssuingCertificateFile + std::string(" in ") + directory.string() +
                                          " is not signed by the root key: " + ossl::drain_errors());
  }

  ca.root_key = std::move(*root_key);
  ca.issuing_key = std::move(*issuing_key);
  ca.root = std::move(*root);
  ca.issuing = std::move(*issuing);
  return ca;
}

Result<ossl::GeneralNames, CertificateError> make_subject_alt_names(const ServerCertificateRequest& request) {
  ossl::GeneralNames names(sk_GENERAL_NAME_new_null());
  if (!names) return fail_signing("allocating subjectAltName failed");

  for (const auto& dns_name : request.dns_names) {
    ossl::GeneralName name(GENERAL_NAME_new());
    ossl::Asn1String text(ASN1_IA5STRING_new());
    if (!name || !text || ASN1_STRING_set(text.get(), dns_name.data(), static_cast<int>(dns_name.size())) != 1) {
      return fail_signing("building a dNSName failed");
    }
    GENERAL_NAME_set0_value(name.get(), GEN_DNS, text.release());
    if (sk_GENERAL_NAME_push(names.get(), name.get()) == 0) return fail_signing("building subjectAltName failed");
    static_cast<void>(name.release());  // owned by `names` now
  }

  for (const auto& address : request.ip_addresses) {
    const auto bytes = parse_ip_address(address);
    if (!bytes) return fail(CertificateError::invalid_request, "invalid IP address " + nlohmann::json(address).dump());
    ossl::GeneralName name(GENERAL_NAME_new());
    ossl::Asn1OctetString octets(ASN1_OCTET_STRING_new());
    if (!name || !octets || ASN1_OCTET_STRING_set(octets.get(), bytes->data(), static_cast<int>(bytes->size())) != 1) {
      return fail_signing("building an iPAddress failed");
    }
    GENERAL_NAME_set0_value(name.get(), GEN_IPADD, octets.release());
    if (sk_GENERAL_NAME_push(names.get(), name.get()) == 0) return fail_signing("building subjectAltName failed");
    static_cast<void>(name.release());
  }
  return names;
}

bool is_valid_user_id(std::string_view id) {
  if (id.empty() || id.size() > 64) return false;
  return std::all_of(id.begin(), id.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
           c == '-';
  });
}

// Checks the names and lifetime of a request, before the CSR is looked at.
Result<void, CertificateError> check_request(const ServerCertificateRequest& request) {
  const std::size_t name_count = request.dns_names.size() + request.ip_addresses.size();
  if (name_count == 0) return fail(CertificateError::invalid_request, "no DNS name or IP address requested");
  if (name_count > kMaxSubjectAltNames) {
    return fail(CertificateError::invalid_request, std::to_string(name_count) + " names requested, the maximum is " +
                                                       std::to_string(kMaxSubjectAltNames));
  }

  std::set<std::string> seen;
  for (const auto& name : request.dns_names) {
    if (!is_valid_dns_name(name)) {
      return fail(CertificateError::invalid_request, "invalid DNS name " + nlohmann::json(name).dump().substr(0, 80));
    }
    if (!seen.insert(name).second) return fail(CertificateError::invalid_request, "DNS name " + name + " requested twice");
  }
  for (const auto& address : request.ip_addresses) {
    const auto bytes = parse_ip_address(address);
    if (!bytes) {
      return fail(CertificateError::invalid_request, "invalid IP address " + nlohmann::json(address).dump().substr(0, 80));
    }
    if (!seen.insert(std::string(bytes->begin(), bytes->end())).second) {
      return fail(CertificateError::invalid_request, "IP address " + address + " requested twice");
    }
  }

  if (request.lifetime < kMinLeafLifetime || request.lifetime > kMaxLeafLifetime) {
    return fail(CertificateError::invalid_request, "lifetime " + std::to_string(request.lifetime.count()) +
                                                       " s is outside 300 s to 90 days");
  }
  return {};
}

// Parses the CSR and returns its public key after checking the key type and the
// self-signature, which proves that the requester has the private key.
Result<ossl::Pkey, CertificateError> check_csr(std::string_view csr_pem) {
  if (csr_pem.size() > kMaxCsrBytes) {
    return fail(CertificateError::invalid_csr, "CSR is " + std::to_string(csr_pem.size()) + " bytes, the maximum is " +
                                                   std::to_string(kMaxCsrBytes));
  }
  auto request = ossl::request_from_pem(csr_pem);
  if (!request) return fail(CertificateError::invalid_csr, request.error().detail);

  EVP_PKEY* key = X509_REQ_get0_pubkey(request->get());
  if (key == nullptr) {
    return fail(CertificateError::invalid_csr, "CSR public key cannot be decoded: " + ossl::drain_errors());
  }
  if (!ossl::is_p256(key) && !ossl::is_ed25519(key)) {
    return fail(CertificateError::invalid_csr, std::string("CSR key is ") + EVP_PKEY_get0_type_name(key) +
                                                   ", expected EC P-256 or Ed25519");
  }
  if (X509_REQ_verify(request->get(), key) != 1) {
    ERR_clear_error();
    return fail(CertificateError::invalid_csr, "CSR self-signature does not verify");
  }

  EVP_PKEY_up_ref(key);
  return ossl::Pkey(key);
}

class BuiltInCertificateAuthority final : public CertificateAuthority {
 public:
  BuiltInCertificateAuthority(CaMaterial ca, std::string root_pem, std::string issuing_pem, TimeSource now)
      : ca_(std::move(ca)), root_pem_(std::move(root_pem)), issuing_pem_(std::move(issuing_pem)), now_(std::move(now)) {}

  Result<IssuedCertificate, CertificateError> issue_server_certificate(const ServerCertificateRequest& request) override {
    if (auto checked = check_request(request); !checked) return std::unexpected(std::move(checked.error()));
    auto public_key = check_csr(request.csr_pem);
    if (!public_key) return std::unexpected(std::move(public_key.error()));

    const auto now = now_();
    const auto not_after = now + request.lifetime;

    // Serialized because OpenSSL caches extension data inside the shared issuing X509.
    const std::lock_guard lock(mutex_);
    if (ASN1_TIME_cmp_time_t(X509_get0_notAfter(ca_.issuing.get()), Clock::to_time_t(not_after)) < 0) {
      // NOTE: the issuing CA is not renewed automatically; after about five years it must be recreated.
      return fail(CertificateError::signing_failed, "the requested lifetime ends after the issuing CA expires");
    }

    // The subject CN is the first name when it fits in 64 bytes. Otherwise the subject is
    // empty, and RFC 5280 (section 4.2.1.6) then requires a critical subjectAltName.
    const std::string common_name = request.dns_names.empty() ? request.ip_addresses.front() : request.dns_names.front();
    const bool has_subject = common_name.size() <= kMaxCommonNameBytes;
    auto subject = has_subject ? make_name({{"CN", common_name}}) : make_name({});
    if (!subject) return std::unexpected(std::move(subject.error()));

    auto started = start_certificate(
        {subject->get(), public_key->get(), ca_.issuing.get(), ca_.issuing_key.get(), now - kBackdate, not_after});
    if (!started) return std::unexpected(std::move(started.error()));
    X509* certificate = started->first.get();

    for (const auto& [nid, value] : {std::pair{NID_basic_constraints, "critical,CA:FALSE"},
                                     std::pair{NID_key_usage, "critical,digitalSignature"},
                                     std::pair{NID_ext_key_usage, "serverAuth"},
                                     std::pair{NID_subject_key_identifier, "hash"},
                                     std::pair{NID_authority_key_identifier, "keyid:always"}}) {
      if (auto added = add_extension(certificate, ca_.issuing.get(), nid, value); !added) {
        return std::unexpected(std::move(added.error()));
      }
    }
    auto names = make_subject_alt_names(request);
    if (!names) return std::unexpected(std::move(names.error()));
    if (X509_add1_ext_i2d(certificate, NID_subject_alt_name, names->get(), has_subject ? 0 : 1, X509V3_ADD_DEFAULT) != 1) {
      return fail_signing("adding subjectAltName failed");
    }
    if (auto signed_certificate = finish_certificate(certificate, ca_.issuing_key.get()); !signed_certificate) {
      return std::unexpected(std::move(signed_certificate.error()));
    }

    auto pem = ossl::certificate_to_pem(certificate);
    if (!pem) return fail(CertificateError::signing_failed, pem.error().detail);
    logging::info("certificate_issued", {{"serial", started->second},
                                         {"dns_names", request.dns_names},
                                         {"ip_addresses", request.ip_addresses},
                                         {"lifetime_s", request.lifetime.count()}});
    return IssuedCertificate{*pem, *pem + issuing_pem_, std::move(started->second), not_after};
  }

  Result<IssuedCertificate, CertificateError> issue_client_certificate(const ClientCertificateRequest& request) override {
    if (!is_valid_user_id(request.user_id)) {
      return fail(CertificateError::invalid_request, "user id must be 1 to 64 characters of [A-Za-z0-9._-]");
    }
    if (request.lifetime < kMinLeafLifetime || request.lifetime > kMaxLeafLifetime) {
      return fail(CertificateError::invalid_request, "lifetime " + std::to_string(request.lifetime.count()) +
                                                         " s is outside 300 s to 90 days");
    }
    auto public_key = check_csr(request.csr_pem);
    if (!public_key) return std::unexpected(std::move(public_key.error()));
    if (!ossl::is_p256(public_key->get())) return fail(CertificateError::invalid_csr, "CSR key is not EC P-256");

    const auto now = now_();
    const auto not_after = now + request.lifetime;

    const std::lock_guard lock(mutex_);
    if (ASN1_TIME_cmp_time_t(X509_get0_notAfter(ca_.issuing.get()), Clock::to_time_t(not_after)) < 0) {
      return fail(CertificateError::signing_failed, "the requested lifetime ends after the issuing CA expires");
    }

    auto subject = make_name({{"CN", request.user_id}});
    if (!subject) return std::unexpected(std::move(subject.error()));
    auto started = start_certificate(
        {subject->get(), public_key->get(), ca_.issuing.get(), ca_.issuing_key.get(), now - kBackdate, not_after});
    if (!started) return std::unexpected(std::move(started.error()));
    X509* certificate = started->first.get();

    for (const auto& [nid, value] : {std::pair{NID_basic_constraints, "critical,CA:FALSE"},
                                     std::pair{NID_key_usage, "critical,digitalSignature"},
                                     std::pair{NID_ext_key_usage, "clientAuth"},
                                     std::pair{NID_subject_key_identifier, "hash"},
                                     std::pair{NID_authority_key_identifier, "keyid:always"}}) {
      if (auto added = add_extension(certificate, ca_.issuing.get(), nid, value); !added) {
        return std::unexpected(std::move(added.error()));
      }
    }

    // The URI is built here from a checked id, never parsed from configuration syntax.
    const std::string uri = user_uri(request.user_id);
    ossl::GeneralNames names(sk_GENERAL_NAME_new_null());
    ossl::GeneralName name(GENERAL_NAME_new());
    ossl::Asn1String text(ASN1_IA5STRING_new());
    if (!names || !name || !text || ASN1_STRING_set(text.get(), uri.data(), static_cast<int>(uri.size())) != 1) {
      return fail_signing("building the URI subjectAltName failed");
    }
    GENERAL_NAME_set0_value(name.get(), GEN_URI, text.release());
    if (sk_GENERAL_NAME_push(names.get(), name.get()) == 0) return fail_signing("building subjectAltName failed");
    static_cast<void>(name.release());  // owned by `names` now
    if (X509_add1_ext_i2d(certificate, NID_subject_alt_name, names.get(), 0, X509V3_ADD_DEFAULT) != 1) {
      return fail_signing("adding subjectAltName failed");
    }
    if (auto signed_certificate = finish_certificate(certificate, ca_.issuing_key.get()); !signed_certificate) {
      return std::unexpected(std::move(signed_certificate.error()));
    }

    auto pem = ossl::certificate_to_pem(certificate);
    if (!pem) return fail(CertificateError::signing_failed, pem.error().detail);
    logging::info("client_certificate_issued",
                  {{"serial", started->second}, {"user_id", request.user_id}, {"lifetime_s", request.lifetime.count()}});
    return IssuedCertificate{*pem, *pem + issuing_pem_, std::move(started->second), not_after};
  }

  std::string root_pem() const override { return root_pem_; }
  std::string issuing_pem() const override { return issuing_pem_; }

 private:
  std::mutex mutex_;
  const CaMaterial ca_;
  const std::string root_pem_;
  const std::string issuing_pem_;
  const TimeSource now_;
};

}  // namespace

std::string user_uri(std::string_view user_id) { return "urn:licensing:user:" + std::string(user_id); }

std::string_view to_string(CertificateError code) {
  switch (code) {
    case CertificateError::io: return "io";
    case CertificateError::invalid_csr: return "invalid_csr";
    case CertificateError::invalid_request: return "invalid_request";
    case CertificateError::permissions: return "permissions";
    case CertificateError::signing_failed: return "signing_failed";
  }
  return "unknown";
}

Result<std::unique_ptr<CertificateAuthority>, CertificateError> CertificateAuthority::open(
    const std::filesystem::path& directory, std::string_view organization) {
  return open(directory, organization, [] { return Clock::now(); });
}

Result<std::unique_ptr<CertificateAuthority>, CertificateError> CertificateAuthority::open(
    const std::filesystem::path& directory, std::string_view organization, TimeSource now) {
  if (!now) return fail(CertificateError::invalid_request, "no time source");
  if (organization.empty() || organization.size() > 64) {
    return fail(CertificateError::invalid_request, "organization must be 1 to 64 bytes (ub-organization-name)");
  }
  if (auto ensured = ossl::ensure_private_directory(directory); !ensured) {
    return fail(certificate_error(ensured.error().code), ensured.error().detail);
  }

  const bool has_root = std::filesystem::exists(directory / kRootCertificateFile);
  const bool has_issuing = std::filesystem::exists(directory / kIssuingCertificateFile);
  if (has_root != has_issuing) {
    return fail(CertificateError::io, directory.string() + " contains only one of " + kRootCertificateFile + " and " +
                                          kIssuingCertificateFile +
                                          ". Restore the missing file from a backup, or empty the directory "
                                          "to create a new CA if no client trusts the old root yet");
  }

  Result<CaMaterial, CertificateError> ca = has_root ? load_ca(directory) : create_ca(organization, now());
  if (!ca) return std::unexpected(std::move(ca.error()));
  if (!has_root) {
    if (auto saved = save_ca(directory, *ca); !saved) return std::unexpected(std::move(saved.error()));
    logging::info("ca_created", {{"directory", directory.string()}});
  }

  auto root_pem = ossl::certificate_to_pem(ca->root.get());
  auto issuing_pem = ossl::certificate_to_pem(ca->issuing.get());
  if (!root_pem || !issuing_pem) return fail(CertificateError::io, "encoding the CA certificates as PEM failed");
  return std::make_unique<BuiltInCertificateAuthority>(std::move(*ca), std::move(*root_pem), std::move(*issuing_pem),
                                                       std::move(now));
}

Result<KeyAndCsr, CertificateError> generate_key_and_csr(std::string_view common_name) {
  return generate_key_and_csr(common_name, {});
}

Result<KeyAndCsr, CertificateError> generate_key_and_csr(std::string_view common_name,
                                                         const std::vector<std::string>& dns_names) {
  for (const auto& name : dns_names) {
    if (!is_valid_dns_name(name)) return fail(CertificateError::invalid_request, "invalid DNS name in the CSR: " + name);
  }
  if (common_name.empty() || common_name.size() > kMaxCommonNameBytes) {
    return fail(CertificateError::invalid_request, "common name must be 1 to 64 bytes");
  }

  ossl::Pkey key = ossl::generate_p256_key();
  if (!key) return fail(CertificateError::signing_failed, "generating a P-256 key failed");
  auto subject = make_name({{"CN", std::string(common_name)}});
  if (!subject) return std::unexpected(std::move(subject.error()));

  ossl::X509Req request(X509_REQ_new());
  if (!request || X509_REQ_set_version(request.get(), X509_REQ_VERSION_1) != 1 ||
      X509_REQ_set_subject_name(request.get(), subject->get()) != 1 || X509_REQ_set_pubkey(request.get(), key.get()) != 1) {
    return fail_signing("building the CSR failed");
  }
  if (!dns_names.empty()) {
    ossl::GeneralNames names(GENERAL_NAMES_new());
    for (const auto& dns_name : dns_names) {
      ossl::GeneralName name(GENERAL_NAME_new());
      ossl::Asn1String text(ASN1_IA5STRING_new());
      if (!names || !name || !text || ASN1_STRING_set(text.get(), dns_name.data(), static_cast<int>(dns_name.size())) != 1) {
        return fail_signing("building the CSR's subjectAltName failed");
      }
      GENERAL_NAME_set0_value(name.get(), GEN_DNS, text.release());
      if (sk_GENERAL_NAME_push(names.get(), name.get()) <= 0) return fail_signing("building the CSR's subjectAltName failed");
      name.release();
    }
    STACK_OF(X509_EXTENSION)* extensions = nullptr;
    const bool added = X509V3_add1_i2d(&extensions, NID_subject_alt_name, names.get(), 0, X509V3_ADD_DEFAULT) == 1 &&
                       X509_REQ_add_extensions(request.get(), extensions) == 1;
    sk_X509_EXTENSION_pop_free(extensions, X509_EXTENSION_free);
    if (!added) return fail_signing("adding the subjectAltName to the CSR failed");
  }
  if (X509_REQ_sign(request.get(), key.get(), EVP_sha256()) <= 0) return fail_signing("signing the CSR failed");

  auto csr_pem = ossl::request_to_pem(request.get());
  auto key_pem = ossl::private_key_to_pem(key.get());
  if (!csr_pem || !key_pem) return fail(CertificateError::signing_failed, "encoding the key or CSR as PEM failed");
  return KeyAndCsr{std::string(key_pem->text()), std::move(*csr_pem)};
}

}  // namespace licensing::crypto
