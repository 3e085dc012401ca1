// Test fixtures for the enclave tests: temporary directories, a licensing CA on disk, and
// client certificates issued by its issuing CA (the built-in CA only issues server
// certificates, so tests sign client certificates with the OpenSSL API).
#pragma once

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>

#include "crypto/ca.hpp"
#include "crypto/openssl.hpp"

namespace licensing::enclave::test {

// A directory under the system temporary directory (mode 0700), removed on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

struct ClientCredentials {
  std::string certificate_pem;
  std::string private_key_pem;
};

// A CA in `directory`: the built-in CertificateAuthority, its root in a bundle file, and
// its issuing key for client certificates.
class TestCa {
 public:
  TestCa(const std::filesystem::path& directory, crypto::CertificateAuthority::TimeSource now);
  crypto::CertificateAuthority& authority() { return *authority_; }
  const std::filesystem::path& bundle_file() const { return bundle_file_; }

  // A client certificate (clientAuth, CA:FALSE) with one subjectAltName URI per entry of
  // `uris`, valid from 5 minutes before now for one hour.
  ClientCredentials issue_client(const std::vector<std::string>& uris) const;

 private:
  std::filesystem::path directory_;
  crypto::CertificateAuthority::TimeSource now_;
  std::unique_ptr<crypto::CertificateAuthority> authority_;
  std::filesystem::path bundle_file_;
};

// Parses the first certificate of a PEM text; fails the test when it does not parse.
crypto::ossl::X509Cert parse_certificate(const std::string& pem);

void write_file(const std::filesystem::path& path, std::string_view text, std::filesystem::perms mode);

}  // namespace licensing::enclave::test
