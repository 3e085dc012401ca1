// The client's own certificate checks and the pinned connection. Certificates are made by
// the openssl command-line tool, and the TLS server is `openssl s_server`, so neither side
// of a test shares code with the client under test.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "client/attestation.hpp"
#include "crypto/openssl.hpp"

namespace {

namespace fs = std::filesystem;
using licensing::client::check_enclave_certificate;
using licensing::client::EnclaveExpectation;

const std::string kEnclaveId = "6f1c2d3e-4a5b-4c6d-8e7f-901234567890";
const std::string kEnclaveName = kEnclaveId + ".enclaves.licensing.internal";

std::string read_text(const fs::path& path) {
  std::ifstream in(path);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

void run(const std::string& command) {
  const int status = std::system((command + " >/dev/null 2>&1").c_str());
  ASSERT_EQ(status, 0) << command;
}

class CertificateCheckTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    directory_ = fs::temp_directory_path() / ("attestation_client_test_" + std::to_string(::getpid()));
    fs::create_directories(directory_);
    make_ca("ca");
    make_ca("other-ca");
    make_leaf("good", "ca", "serverAuth", "DNS:" + kEnclaveName + ",IP:127.0.0.1", false);
    make_leaf("second", "ca", "serverAuth", "DNS:" + kEnclaveName + ",IP:127.0.0.1", false);
    make_leaf("foreign", "other-ca", "serverAuth", "DNS:" + kEnclaveName + ",IP:127.0.0.1", false);
    make_leaf("client-only", "ca", "clientAuth", "DNS:" + kEnclaveName + ",IP:127.0.0.1", false);
    make_leaf("no-eku", "ca", "", "DNS:" + kEnclaveName + ",IP:127.0.0.1", false);
    make_leaf("is-ca", "ca", "serverAuth", "DNS:" + kEnclaveName + ",IP:127.0.0.1", true);
    make_leaf("other-name", "ca", "serverAuth", "DNS:other.enclaves.licensing.internal,IP:127.0.0.1", false);
    make_leaf("other-address", "ca", "serverAuth", "DNS:" + kEnclaveName + ",IP:127.0.0.2", false);
  }
  static void TearDownTestSuite() { fs::remove_all(directory_); }

  static void make_ca(const std::string& name) {
    run("cd " + directory_.string() +
        " && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout " + name + ".key -out " +
        name + ".pem -days 2 -subj /CN=" + name +
        " -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign");
  }

  static void make_leaf(const std::string& name, const std::string& ca, const std::string& usage,
                        const std::string& names, bool is_ca) {
    std::ofstream extensions(directory_ / (name + ".ext"));
    extensions << "basicConstraints=critical," << (is_ca ? "CA:TRUE" : "CA:FALSE") << "\n";
    if (!usage.empty()) extensions << "extendedKeyUsage=" << usage << "\n";
    extensions << "subjectAltName=" << names << "\n";
    extensions.close();
    run("cd " + directory_.string() + " && openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout " +
        name + ".key -out " + name + ".csr -subj /CN=" + name + " && openssl x509 -req -in " + name + ".csr -CA " + ca +
        ".pem -CAkey " + ca + ".key -CAcreateserial -out " + name + ".pem -days 2 -extfile " + name + ".ext");
  }

  static std::vector<std::string> chain(const std::string& name, const std::string& ca = "ca") {
    return {read_text(directory_ / (name + ".pem")), read_text(directory_ / (ca + ".pem"))};
  }

  static std::vector<std::uint8_t> der(const std::string& name) {
    auto certificate = licensing::crypto::ossl::certificate_from_pem(read_text(directory_ / (name + ".pem")));
    return *licensing::crypto::ossl::certificate_to_der(certificate->get());
  }

  static EnclaveExpectation expectation(std::chrono::system_clock::time_point now = std::chrono::system_clock::now()) {
    return {kEnclaveId, "127.0.0.1", {}, now};
  }

  // The name of the failed check, or "" when every check passed.
  static std::string failure(const std::vector<std::string>& certificates, const EnclaveExpectation& expected,
                             const std::string& ca = "ca") {
    for (const auto& check : check_enclave_certificate(certificates, expected, {(directory_ / (ca + ".pem")).string()})) {
      if (!check.passed) return check.name;
    }
    return "";
  }

  static fs::path directory_;
};

fs::path CertificateCheckTest::directory_;

TEST_F(CertificateCheckTest, GoodCertificatePasses) {
  EXPECT_EQ(failure(chain("good"), expectation()), "");
  const auto checks = check_enclave_certificate(chain("good"), expectation(), {(directory_ / "ca.pem").string()});
  EXPECT_EQ(checks.size(), 5u);
}

TEST_F(CertificateCheckTest, ExpiredIsNamed) {
  EXPECT_EQ(failure(chain("good"), expectation(std::chrono::system_clock::now() + std::chrono::hours(24 * 3))),
            "certificate_expired");
}

TEST_F(CertificateCheckTest, NotYetValidIsNamed) {
  EXPECT_EQ(failure(chain("good"), expectation(std::chrono::system_clock::now() - std::chrono::hours(24))),
            "certificate_not_yet_valid");
}

TEST_F(CertificateCheckTest, OtherCaIsUntrusted) {
  EXPECT_EQ(failure(chain("foreign", "other-ca"), expectation()), "certificate_untrusted");
}

TEST_F(CertificateCheckTest, ClientOnlyEkuIsNamed) {
  EXPECT_EQ(failure(chain("client-only"), expectation()), "certificate_eku_missing");
}

TEST_F(CertificateCheckTest, MissingEkuIsNamed) {
  EXPECT_EQ(failure(chain("no-eku"), expectation()), "certificate_eku_missing");
}

TEST_F(CertificateCheckTest, CaCertificateIsNamed) {
  EXPECT_EQ(failure(chain("is-ca"), expectation()), "certificate_is_ca");
}

TEST_F(CertificateCheckTest, OtherEnclaveNameIsNamed) {
  EXPECT_EQ(failure(chain("other-name"), expectation()), "certificate_name_mismatch");
}

TEST_F(CertificateCheckTest, OtherAddressIsNamed) {
  EXPECT_EQ(failure(chain("other-address"), expectation()), "certificate_name_mismatch");
}

TEST_F(CertificateCheckTest, EmptyTrustStoreIsUntrusted) {
  const auto checks = check_enclave_certificate(chain("good"), expectation(), {});
  ASSERT_FALSE(checks.empty());
  EXPECT_FALSE(checks.back().passed);
  EXPECT_EQ(checks.back().name, "certificate_untrusted");
}

TEST_F(CertificateCheckTest, GarbageLeafIsMalformed) {
  EXPECT_EQ(failure({"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"}, expectation()),
            "certificate_malformed");
}

// An `openssl s_server` on a free loopback port that serves one connection, then exits.
class TlsServer {
 public:
  TlsServer(const fs::path& directory, const std::string& certificate, const std::string& chain_file = "") {
    port_ = free_port();
    pid_ = ::fork();
    if (pid_ == 0) {
      ::chdir(directory.c_str());
      const int null_fd = ::open("/dev/null", O_RDWR);
      ::dup2(null_fd, 0);
      ::dup2(null_fd, 1);
      ::dup2(null_fd, 2);
      const std::string accept = "127.0.0.1:" + std::to_string(port_);
      const std::string certificate_file = certificate + ".pem";
      const std::string key_file = certificate + ".key";
      if (chain_file.empty()) {
        ::execlp("openssl", "openssl", "s_server", "-accept", accept.c_str(), "-cert", certificate_file.c_str(), "-key",
                 key_file.c_str(), "-www", "-naccept", "1", static_cast<char*>(nullptr));
      } else {
        ::execlp("openssl", "openssl", "s_server", "-accept", accept.c_str(), "-cert", certificate_file.c_str(), "-key",
                 key_file.c_str(), "-cert_chain", chain_file.c_str(), "-www", "-naccept", "1", static_cast<char*>(nullptr));
      }
      ::_exit(127);
    }
    // Wait (bounded) until the port accepts connections.
    for (int attempt = 0; attempt < 100 && !listening(); ++attempt) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  ~TlsServer() {
    ::kill(pid_, SIGTERM);
    ::waitpid(pid_, nullptr, 0);
  }
  std::string url() const { return "https://127.0.0.1:" + std::to_string(port_) + "/"; }

 private:
  static std::uint16_t free_port() {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address));
    socklen_t length = sizeof(address);
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
    ::close(fd);
    return ntohs(address.sin_port);
  }
  // Probes with /proc/net/tcp rather than a connection, which s_server would count.
  bool listening() const {
    std::ifstream table("/proc/net/tcp");
    std::string line;
    char wanted[16];
    std::snprintf(wanted, sizeof(wanted), ":%04X", port_);
    while (std::getline(table, line)) {
      if (line.find(std::string("0100007F") + wanted) != std::string::npos && line.find(" 0A ") != std::string::npos) {
        return true;
      }
    }
    return false;
  }

  pid_t pid_ = -1;
  std::uint16_t port_ = 0;
};

licensing::client::AttestationReport attested(const std::vector<std::uint8_t>& der) {
  licensing::client::AttestationReport report;
  report.verified = true;
  report.certificate_der = der;
  return report;
}

licensing::client::HttpOptions options_for(const fs::path& directory) {
  licensing::client::HttpOptions options;
  options.ca_bundle_file = (directory / "ca.pem").string();
  options.timeout = std::chrono::seconds(10);
  return options;
}

TEST_F(CertificateCheckTest, PinnedCertificateConnects) {
  TlsServer server(directory_, "good");
  auto response = licensing::client::send_attested({"GET", server.url(), {}, {}, "text/plain"}, attested(der("good")),
                                                   options_for(directory_));
  ASSERT_TRUE(response) << response.error().detail;
  EXPECT_EQ(response->status, 200u);
}

TEST_F(CertificateCheckTest, OtherCertificateOfSameCaRefused) {
  TlsServer server(directory_, "second");
  auto response = licensing::client::send_attested({"GET", server.url(), {}, {}, "text/plain"}, attested(der("good")),
                                                   options_for(directory_));
  ASSERT_FALSE(response);
  EXPECT_EQ(response.error().code, licensing::client::HttpError::certificate_mismatch);
}

TEST_F(CertificateCheckTest, AttestedCertificateAppendedToChainRefused) {
  // The server's leaf is another certificate; the attested one only follows it in the chain.
  TlsServer server(directory_, "second", "good.pem");
  auto response = licensing::client::send_attested({"GET", server.url(), {}, {}, "text/plain"}, attested(der("good")),
                                                   options_for(directory_));
  ASSERT_FALSE(response);
  EXPECT_EQ(response.error().code, licensing::client::HttpError::certificate_mismatch);
}

TEST_F(CertificateCheckTest, UnverifiedReportSendsNothing) {
  auto report = attested(der("good"));
  report.verified = false;
  auto response = licensing::client::send_attested({"GET", "https://127.0.0.1:1/", {}, {}, "text/plain"}, report,
                                                   options_for(directory_));
  ASSERT_FALSE(response);
  EXPECT_EQ(response.error().code, licensing::client::HttpError::certificate_mismatch);
}

}  // namespace
