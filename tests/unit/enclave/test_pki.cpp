#include "test_pki.hpp"

#include <gtest/gtest.h>
#include <openssl/pem.h>

#include <cstdlib>
#include <fstream>
#include <stdexcept>

namespace licensing::enclave::test {
namespace {

namespace ossl = crypto::ossl;

void add_extension(X509* certificate, X509* issuer, int nid, const char* value) {
  X509V3_CTX context;
  X509V3_set_ctx(&context, issuer, certificate, nullptr, nullptr, 0);
  ossl::X509Extension extension(X509V3_EXT_conf_nid(nullptr, &context, nid, value));
  if (!extension || X509_add_ext(certificate, extension.get(), -1) != 1) {
    throw std::runtime_error("adding an extension failed: " + ossl::drain_errors());
  }
}

}  // namespace

TempDir::TempDir() {
  std::string pattern = (std::filesystem::temp_directory_path() / "enclave-test-XXXXXX").string();
  if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
  path_ = pattern;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

TestCa::TestCa(const std::filesystem::path& directory, crypto::CertificateAuthority::TimeSource now)
    : directory_(directory), now_(std::move(now)) {
  auto opened = crypto::CertificateAuthority::open(directory, "Licensing Test", now_);
  if (!opened) throw std::runtime_error("opening the test CA failed: " + opened.error().detail);
  authority_ = std::move(*opened);
  bundle_file_ = directory / "bundle.pem";
  write_file(bundle_file_, authority_->root_pem(), std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
}

ClientCredentials TestCa::issue_client(const std::vector<std::string>& uris) const {
  auto issuer_key_pem = ossl::read_private_file(directory_ / "issuing.key.pem", 16 * 1024);
  if (!issuer_key_pem) throw std::runtime_error("reading the issuing key failed: " + issuer_key_pem.error().detail);
  auto issuer_key = ossl::private_key_from_pem(issuer_key_pem->text());
  auto issuer = ossl::certificate_from_pem(authority_->issuing_pem());
  if (!issuer_key || !issuer) throw std::runtime_error("loading the issuing CA failed");

  auto key = ossl::generate_p256_key();
  ossl::X509Cert certificate(X509_new());
  X509_set_version(certificate.get(), 2);
  ASN1_INTEGER_set(X509_get_serialNumber(certificate.get()), static_cast<long>(std::rand()) + 1000);
  X509_set_issuer_name(certificate.get(), X509_get_subject_name(issuer->get()));
  X509_NAME_add_entry_by_txt(X509_get_subject_name(certificate.get()), "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("test client"), -1, -1, 0);
  auto now = std::chrono::system_clock::to_time_t(now_());
  X509_time_adj_ex(X509_getm_notBefore(certificate.get()), 0, -300, &now);
  X509_time_adj_ex(X509_getm_notAfter(certificate.get()), 0, 3600, &now);
  X509_set_pubkey(certificate.get(), key.get());

  add_extension(certificate.get(), issuer->get(), NID_basic_constraints, "critical,CA:FALSE");
  add_extension(certificate.get(), issuer->get(), NID_key_usage, "critical,digitalSignature");
  add_extension(certificate.get(), issuer->get(), NID_ext_key_usage, "clientAuth");
  if (!uris.empty()) {
    std::string names;
    for (const auto& uri : uris) names += (names.empty() ? "URI:" : ",URI:") + uri;
    add_extension(certificate.get(), issuer->get(), NID_subject_alt_name, names.c_str());
  }
  if (X509_sign(certificate.get(), issuer_key->get(), EVP_sha256()) <= 0) {
    throw std::runtime_error("signing the client certificate failed: " + ossl::drain_errors());
  }

  auto key_pem = ossl::private_key_to_pem(key.get());
  auto certificate_pem = ossl::certificate_to_pem(certificate.get());
  if (!key_pem || !certificate_pem) throw std::runtime_error("encoding the client certificate failed");
  return {*certificate_pem + authority_->issuing_pem(), std::string(key_pem->text())};
}

ossl::X509Cert parse_certificate(const std::string& pem) {
  auto certificate = ossl::certificate_from_pem(pem);
  if (!certificate) {
    ADD_FAILURE() << "not a PEM certificate: " << certificate.error().detail;
    return nullptr;
  }
  return std::move(*certificate);
}

void write_file(const std::filesystem::path& path, std::string_view text, std::filesystem::perms mode) {
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << text;
    if (!out) throw std::runtime_error("writing " + path.string() + " failed");
  }
  std::filesystem::permissions(path, mode);
}

}  // namespace licensing::enclave::test
