// Runs the real enclave binary against a CSR endpoint stand-in that signs with a test CA,
// and calls it over mutual TLS.
#include <utility>  // Boost 1.74's asio headers need it first with GCC 12.

#include <gtest/gtest.h>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <map>
#include <mutex>
#include <thread>

#include "common/json.hpp"
#include "crypto/token_keys.hpp"
#include "enclave/config.hpp"
#include "enclave/identity.hpp"
#include "http/server.hpp"
#include "test_pki.hpp"

namespace licensing::enclave {
namespace {

using namespace std::chrono_literals;

crypto::TokenKeysConfig token_keys_config(const std::filesystem::path& directory) {
  crypto::TokenKeysConfig config;
  config.key_directory = directory;
  return config;
}
using SystemClock = std::chrono::system_clock;
namespace fs = std::filesystem;
namespace net = boost::asio;
namespace beast = boost::beast;
namespace beast_http = beast::http;

constexpr auto private_file = fs::perms::owner_read | fs::perms::owner_write;
constexpr std::string_view enclave_id = "0f8fad5b-d9cb-469f-a165-70867728950e";
constexpr std::string_view owner = "7c9e6679-7425-40de-944b-e07fc1f90ae7";
constexpr std::string_view issuer = "https://licensing.test";
constexpr std::string_view bootstrap_credential = "bootstrap-credential-for-test";

// The gateway's POST /v1/enclave-certificates, reduced to what the enclave relies on: a
// single-use bootstrap credential, single-use renewal credentials, and signing by the CA.
class CsrEndpoint {
 public:
  CsrEndpoint(test::TestCa& ca, const fs::path& directory, std::chrono::seconds lifetime) : ca_(ca), lifetime_(lifetime) {
    auto generated = crypto::generate_key_and_csr("127.0.0.1");
    auto issued = ca.authority().issue_server_certificate({generated->csr_pem, {"localhost"}, {"127.0.0.1"}, 24h});
    if (!issued) throw std::runtime_error(issued.error().detail);
    test::write_file(directory / "csr-endpoint.pem", issued->chain_pem, private_file);
    test::write_file(directory / "csr-endpoint.key", generated->private_key_pem, private_file);

    auto router = std::make_shared<http::Router>();
    router->add(beast_http::verb::post, "/v1/enclave-certificates", [this](http::Request& request) -> net::awaitable<http::Response> {
      co_return handle(request);
    });
    http::ServerConfig config;
    config.tls = http::make_server_tls_context((directory / "csr-endpoint.pem").string(), (directory / "csr-endpoint.key").string());
    server_ = std::make_unique<http::Server>(io_, config, router);
    server_->start();
    thread_ = std::thread([this] { io_.run(); });
  }

  ~CsrEndpoint() {
    server_->stop();
    thread_.join();
  }

  std::string url() const { return "https://127.0.0.1:" + std::to_string(server_->port()) + "/v1/enclave-certificates"; }
  int enrollments() const { return enrollments_.load(); }
  int renewals() const { return renewals_.load(); }

 private:
  http::Response handle(const http::Request& request) {
    const std::lock_guard lock(mutex_);
    const std::string authorization(request.headers[beast_http::field::authorization]);
    bool renewal = false;
    if (!bootstrap_used_ && authorization == "Bootstrap " + std::string(bootstrap_credential)) {
      bootstrap_used_ = true;
    } else if (!renewal_credential_.empty() && authorization == "Renewal " + renewal_credential_) {
      renewal = true;
    } else {
      return http::problem(401, "urn:licensing:problem:invalid-credentials", "Unauthorized", "The credential is not valid.");
    }

    auto body = json::parse_strict(request.body, 4);
    if (!body || (*body)["enclave_id"] != enclave_id) return http::problem(400, "urn:licensing:problem:bad-request", "Bad Request", "");
    auto issued = ca_.authority().issue_server_certificate(
        {(*body)["csr_pem"].get<std::string>(), {enclave_dns_name(enclave_id)}, {"127.0.0.1"}, lifetime_});
    if (!issued) return http::problem(400, "urn:licensing:problem:invalid-csr", "Bad Request", issued.error().detail);

    (renewal ? renewals_ : enrollments_).fetch_add(1);
    renewal_credential_ = "renewal-" + std::to_string(enrollments_.load() + renewals_.load());
    http::Response response;
    response.body = nlohmann::json{{"certificate_chain_pem", issued->chain_pem}, {"renewal_credential", renewal_credential_}, {"not_after", 0}}.dump();
    return response;
  }

  test::TestCa& ca_;
  const std::chrono::seconds lifetime_;
  net::io_context io_;
  std::unique_ptr<http::Server> server_;
  std::thread thread_;
  std::mutex mutex_;
  bool bootstrap_used_ = false;     // guarded by mutex_
  std::string renewal_credential_;  // guarded by mutex_
  std::atomic<int> enrollments_{0};
  std::atomic<int> renewals_{0};
};

struct Reply {
  unsigned status = 0;
  std::string body;
  std::string www_authenticate;
};

// One HTTPS connection to the enclave, optionally presenting a client certificate.
class Connection {
 public:
  Connection(std::uint16_t port, const fs::path& ca_bundle, const std::optional<test::ClientCredentials>& client)
      : context_(net::ssl::context::tls_client) {
    context_.load_verify_file(ca_bundle.string());
    context_.set_verify_mode(net::ssl::verify_peer);
    context_.set_verify_callback(net::ssl::host_name_verification("127.0.0.1"));
    if (client) {
      context_.use_certificate_chain(net::buffer(client->certificate_pem));
      context_.use_private_key(net::buffer(client->private_key_pem), net::ssl::context::pem);
    }
    stream_ = std::make_unique<beast::ssl_stream<beast::tcp_stream>>(io_, context_);

    boost::system::error_code ec;
    beast::get_lowest_layer(*stream_).expires_after(5s);
    beast::get_lowest_layer(*stream_).connect(net::ip::tcp::endpoint(net::ip::make_address("127.0.0.1"), port), ec);
    if (!ec) stream_->handshake(net::ssl::stream_base::client, ec);
    connected_ = !ec;
  }

  bool connected() const { return connected_; }

  // Sends one request; nullopt when the connection fails, which is how a TLS 1.3 client
  // learns that the server rejected its certificate.
  std::optional<Reply> send(beast_http::verb method, const std::string& target, const std::string& token = "", const std::string& body = "") {
    if (!connected_) return std::nullopt;
    beast_http::request<beast_http::string_body> request{method, target, 11};
    request.set(beast_http::field::host, "127.0.0.1");
    if (!token.empty()) request.set(beast_http::field::authorization, "Bearer " + token);
    if (method == beast_http::verb::put || method == beast_http::verb::post) {
      request.set(beast_http::field::content_type, "application/octet-stream");
      request.body() = body;
      request.prepare_payload();
    }

    boost::system::error_code ec;
    beast::get_lowest_layer(*stream_).expires_after(5s);
    beast_http::write(*stream_, request, ec);
    beast::flat_buffer buffer;
    beast_http::response<beast_http::string_body> response;
    if (!ec) beast_http::read(*stream_, buffer, response, ec);
    if (ec) return std::nullopt;
    return Reply{response.result_int(), response.body(), std::string(response[beast_http::field::www_authenticate])};
  }

  std::string peer_certificate_der() {
    X509* certificate = SSL_get0_peer_certificate(stream_->native_handle());
    if (certificate == nullptr) return "";
    auto der = crypto::ossl::certificate_to_der(certificate);
    return der ? std::string(der->begin(), der->end()) : "";
  }

 private:
  net::io_context io_;
  net::ssl::context context_;
  std::unique_ptr<beast::ssl_stream<beast::tcp_stream>> stream_;
  bool connected_ = false;
};

std::uint16_t free_port() {
  net::io_context io;
  net::ip::tcp::acceptor acceptor(io, net::ip::tcp::endpoint(net::ip::make_address("127.0.0.1"), 0));
  return acceptor.local_endpoint().port();
}

// The enclave binary as a child process, with its log in a file.
class EnclaveProcess {
 public:
  EnclaveProcess(const std::map<std::string, std::string>& environment, const fs::path& log_file) {
    std::vector<std::string> entries;
    for (const auto& [name, value] : environment) entries.push_back(name + "=" + value);
    std::vector<char*> envp;
    for (auto& entry : entries) envp.push_back(entry.data());
    envp.push_back(nullptr);
    std::string binary = ENCLAVE_BINARY;
    char* argv[] = {binary.data(), nullptr};

    pid_ = ::fork();
    if (pid_ == 0) {
      const int log = ::open(log_file.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
      ::dup2(log, STDERR_FILENO);
      ::execve(binary.c_str(), argv, envp.data());
      ::_exit(127);
    }
  }

  ~EnclaveProcess() {
    if (pid_ > 0 && !exit_code_) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }

  // The exit code once the process has exited, without waiting.
  std::optional<int> poll() {
    if (exit_code_) return exit_code_;
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return exit_code_;
  }

  // Sends SIGTERM and waits up to 20 s; returns the exit code, or nullopt on timeout.
  std::optional<int> terminate() {
    ::kill(pid_, SIGTERM);
    for (int i = 0; i < 200 && !poll(); ++i) std::this_thread::sleep_for(100ms);
    return poll();
  }

 private:
  pid_t pid_ = -1;
  std::optional<int> exit_code_;
};

class RuntimeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fs::create_directory(directory_);
    fs::permissions(directory_, fs::perms::owner_all, fs::perm_options::replace);
    test::write_file(temp_.path() / "bootstrap", bootstrap_credential, private_file);

    auto keys = crypto::TokenKeys::open(token_keys_config(temp_.path() / "keys"), SystemClock::now());
    ASSERT_TRUE(keys.has_value()) << keys.error().detail;
    keys_ = std::move(*keys);
    test::write_file(temp_.path() / "jwks.json", keys_->jwks().dump(), private_file);
    owner_client_ = ca_.issue_client({owner_uri(owner)});
    port_ = free_port();
  }

  void start_csr_endpoint(std::chrono::seconds lifetime = 24h) { csr_ = std::make_unique<CsrEndpoint>(ca_, temp_.path(), lifetime); }

  std::map<std::string, std::string> environment() const {
    return {
        {"LICENSING_ENCLAVE_ID", std::string(enclave_id)},
        {"LICENSING_ENCLAVE_OWNER", std::string(owner)},
        {"LICENSING_ENCLAVE_DIR", directory_.string()},
        {"LICENSING_ENCLAVE_LISTEN", "127.0.0.1:" + std::to_string(port_)},
        {"LICENSING_ENCLAVE_CSR_URL", csr_->url()},
        {"LICENSING_ENCLAVE_CA_BUNDLE", ca_.bundle_file().string()},
        {"LICENSING_ENCLAVE_BOOTSTRAP_FILE", (temp_.path() / "bootstrap").string()},
        {"LICENSING_ENCLAVE_JWKS_FILE", (temp_.path() / "jwks.json").string()},
        {"LICENSING_ENCLAVE_ISSUER", std::string(issuer)},
    };
  }

  // Starts the enclave and waits until GET /healthz returns 200 over mutual TLS.
  std::unique_ptr<EnclaveProcess> start(std::map<std::string, std::string> extra = {}) {
    auto variables = environment();
    for (auto& [name, value] : extra) variables[name] = value;
    auto process = std::make_unique<EnclaveProcess>(variables, temp_.path() / "enclave.log");
    for (int i = 0; i < 200; ++i) {
      if (process->poll()) break;
      Connection connection(port_, ca_.bundle_file(), owner_client_);
      if (auto reply = connection.send(beast_http::verb::get, "/healthz"); reply && reply->status == 200) return process;
      std::this_thread::sleep_for(100ms);
    }
    ADD_FAILURE() << "the enclave did not become ready; its log:\n" << log();
    return process;
  }

  std::string log() const { return crypto::ossl::read_public_file(temp_.path() / "enclave.log", 1 << 20).value_or(""); }

  std::string token(std::string_view audience = enclave_id, std::string_view subject = owner) const {
    const auto now = SystemClock::to_time_t(SystemClock::now());
    auto token = keys_->sign({{"iss", issuer}, {"sub", subject}, {"aud", audience}, {"iat", now}, {"nbf", now},
                              {"exp", now + 600}, {"jti", "jti-" + std::to_string(now)}});
    return token.value_or("");
  }

  std::optional<Reply> call(beast_http::verb method, const std::string& target, const std::string& bearer, const std::string& body = "",
                            const std::optional<test::ClientCredentials>& client = std::nullopt) {
    Connection connection(port_, ca_.bundle_file(), client ? client : owner_client_);
    return connection.send(method, target, bearer, body);
  }

  test::TempDir temp_;
  test::TestCa ca_{temp_.path() / "ca", [] { return SystemClock::now(); }};
  fs::path directory_ = temp_.path() / "enclave";
  std::unique_ptr<crypto::TokenKeys> keys_;
  test::ClientCredentials owner_client_;
  std::unique_ptr<CsrEndpoint> csr_;
  std::uint16_t port_ = 0;
};

TEST_F(RuntimeTest, SecretSurvivesRestart) {
  start_csr_endpoint();
  auto enclave = start();

  const auto stored = call(beast_http::verb::put, "/v1/secrets/db-password", token(), "s3cret value");
  ASSERT_TRUE(stored.has_value());
  EXPECT_EQ(stored->status, 201U);
  const auto read = call(beast_http::verb::get, "/v1/secrets/db-password", token());
  ASSERT_TRUE(read.has_value());
  EXPECT_EQ(read->status, 200U);
  EXPECT_EQ(read->body, "s3cret value");
  EXPECT_FALSE(fs::exists(temp_.path() / "bootstrap"));
  EXPECT_EQ(log().find("s3cret"), std::string::npos);

  ASSERT_EQ(enclave->terminate(), std::optional<int>(0));
  enclave = start();
  const auto after_restart = call(beast_http::verb::get, "/v1/secrets/db-password", token());
  ASSERT_TRUE(after_restart.has_value());
  EXPECT_EQ(after_restart->status, 200U);
  EXPECT_EQ(after_restart->body, "s3cret value");
  EXPECT_EQ(csr_->enrollments(), 1);
  EXPECT_EQ(csr_->renewals(), 0);

  const auto removed = call(beast_http::verb::delete_, "/v1/secrets/db-password", token());
  ASSERT_TRUE(removed.has_value());
  EXPECT_EQ(removed->status, 204U);
  const auto gone = call(beast_http::verb::get, "/v1/secrets/db-password", token());
  ASSERT_TRUE(gone.has_value());
  EXPECT_EQ(gone->status, 404U);
}

TEST_F(RuntimeTest, WhoamiAndPrototypeCallSucceed) {
  start_csr_endpoint();
  auto enclave = start();

  const auto whoami = call(beast_http::verb::get, "/v1/whoami", token());
  ASSERT_TRUE(whoami.has_value());
  EXPECT_EQ(whoami->status, 200U);
  EXPECT_EQ(nlohmann::json::parse(whoami->body), (nlohmann::json{{"enclave_id", enclave_id}, {"owner", owner}}));

  const auto prototype = call(beast_http::verb::post, "/enclave", token(), R"({"username": "alice"})");
  ASSERT_TRUE(prototype.has_value());
  EXPECT_EQ(prototype->status, 200U);
  const auto body = nlohmann::json::parse(prototype->body);
  EXPECT_EQ(body["success"], true);
  EXPECT_EQ(body["enclave_id"], enclave_id);

  const auto invalid_name = call(beast_http::verb::put, "/v1/secrets/..", token(), "x");
  ASSERT_TRUE(invalid_name.has_value());
  EXPECT_EQ(invalid_name->status, 400U);
}

TEST_F(RuntimeTest, TokenForOtherAudienceGets401) {
  start_csr_endpoint();
  auto enclave = start();

  const auto other_audience = call(beast_http::verb::get, "/v1/whoami", token("11111111-2222-4333-8444-555555555555"));
  ASSERT_TRUE(other_audience.has_value());
  EXPECT_EQ(other_audience->status, 401U);
  EXPECT_EQ(other_audience->www_authenticate, R"(Bearer realm="enclave", error="invalid_token")");

  const auto other_subject = call(beast_http::verb::get, "/v1/whoami", token(enclave_id, "another-user"));
  ASSERT_TRUE(other_subject.has_value());
  EXPECT_EQ(other_subject->status, 401U);

  const auto no_token = call(beast_http::verb::get, "/v1/secrets/x", "");
  ASSERT_TRUE(no_token.has_value());
  EXPECT_EQ(no_token->status, 401U);
  EXPECT_EQ(no_token->www_authenticate, R"(Bearer realm="enclave")");
  EXPECT_EQ(log().find(token()), std::string::npos);
}

TEST_F(RuntimeTest, ClientCertificateOfOtherUserIsRejected) {
  start_csr_endpoint();
  auto enclave = start();

  const auto reply = call(beast_http::verb::get, "/v1/whoami", token(), "", ca_.issue_client({owner_uri("another-user")}));
  EXPECT_FALSE(reply.has_value());
  EXPECT_NE(log().find("wrong_user"), std::string::npos);
}

TEST_F(RuntimeTest, ClientCertificateFromOtherCaIsRejected) {
  start_csr_endpoint();
  auto enclave = start();

  const test::TestCa other(temp_.path() / "other-ca", [] { return SystemClock::now(); });
  const auto reply = call(beast_http::verb::get, "/v1/whoami", token(), "", other.issue_client({owner_uri(owner)}));
  EXPECT_FALSE(reply.has_value());
}

TEST_F(RuntimeTest, MissingClientCertificateIsRejected) {
  start_csr_endpoint();
  auto enclave = start();

  Connection connection(port_, ca_.bundle_file(), std::nullopt);
  EXPECT_FALSE(connection.send(beast_http::verb::get, "/v1/whoami", token()).has_value());
}

TEST_F(RuntimeTest, OptionalClientCertificateAllowsNone) {
  start_csr_endpoint();
  auto enclave = start({{"LICENSING_ENCLAVE_REQUIRE_CLIENT_CERT", "false"}});

  Connection connection(port_, ca_.bundle_file(), std::nullopt);
  const auto reply = connection.send(beast_http::verb::get, "/v1/whoami", token());
  ASSERT_TRUE(reply.has_value());
  EXPECT_EQ(reply->status, 200U);

  // A presented certificate is still checked.
  EXPECT_FALSE(call(beast_http::verb::get, "/v1/whoami", token(), "", ca_.issue_client({owner_uri("another-user")})).has_value());
}

TEST_F(RuntimeTest, CertificateRenewsWithoutDroppingConnections) {
  // The CA's shortest lifetime is 5 minutes and it backdates notBefore by 5 minutes, so
  // a fraction of 0.51 puts the renewal about 6 seconds after issuance.
  start_csr_endpoint(5min);
  auto enclave = start({{"LICENSING_ENCLAVE_RENEWAL_FRACTION", "0.51"}});

  Connection before(port_, ca_.bundle_file(), owner_client_);
  ASSERT_TRUE(before.connected());
  const std::string first_certificate = before.peer_certificate_der();
  ASSERT_FALSE(first_certificate.empty());

  for (int i = 0; i < 300 && csr_->renewals() == 0; ++i) std::this_thread::sleep_for(100ms);
  ASSERT_GE(csr_->renewals(), 1) << log();
  for (int i = 0; i < 50 && log().find("certificate_renewed") == std::string::npos; ++i) std::this_thread::sleep_for(100ms);

  Connection after(port_, ca_.bundle_file(), owner_client_);
  ASSERT_TRUE(after.connected());
  EXPECT_NE(after.peer_certificate_der(), first_certificate);
  const auto renewed = after.send(beast_http::verb::get, "/v1/whoami", token());
  ASSERT_TRUE(renewed.has_value());
  EXPECT_EQ(renewed->status, 200U);

  // The connection opened before the renewal still works.
  const auto old = before.send(beast_http::verb::get, "/v1/whoami", token());
  ASSERT_TRUE(old.has_value());
  EXPECT_EQ(old->status, 200U);
  EXPECT_EQ(before.peer_certificate_der(), first_certificate);
}

TEST_F(RuntimeTest, InvalidConfigurationExitsWithTwo) {
  start_csr_endpoint();
  fs::permissions(directory_, fs::perms::owner_all | fs::perms::group_read, fs::perm_options::replace);
  EnclaveProcess process(environment(), temp_.path() / "enclave.log");
  for (int i = 0; i < 100 && !process.poll(); ++i) std::this_thread::sleep_for(100ms);
  EXPECT_EQ(process.poll(), std::optional<int>(2));
  EXPECT_NE(log().find("LICENSING_ENCLAVE_DIR"), std::string::npos) << log();
}

TEST_F(RuntimeTest, RejectedBootstrapExitsWithOne) {
  start_csr_endpoint();
  test::write_file(temp_.path() / "bootstrap", "wrong-credential", private_file);
  EnclaveProcess process(environment(), temp_.path() / "enclave.log");
  for (int i = 0; i < 100 && !process.poll(); ++i) std::this_thread::sleep_for(100ms);
  EXPECT_EQ(process.poll(), std::optional<int>(1));
  EXPECT_NE(log().find("certificate_unavailable"), std::string::npos) << log();
  EXPECT_EQ(log().find("wrong-credential"), std::string::npos);
}

}  // namespace
}  // namespace licensing::enclave
