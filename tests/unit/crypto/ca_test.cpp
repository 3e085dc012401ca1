// The built-in CA: creation and reload, issued certificates checked field by field, chain
// verification with OpenSSL's API and with the openssl command-line tool.
#include "crypto/ca.hpp"

#include <gtest/gtest.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <cstdio>
#include <fstream>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "crypto/openssl.hpp"
#include "test_support.hpp"

namespace licensing::crypto {

void PrintTo(CertificateError code, std::ostream* out) { *out << to_string(code); }

namespace {

using namespace std::chrono_literals;
using testing::at_unix;
using testing::file_mode;
using testing::kNow;
using testing::TempDirectory;

using BasicConstraints = std::unique_ptr<BASIC_CONSTRAINTS, ossl::Deleter<BASIC_CONSTRAINTS_free>>;
using ExtensionStack = std::unique_ptr<STACK_OF(X509_EXTENSION), decltype([](STACK_OF(X509_EXTENSION) * stack) {
                                         sk_X509_EXTENSION_pop_free(stack, X509_EXTENSION_free);
                                       })>;

ossl::X509Cert parse(const std::string& pem) { return ossl::certificate_from_pem(pem).value(); }

std::string request_to_pem(X509_REQ* request) { return ossl::request_to_pem(request).value(); }

// Builds and signs a CSR; `digest` is null for Ed25519.
std::string make_csr(EVP_PKEY* key, const std::string& common_name, const EVP_MD* digest = EVP_sha256(),
                     STACK_OF(X509_EXTENSION)* extensions = nullptr) {
  ossl::X509Req request(X509_REQ_new());
  ossl::X509NameOwner name(X509_NAME_new());
  X509_NAME_add_entry_by_txt(name.get(), "CN", MBSTRING_UTF8, reinterpret_cast<const unsigned char*>(common_name.data()),
                             static_cast<int>(common_name.size()), -1, 0);
  X509_REQ_set_version(request.get(), X509_REQ_VERSION_1);
  X509_REQ_set_subject_name(request.get(), name.get());
  X509_REQ_set_pubkey(request.get(), key);
  if (extensions != nullptr) X509_REQ_add_extensions(request.get(), extensions);
  EXPECT_GT(X509_REQ_sign(request.get(), key, digest), 0);
  return request_to_pem(request.get());
}

// Verifies leaf -> issuing -> root at `time` for the TLS server purpose; returns the
// OpenSSL verification error text, or nullopt on success.
std::optional<std::string> verify_chain(const std::string& root_pem, const std::string& issuing_pem,
                                        const std::string& leaf_pem, std::int64_t time) {
  const auto root = parse(root_pem);
  const auto issuing = parse(issuing_pem);
  const auto leaf = parse(leaf_pem);
  ossl::X509Store store(X509_STORE_new());
  X509_STORE_add_cert(store.get(), root.get());
  ossl::X509Stack untrusted(sk_X509_new_null());
  sk_X509_push(untrusted.get(), X509_dup(issuing.get()));
  ossl::X509StoreContext context(X509_STORE_CTX_new());
  X509_STORE_CTX_init(context.get(), store.get(), leaf.get(), untrusted.get());
  X509_STORE_CTX_set_time(context.get(), 0, static_cast<time_t>(time));
  X509_STORE_CTX_set_purpose(context.get(), X509_PURPOSE_SSL_SERVER);
  if (X509_verify_cert(context.get()) == 1) return std::nullopt;
  return X509_verify_cert_error_string(X509_STORE_CTX_get_error(context.get()));
}

std::vector<std::string> subject_alt_names(X509* certificate, int* critical) {
  std::vector<std::string> names;
  ossl::GeneralNames sans(
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(certificate, NID_subject_alt_name, critical, nullptr)));
  if (!sans) return names;
  for (int i = 0; i < sk_GENERAL_NAME_num(sans.get()); ++i) {
    const GENERAL_NAME* name = sk_GENERAL_NAME_value(sans.get(), i);
    if (name->type == GEN_DNS) {
      names.push_back("DNS:" + std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(name->d.dNSName)),
                                           static_cast<std::size_t>(ASN1_STRING_length(name->d.dNSName))));
    } else if (name->type == GEN_IPADD) {
      const auto* bytes = ASN1_STRING_get0_data(name->d.iPAddress);
      names.push_back("IP:" + ossl::to_hex(std::span(bytes, static_cast<std::size_t>(ASN1_STRING_length(name->d.iPAddress)))));
    } else {
      names.push_back("other");
    }
  }
  return names;
}

std::string common_name(X509* certificate) {
  char buffer[256] = {};
  const int length = X509_NAME_get_text_by_NID(X509_get_subject_name(certificate), NID_commonName, buffer, sizeof(buffer));
  return length < 0 ? std::string() : std::string(buffer, static_cast<std::size_t>(length));
}

class CaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto ca = open();
    ASSERT_TRUE(ca.has_value()) << ca.error().detail;
    ca_ = std::move(*ca);
  }

  Result<std::unique_ptr<CertificateAuthority>, CertificateError> open() const {
    return CertificateAuthority::open(ca_directory(), "Licensing Test", [] { return at_unix(kNow); });
  }

  std::filesystem::path ca_directory() const { return directory_.path() / "ca"; }

  ServerCertificateRequest request(std::vector<std::string> dns_names, std::vector<std::string> ip_addresses = {}) const {
    ServerCertificateRequest request;
    request.csr_pem = generate_key_and_csr("ignored.example").value().csr_pem;
    request.dns_names = std::move(dns_names);
    request.ip_addresses = std::move(ip_addresses);
    request.lifetime = 24h;
    return request;
  }

  std::optional<CertificateError> rejection(const ServerCertificateRequest& request) const {
    const auto issued = ca_->issue_server_certificate(request);
    if (issued) return std::nullopt;
    return issued.error().code;
  }

  TempDirectory directory_;
  std::unique_ptr<CertificateAuthority> ca_;
};

// --- the CA itself ---

TEST_F(CaTest, CreatesPrivateFiles) {
  EXPECT_EQ(file_mode(ca_directory()), 0700u);
  EXPECT_EQ(file_mode(ca_directory() / "root.key.pem"), 0600u);
  EXPECT_EQ(file_mode(ca_directory() / "issuing.key.pem"), 0600u);
  EXPECT_EQ(file_mode(ca_directory() / "root.pem"), 0644u);
  EXPECT_EQ(file_mode(ca_directory() / "issuing.pem"), 0644u);
}

TEST_F(CaTest, RootAndIssuingCaProfiles) {
  const auto root = parse(ca_->root_pem());
  const auto issuing = parse(ca_->issuing_pem());

  EXPECT_EQ(X509_check_issued(root.get(), root.get()), X509_V_OK);
  EXPECT_EQ(X509_check_issued(root.get(), issuing.get()), X509_V_OK);
  EXPECT_TRUE(ossl::is_p256(X509_get0_pubkey(root.get())));
  EXPECT_TRUE(ossl::is_p256(X509_get0_pubkey(issuing.get())));

  for (const auto& [certificate, path_length, years] : {std::tuple{root.get(), 1, 10}, std::tuple{issuing.get(), 0, 5}}) {
    int critical = -1;
    BasicConstraints constraints(
        static_cast<BASIC_CONSTRAINTS*>(X509_get_ext_d2i(certificate, NID_basic_constraints, &critical, nullptr)));
    ASSERT_TRUE(constraints);
    EXPECT_NE(constraints->ca, 0);
    EXPECT_EQ(critical, 1);
    EXPECT_EQ(X509_get_pathlen(certificate), path_length);
    EXPECT_EQ(X509_get_key_usage(certificate), static_cast<std::uint32_t>(KU_KEY_CERT_SIGN | KU_CRL_SIGN));
    EXPECT_NE(X509_get0_subject_key_id(certificate), nullptr);
    EXPECT_EQ(ASN1_TIME_cmp_time_t(X509_get0_notBefore(certificate), kNow - 300), 0);
    EXPECT_EQ(ASN1_TIME_cmp_time_t(X509_get0_notAfter(certificate), kNow + years * 365 * 24 * 3600), 0);
  }
  EXPECT_EQ(ASN1_OCTET_STRING_cmp(X509_get0_authority_key_id(issuing.get()), X509_get0_subject_key_id(root.get())), 0);
}

TEST_F(CaTest, ReloadKeepsSameRoot) {
  const std::string root_pem = ca_->root_pem();
  const std::string issuing_pem = ca_->issuing_pem();
  ca_.reset();

  auto reopened = open();
  ASSERT_TRUE(reopened.has_value()) << reopened.error().detail;
  EXPECT_EQ((*reopened)->root_pem(), root_pem);
  EXPECT_EQ((*reopened)->issuing_pem(), issuing_pem);

  const auto issued = (*reopened)->issue_server_certificate(request({"enclave-1.licensing.test"}));
  ASSERT_TRUE(issued.has_value()) << issued.error().detail;
  EXPECT_EQ(verify_chain(root_pem, issuing_pem, issued->certificate_pem, kNow), std::nullopt);
}

TEST_F(CaTest, GroupReadableKeyRejected) {
  ca_.reset();
  for (const char* file : {"root.key.pem", "issuing.key.pem"}) {
    ASSERT_EQ(::chmod((ca_directory() / file).c_str(), 0640), 0);
    const auto reopened = open();
    ASSERT_FALSE(reopened.has_value()) << file;
    EXPECT_EQ(reopened.error().code, CertificateError::permissions) << file;
    ASSERT_EQ(::chmod((ca_directory() / file).c_str(), 0600), 0);
  }
  EXPECT_TRUE(open().has_value());
}

TEST_F(CaTest, MissingIssuingCertificateRejected) {
  ca_.reset();
  std::filesystem::remove(ca_directory() / "issuing.pem");
  const auto reopened = open();
  ASSERT_FALSE(reopened.has_value());
  EXPECT_EQ(reopened.error().code, CertificateError::io);
}

TEST_F(CaTest, MismatchedKeyRejected) {
  ca_.reset();
  const ossl::Pkey other = ossl::generate_p256_key();
  const auto pem = ossl::private_key_to_pem(other.get()).value();
  ASSERT_TRUE(ossl::write_file_atomically(ca_directory() / "issuing.key.pem", pem.view(), 0600).has_value());
  const auto reopened = open();
  ASSERT_FALSE(reopened.has_value());
  EXPECT_EQ(reopened.error().code, CertificateError::io);
}

TEST(CaOpen, EmptyOrganizationRejected) {
  TempDirectory directory;
  const auto ca = CertificateAuthority::open(directory.path() / "ca", "", [] { return at_unix(kNow); });
  ASSERT_FALSE(ca.has_value());
  EXPECT_EQ(ca.error().code, CertificateError::invalid_request);
}

// --- issued certificates ---

TEST_F(CaTest, IssuedChainVerifiesAgainstRoot) {
  const auto issued = ca_->issue_server_certificate(request({"enclave-1.licensing.test"}, {"127.0.0.1"}));
  ASSERT_TRUE(issued.has_value()) << issued.error().detail;
  EXPECT_EQ(verify_chain(ca_->root_pem(), ca_->issuing_pem(), issued->certificate_pem, kNow), std::nullopt);
  EXPECT_EQ(issued->chain_pem, issued->certificate_pem + ca_->issuing_pem());

  const auto leaf = parse(issued->certificate_pem);
  EXPECT_EQ(X509_check_host(leaf.get(), "enclave-1.licensing.test", 0, 0, nullptr), 1);
  EXPECT_EQ(X509_check_host(leaf.get(), "enclave-2.licensing.test", 0, 0, nullptr), 0);
  EXPECT_EQ(X509_check_ip_asc(leaf.get(), "127.0.0.1", 0), 1);

  // Outside the validity period the chain does not verify.
  EXPECT_NE(verify_chain(ca_->root_pem(), ca_->issuing_pem(), issued->certificate_pem, kNow + 25 * 3600), std::nullopt);
  EXPECT_NE(verify_chain(ca_->root_pem(), ca_->issuing_pem(), issued->certificate_pem, kNow - 600), std::nullopt);
}

TEST_F(CaTest, OpensslCommandLineVerifiesChain) {
  const auto issued = ca_->issue_server_certificate(request({"enclave-1.licensing.test"}));
  ASSERT_TRUE(issued.has_value()) << issued.error().detail;
  const auto files = directory_.path();
  std::ofstream(files / "root.pem") << ca_->root_pem();
  std::ofstream(files / "issuing.pem") << ca_->issuing_pem();
  std::ofstream(files / "leaf.pem") << issued->certificate_pem;

  // -attime pins verification to the CA's injected clock.
  const std::string command = "cd " + files.string() + " && openssl verify -attime " + std::to_string(kNow) +
                              " -purpose sslserver -CAfile root.pem -untrusted issuing.pem leaf.pem 2>&1";
  FILE* pipe = ::popen(command.c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  std::string output;
  char buffer[256];
  while (std::fgets(buffer, sizeof(buffer), pipe) != nullptr) output += buffer;
  const int status = ::pclose(pipe);
  EXPECT_EQ(status, 0) << output;
  EXPECT_EQ(output, "leaf.pem: OK\n");

  // The leaf alone, without the issuing CA, does not verify.
  const std::string without_issuing = "cd " + files.string() + " && openssl verify -attime " + std::to_string(kNow) +
                                      " -CAfile root.pem leaf.pem >/dev/null 2>&1";
  EXPECT_NE(std::system(without_issuing.c_str()), 0);
}

TEST_F(CaTest, LeafHasServerProfile) {
  const auto issued = ca_->issue_server_certificate(request({"enclave-1.licensing.test", "enclave-1"}, {"127.0.0.1", "::1"}));
  ASSERT_TRUE(issued.has_value()) << issued.error().detail;
  const auto leaf = parse(issued->certificate_pem);

  EXPECT_EQ(X509_get_version(leaf.get()), X509_VERSION_3);
  EXPECT_EQ(X509_get_signature_nid(leaf.get()), NID_ecdsa_with_SHA256);
  EXPECT_EQ(common_name(leaf.get()), "enclave-1.licensing.test");

  int critical = -1;
  const auto names = subject_alt_names(leaf.get(), &critical);
  EXPECT_EQ(names, (std::vector<std::string>{"DNS:enclave-1.licensing.test", "DNS:enclave-1", "IP:7f000001",
                                             "IP:00000000000000000000000000000001"}));
  EXPECT_EQ(critical, 0);

  BasicConstraints constraints(
      static_cast<BASIC_CONSTRAINTS*>(X509_get_ext_d2i(leaf.get(), NID_basic_constraints, &critical, nullptr)));
  ASSERT_TRUE(constraints);
  EXPECT_EQ(constraints->ca, 0);
  EXPECT_EQ(critical, 1);

  ossl::Asn1String key_usage(static_cast<ASN1_STRING*>(X509_get_ext_d2i(leaf.get(), NID_key_usage, &critical, nullptr)));
  ASSERT_TRUE(key_usage);
  EXPECT_EQ(critical, 1);
  EXPECT_EQ(X509_get_key_usage(leaf.get()), static_cast<std::uint32_t>(KU_DIGITAL_SIGNATURE));

  ossl::ExtendedKeyUsage usages(
      static_cast<EXTENDED_KEY_USAGE*>(X509_get_ext_d2i(leaf.get(), NID_ext_key_usage, &critical, nullptr)));
  ASSERT_TRUE(usages);
  ASSERT_EQ(sk_ASN1_OBJECT_num(usages.get()), 1);
  EXPECT_EQ(OBJ_obj2nid(sk_ASN1_OBJECT_value(usages.get(), 0)), NID_server_auth);
  EXPECT_EQ(X509_get_extended_key_usage(leaf.get()), static_cast<std::uint32_t>(XKU_SSL_SERVER));

  const auto issuing = parse(ca_->issuing_pem());
  ASSERT_NE(X509_get0_subject_key_id(leaf.get()), nullptr);
  ASSERT_NE(X509_get0_authority_key_id(leaf.get()), nullptr);
  EXPECT_EQ(ASN1_OCTET_STRING_cmp(X509_get0_authority_key_id(leaf.get()), X509_get0_subject_key_id(issuing.get())), 0);

  EXPECT_EQ(ASN1_TIME_cmp_time_t(X509_get0_notBefore(leaf.get()), kNow - 300), 0);
  EXPECT_EQ(ASN1_TIME_cmp_time_t(X509_get0_notAfter(leaf.get()), kNow + 24 * 3600), 0);
}

TEST_F(CaTest, SerialIsRandomPositive128Bit) {
  std::set<std::string> serials;
  for (int i = 0; i < 8; ++i) {
    const auto issued = ca_->issue_server_certificate(request({"enclave-1.licensing.test"}));
    ASSERT_TRUE(issued.has_value());
    const auto leaf = parse(issued->certificate_pem);
    ossl::BigNum serial(ASN1_INTEGER_to_BN(X509_get0_serialNumber(leaf.get()), nullptr));
    ASSERT_TRUE(serial);
    EXPECT_EQ(BN_is_negative(serial.get()), 0);
    EXPECT_LE(BN_num_bits(serial.get()), 127);
    EXPECT_GT(BN_num_bits(serial.get()), 120);  // the first byte is never zero
    EXPECT_EQ(issued->serial_hex.size(), 32u);
    char* hex = BN_bn2hex(serial.get());
    std::string expected(hex);
    OPENSSL_free(hex);
    std::transform(expected.begin(), expected.end(), expected.begin(), [](char c) { return static_cast<char>(std::tolower(c)); });
    EXPECT_EQ(issued->serial_hex, expected);
    serials.insert(issued->serial_hex);
  }
  EXPECT_EQ(serials.size(), 8u);
}

TEST_F(CaTest, CsrSubjectAndExtensionsIgnored) {
  const ossl::Pkey key = ossl::generate_p256_key();
  ExtensionStack extensions(sk_X509_EXTENSION_new_null());
  sk_X509_EXTENSION_push(extensions.get(), X509V3_EXT_conf_nid(nullptr, nullptr, NID_basic_constraints, "critical,CA:TRUE"));
  sk_X509_EXTENSION_push(extensions.get(), X509V3_EXT_conf_nid(nullptr, nullptr, NID_subject_alt_name, "DNS:evil.example"));
  sk_X509_EXTENSION_push(extensions.get(), X509V3_EXT_conf_nid(nullptr, nullptr, NID_ext_key_usage, "clientAuth,codeSigning"));

  auto certificate_request = request({"enclave-1.licensing.test"});
  certificate_request.csr_pem = make_csr(key.get(), "evil.example", EVP_sha256(), extensions.get());
  const auto issued = ca_->issue_server_certificate(certificate_request);
  ASSERT_TRUE(issued.has_value()) << issued.error().detail;
  const auto leaf = parse(issued->certificate_pem);

  EXPECT_EQ(common_name(leaf.get()), "enclave-1.licensing.test");
  EXPECT_EQ(subject_alt_names(leaf.get(), nullptr), std::vector<std::string>{"DNS:enclave-1.licensing.test"});
  EXPECT_EQ(X509_check_ca(leaf.get()), 0);
  EXPECT_EQ(X509_get_extended_key_usage(leaf.get()), static_cast<std::uint32_t>(XKU_SSL_SERVER));
  EXPECT_EQ(EVP_PKEY_eq(X509_get0_pubkey(leaf.get()), key.get()), 1);
}

TEST_F(CaTest, IpOnlyRequestUsesIpAsCommonName) {
  const auto issued = ca_->issue_server_certificate(request({}, {"10.0.0.7"}));
  ASSERT_TRUE(issued.has_value()) << issued.error().detail;
  const auto leaf = parse(issued->certificate_pem);
  EXPECT_EQ(common_name(leaf.get()), "10.0.0.7");
  EXPECT_EQ(subject_alt_names(leaf.get(), nullptr), std::vector<std::string>{"IP:0a000007"});
}

TEST_F(CaTest, LongNameGivesEmptySubjectAndCriticalSan) {
  const std::string long_name = std::string(60, 'a') + ".licensing.test";
  const auto issued = ca_->issue_server_certificate(request({long_name}));
  ASSERT_TRUE(issued.has_value()) << issued.error().detail;
  const auto leaf = parse(issued->certificate_pem);
  EXPECT_EQ(X509_NAME_entry_count(X509_get_subject_name(leaf.get())), 0);
  int critical = -1;
  EXPECT_EQ(subject_alt_names(leaf.get(), &critical), std::vector<std::string>{"DNS:" + long_name});
  EXPECT_EQ(critical, 1);
  EXPECT_EQ(verify_chain(ca_->root_pem(), ca_->issuing_pem(), issued->certificate_pem, kNow), std::nullopt);
}

TEST_F(CaTest, Ed25519CsrAccepted) {
  ossl::Pkey key(EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519"));
  ASSERT_TRUE(key);
  auto certificate_request = request({"enclave-1.licensing.test"});
  certificate_request.csr_pem = make_csr(key.get(), "enclave-1", nullptr);
  const auto issued = ca_->issue_server_certificate(certificate_request);
  ASSERT_TRUE(issued.has_value()) << issued.error().detail;
  EXPECT_EQ(verify_chain(ca_->root_pem(), ca_->issuing_pem(), issued->certificate_pem, kNow), std::nullopt);
}

// --- rejected requests ---

TEST_F(CaTest, TamperedCsrSignatureRejected) {
  const auto csr = ossl::request_from_pem(request({"x.test"}).csr_pem).value();
  unsigned char* der_raw = nullptr;
  const int length = i2d_X509_REQ(csr.get(), &der_raw);
  ASSERT_GT(length, 0);
  std::vector<unsigned char> der(der_raw, der_raw + length);
  OPENSSL_free(der_raw);
  der.back() ^= 0x01;  // the last byte of the ECDSA signature's S value

  const unsigned char* cursor = der.data();
  ossl::X509Req tampered(d2i_X509_REQ(nullptr, &cursor, length));
  ASSERT_TRUE(tampered);
  auto certificate_request = request({"enclave-1.licensing.test"});
  certificate_request.csr_pem = request_to_pem(tampered.get());
  EXPECT_EQ(rejection(certificate_request), CertificateError::invalid_csr);
}

TEST_F(CaTest, CsrSignedByOtherKeyRejected) {
  const ossl::Pkey subject_key = ossl::generate_p256_key();
  const ossl::Pkey other_key = ossl::generate_p256_key();
  ossl::X509Req csr(X509_REQ_new());
  X509_REQ_set_pubkey(csr.get(), subject_key.get());
  ASSERT_GT(X509_REQ_sign(csr.get(), other_key.get(), EVP_sha256()), 0);
  auto certificate_request = request({"enclave-1.licensing.test"});
  certificate_request.csr_pem = request_to_pem(csr.get());
  EXPECT_EQ(rejection(certificate_request), CertificateError::invalid_csr);
}

TEST_F(CaTest, RsaAndP384CsrRejected) {
  ossl::Pkey rsa(EVP_RSA_gen(2048));
  ossl::Pkey p384(EVP_EC_gen("P-384"));
  ASSERT_TRUE(rsa);
  ASSERT_TRUE(p384);
  for (EVP_PKEY* key : {rsa.get(), p384.get()}) {
    auto certificate_request = request({"enclave-1.licensing.test"});
    certificate_request.csr_pem = make_csr(key, "enclave-1");
    EXPECT_EQ(rejection(certificate_request), CertificateError::invalid_csr) << EVP_PKEY_get0_type_name(key);
  }
}

TEST_F(CaTest, GarbageCsrRejected) {
  for (const std::string& pem : {std::string(), std::string("not a csr"), ca_->root_pem(),
                                 std::string("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"),
                                 std::string(20000, 'A')}) {
    auto certificate_request = request({"enclave-1.licensing.test"});
    certificate_request.csr_pem = pem;
    EXPECT_EQ(rejection(certificate_request), CertificateError::invalid_csr) << pem.substr(0, 40);
  }
}

TEST_F(CaTest, BadDnsNameRejected) {
  for (const std::string& name : {std::string(""), std::string("-a.test"), std::string("a-.test"), std::string("a..test"),
                                  std::string(".a.test"), std::string("a.test."), std::string("a_b.test"),
                                  std::string("*.licensing.test"), std::string("a b.test"), std::string("a.test,DNS:evil.test"),
                                  std::string("10.0.0.1"), std::string("a.123"), std::string("\xc3\xa9t\xc3\xa9.test"),
                                  std::string(64, 'a') + ".test", std::string("a.test\0evil", 11),
                                  std::string(251, 'a').insert(63, ".").insert(127, ".").insert(191, ".")}) {
    EXPECT_EQ(rejection(request({name})), CertificateError::invalid_request) << name;
  }
  EXPECT_EQ(rejection(request({std::string(63, 'a') + ".test"})), std::nullopt);
  // 253 characters in labels of 63, 63, 63 and 61: the longest accepted name.
  EXPECT_EQ(rejection(request({std::string(250, 'a').insert(63, ".").insert(127, ".").insert(191, ".")})), std::nullopt);
}

TEST_F(CaTest, BadIpAddressRejected) {
  for (const char* address : {"", "1.2.3", "1.2.3.4.5", "256.1.1.1", "::g", "fe80::1%eth0", "localhost", " 1.2.3.4"}) {
    EXPECT_EQ(rejection(request({"enclave-1.licensing.test"}, {address})), CertificateError::invalid_request) << address;
  }
}

TEST_F(CaTest, NameListChecked) {
  EXPECT_EQ(rejection(request({})), CertificateError::invalid_request);
  EXPECT_EQ(rejection(request({"a.test", "a.test"})), CertificateError::invalid_request);
  EXPECT_EQ(rejection(request({}, {"127.0.0.1", "127.0.0.1"})), CertificateError::invalid_request);
  std::vector<std::string> many;
  for (int i = 0; i < 101; ++i) many.push_back("n" + std::to_string(i) + ".test");
  EXPECT_EQ(rejection(request(many)), CertificateError::invalid_request);
  many.pop_back();
  EXPECT_EQ(rejection(request(many)), std::nullopt);
}

TEST_F(CaTest, LifetimeBoundsChecked) {
  auto certificate_request = request({"enclave-1.licensing.test"});
  for (const auto& [lifetime, accepted] :
       {std::pair{std::chrono::seconds(299), false}, std::pair{std::chrono::seconds(300), true},
        std::pair{std::chrono::seconds(90 * 24h), true}, std::pair{std::chrono::seconds(90 * 24h) + 1s, false},
        std::pair{std::chrono::seconds(-1), false}}) {
    certificate_request.lifetime = lifetime;
    if (accepted) {
      EXPECT_EQ(rejection(certificate_request), std::nullopt) << lifetime.count();
    } else {
      EXPECT_EQ(rejection(certificate_request), CertificateError::invalid_request) << lifetime.count();
    }
  }
}

TEST_F(CaTest, ConcurrentIssuanceGivesDistinctSerials) {
  std::vector<std::thread> threads;
  std::mutex mutex;
  std::set<std::string> serials;
  int failures = 0;
  const auto certificate_request = request({"enclave-1.licensing.test"});
  for (int thread = 0; thread < 4; ++thread) {
    threads.emplace_back([&] {
      for (int i = 0; i < 5; ++i) {
        const auto issued = ca_->issue_server_certificate(certificate_request);
        const std::lock_guard lock(mutex);
        if (issued) {
          serials.insert(issued->serial_hex);
        } else {
          ++failures;
        }
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(failures, 0);
  EXPECT_EQ(serials.size(), 20u);
}

// --- key and CSR generation ---

// --- client certificates ---

TEST_F(CaTest, ClientCertificateHasUserUriAndClientAuthOnly) {
  ClientCertificateRequest request;
  request.csr_pem = generate_key_and_csr("ignored").value().csr_pem;
  request.user_id = "0b6c7d2e-1f4a-4c3b-9d8e-7a6b5c4d3e2f";
  const auto issued = ca_->issue_client_certificate(request);
  ASSERT_TRUE(issued.has_value()) << issued.error().detail;
  EXPECT_EQ(issued->not_after, at_unix(kNow) + 24h);
  const auto leaf = parse(issued->certificate_pem);

  int critical = -1;
  ossl::GeneralNames sans(static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(leaf.get(), NID_subject_alt_name, &critical, nullptr)));
  ASSERT_TRUE(sans);
  ASSERT_EQ(sk_GENERAL_NAME_num(sans.get()), 1);
  const GENERAL_NAME* name = sk_GENERAL_NAME_value(sans.get(), 0);
  ASSERT_EQ(name->type, GEN_URI);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(name->d.uniformResourceIdentifier)),
                        static_cast<std::size_t>(ASN1_STRING_length(name->d.uniformResourceIdentifier))),
            "urn:licensing:user:0b6c7d2e-1f4a-4c3b-9d8e-7a6b5c4d3e2f");

  EXPECT_EQ(X509_get_extended_key_usage(leaf.get()), static_cast<std::uint32_t>(XKU_SSL_CLIENT));
  EXPECT_EQ(X509_check_ca(leaf.get()), 0);
  // The chain verifies for a TLS client and not for a TLS server.
  EXPECT_NE(verify_chain(ca_->root_pem(), ca_->issuing_pem(), issued->certificate_pem, kNow), std::nullopt);
}

TEST_F(CaTest, ClientCertificateRejectsBadInput) {
  ClientCertificateRequest request;
  request.csr_pem = generate_key_and_csr("ignored").value().csr_pem;
  request.user_id = "user/../x";
  auto rejected = ca_->issue_client_certificate(request);
  ASSERT_FALSE(rejected);
  EXPECT_EQ(rejected.error().code, CertificateError::invalid_request);

  request.user_id = "user-1";
  request.csr_pem = "not a CSR";
  rejected = ca_->issue_client_certificate(request);
  ASSERT_FALSE(rejected);
  EXPECT_EQ(rejected.error().code, CertificateError::invalid_csr);

  ossl::PkeyContext context(EVP_PKEY_CTX_new_id(EVP_PKEY_ED25519, nullptr));
  EVP_PKEY* raw = nullptr;
  ASSERT_EQ(EVP_PKEY_keygen_init(context.get()), 1);
  ASSERT_EQ(EVP_PKEY_keygen(context.get(), &raw), 1);
  ossl::Pkey ed25519(raw);
  request.csr_pem = make_csr(ed25519.get(), "ignored", nullptr);
  rejected = ca_->issue_client_certificate(request);
  ASSERT_FALSE(rejected);
  EXPECT_EQ(rejected.error().code, CertificateError::invalid_csr);
}

TEST(GenerateKeyAndCsr, ProducesPkcs8KeyAndSignedCsr) {
  const auto generated = generate_key_and_csr("enclave-1");
  ASSERT_TRUE(generated.has_value()) << generated.error().detail;
  EXPECT_EQ(generated->private_key_pem.rfind("-----BEGIN PRIVATE KEY-----", 0), 0u);

  const auto key = ossl::private_key_from_pem(generated->private_key_pem).value();
  EXPECT_TRUE(ossl::is_p256(key.get()));
  const auto csr = ossl::request_from_pem(generated->csr_pem).value();
  EXPECT_EQ(X509_REQ_verify(csr.get(), key.get()), 1);
  char name[64] = {};
  X509_NAME_get_text_by_NID(X509_REQ_get_subject_name(csr.get()), NID_commonName, name, sizeof(name));
  EXPECT_STREQ(name, "enclave-1");
}

TEST(GenerateKeyAndCsr, BadCommonNameRejected) {
  for (const std::string& name : {std::string(), std::string(65, 'a')}) {
    const auto generated = generate_key_and_csr(name);
    ASSERT_FALSE(generated.has_value());
    EXPECT_EQ(generated.error().code, CertificateError::invalid_request);
  }
}

}  // namespace
TEST(KeyAndCsrTest, CsrRequestsTheGivenNames) {
  auto generated = generate_key_and_csr("enclave.example", {"enclave.example", "public.example.com"});
  ASSERT_TRUE(generated.has_value());
  auto request = ossl::request_from_pem(generated->csr_pem);
  ASSERT_TRUE(request.has_value());
  STACK_OF(X509_EXTENSION)* extensions = X509_REQ_get_extensions(request->get());
  ASSERT_NE(extensions, nullptr);
  ossl::GeneralNames names(static_cast<GENERAL_NAMES*>(X509V3_get_d2i(extensions, NID_subject_alt_name, nullptr, nullptr)));
  sk_X509_EXTENSION_pop_free(extensions, X509_EXTENSION_free);
  ASSERT_TRUE(names);
  std::vector<std::string> dns_names;
  for (int index = 0; index < sk_GENERAL_NAME_num(names.get()); ++index) {
    const GENERAL_NAME* name = sk_GENERAL_NAME_value(names.get(), index);
    ASSERT_EQ(name->type, GEN_DNS);
    dns_names.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(name->d.dNSName)),
                           static_cast<std::size_t>(ASN1_STRING_length(name->d.dNSName)));
  }
  EXPECT_EQ(dns_names, (std::vector<std::string>{"enclave.example", "public.example.com"}));

  EXPECT_FALSE(generate_key_and_csr("x", {"not a name"}).has_value());
}

}  // namespace licensing::crypto
