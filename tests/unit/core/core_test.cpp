// EnclaveManager against real parts: a SQLite store, the built-in CA, ES256 keys, the
// local provisioner running a stand-in enclave program, and a small HTTP endpoint that
// plays the gateway's POST /v1/enclave-certificates. The crash cases run licensing-core
// itself as a child process and kill it with SIGKILL.
#include <arpa/inet.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "core/bootstrap.hpp"
#include "core/enclave_service.hpp"
#include "core/local_provisioner.hpp"
#include "crypto/ca.hpp"
#include "crypto/openssl.hpp"
#include "crypto/token_keys.hpp"
#include "licensing.grpc.pb.h"
#include "store/store.hpp"

namespace licensing::core {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using store::EnclaveState;

fs::path make_temp_directory() {
  std::random_device random;
  const fs::path path = fs::temp_directory_path() / ("core_test_" + std::to_string(random()));
  fs::create_directories(path);
  fs::permissions(path, fs::perms::owner_all, fs::perm_options::replace);
  return path;
}

// A plain-HTTP endpoint on 127.0.0.1 that accepts POST /v1/enclave-certificates and
// passes {enclave_id, csr_pem} and the Bootstrap credential to `sign`.
class FakeGateway {
 public:
  using Sign = std::function<std::pair<int, std::string>(const std::string& id, const std::string& credential,
                                                         const std::string& csr)>;
  explicit FakeGateway(Sign sign) : sign_(std::move(sign)) {
    listener_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(listener_, reinterpret_cast<sockaddr*>(&address), sizeof(address));
    ::listen(listener_, 16);
    socklen_t length = sizeof(address);
    ::getsockname(listener_, reinterpret_cast<sockaddr*>(&address), &length);
    port_ = ntohs(address.sin_port);
    thread_ = std::thread([this] { serve(); });
  }
  ~FakeGateway() {
    stopping_ = true;
    ::shutdown(listener_, SHUT_RDWR);
    ::close(listener_);
    thread_.join();
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/v1/enclave-certificates"; }

 private:
  void serve() {
    while (!stopping_) {
      const int client = ::accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
      if (client < 0) return;
      timeval timeout{5, 0};
      ::setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
      handle(client);
      ::close(client);
    }
  }

  void handle(int client) {
    std::string data;
    char buffer[4096];
    std::size_t header_end = std::string::npos;
    std::size_t content_length = 0;
    for (int reads = 0; reads < 100; ++reads) {
      const ssize_t count = ::recv(client, buffer, sizeof(buffer), 0);
      if (count <= 0) return;
      data.append(buffer, static_cast<std::size_t>(count));
      if (header_end == std::string::npos && (header_end = data.find("\r\n\r\n")) != std::string::npos) {
        std::string lower = data.substr(0, header_end);
        for (auto& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        const auto field = lower.find("content-length:");
        if (field != std::string::npos) content_length = std::stoul(lower.substr(field + 15));
      }
      if (header_end != std::string::npos && data.size() >= header_end + 4 + content_length) break;
    }
    if (header_end == std::string::npos) return;

    std::string credential;
    const auto authorization = data.find("Bootstrap ");
    if (authorization != std::string::npos && authorization < header_end) {
      credential = data.substr(authorization + 10, data.find("\r\n", authorization) - authorization - 10);
    }
    const auto body = nlohmann::json::parse(data.substr(header_end + 4), nullptr, false);
    auto [status, reply] = body.is_object() ? sign_(body.value("enclave_id", ""), credential, body.value("csr_pem", ""))
                                            : std::pair<int, std::string>{400, "{}"};
    const std::string response = "HTTP/1.1 " + std::to_string(status) +
                                 " X\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: " +
                                 std::to_string(reply.size()) + "\r\n\r\n" + reply;
    ::send(client, response.data(), response.size(), MSG_NOSIGNAL);
  }

  Sign sign_;
  int listener_ = -1;
  std::uint16_t port_ = 0;
  std::atomic<bool> stopping_{false};
  std::thread thread_;
};

std::pair<int, std::string> to_reply(const Result<licensing::v1::SignEnclaveCsrResponse, EnclaveError>& result) {
  if (!result) return {result.error().code == EnclaveError::unauthenticated ? 401 : 400, "{}"};
  return {200, nlohmann::json{{"certificate_chain_pem", result->certificate_chain_pem()},
                              {"renewal_credential", result->renewal_credential()},
                              {"not_after", result->not_after()}}
                   .dump()};
}

// Records every certificate the manager reports.
class CountingObserver final : public CertificateObserver {
 public:
  Result<void, MeasurementError> on_enclave_certificate(const IssuedEnclaveCertificate& issued) override {
    std::lock_guard lock(mutex_);
    seen_.push_back({std::string(issued.enclave_id), std::string(issued.owner_id), issued.der.size()});
    return {};
  }
  std::size_t count() {
    std::lock_guard lock(mutex_);
    return seen_.size();
  }

 private:
  struct Seen {
    std::string enclave_id;
    std::string owner_id;
    std::size_t der_bytes;
  };
  std::mutex mutex_;
  std::vector<Seen> seen_;
};

class EnclaveManagerTest : public testing::Test {
 protected:
  void SetUp() override {
    directory_ = make_temp_directory();
    auto opened = store::open_store("sqlite://" + (directory_ / "licensing.db").string());
    ASSERT_TRUE(opened) << opened.error().detail;
    store_ = std::move(*opened);
    ASSERT_TRUE(store_->migrate());

    auto authority = crypto::CertificateAuthority::open(directory_ / "ca", "Licensing Test");
    ASSERT_TRUE(authority) << authority.error().detail;
    authority_ = std::move(*authority);
    crypto::TokenKeysConfig key_config;
    key_config.key_directory = directory_ / "keys";
    auto keys = crypto::TokenKeys::open(std::move(key_config), std::chrono::system_clock::now());
    ASSERT_TRUE(keys);
    keys_ = std::make_unique<KeyHolder>(std::shared_ptr<crypto::TokenKeys>(std::move(*keys)));

    provisioner_ = std::make_unique<LocalProvisioner>(
        LocalProvisionerConfig{FAKE_ENCLAVE_PATH, directory_ / "enclaves", std::chrono::milliseconds(3000)});
    gateway_ = std::make_unique<FakeGateway>([this](const std::string& id, const std::string& credential,
                                                    const std::string& csr) {
      return to_reply(manager_->sign_csr(id, credential, csr));
    });
    policy_.csr_url = gateway_->url();
    policy_.ca_root_file = directory_ / "ca" / "root.pem";
    policy_.ports = {ports_first_, static_cast<std::uint16_t>(ports_first_ + 9)};
    policy_.monitor_interval = 200ms;
    policy_.ready_deadline = 20s;
  }

  void make_manager() {
    manager_ = std::make_unique<EnclaveManager>(*store_, *provisioner_, *authority_, *keys_, TokenPolicy{}, policy_,
                                                observer_);
    manager_->start();
  }

  void TearDown() override {
    if (manager_) manager_->stop();
    if (provisioner_) {
      for (const auto& id : provisioner_->running_instances()) static_cast<void>(provisioner_->stop(id));
    }
    gateway_.reset();
    fs::remove_all(directory_);
  }

  // Polls until the enclave leaves `starting`, for at most 25 s.
  store::Enclave wait_settled(const std::string& owner, const std::string& id) {
    store::Enclave enclave;
    for (int attempt = 0; attempt < 125; ++attempt) {
      auto found = manager_->get(owner, id);
      if (found) enclave = *found;
      if (found && found->state != EnclaveState::starting && found->state != EnclaveState::requested) break;
      std::this_thread::sleep_for(200ms);
    }
    return enclave;
  }

  fs::path directory_;
  std::uint16_t ports_first_ = static_cast<std::uint16_t>(21000 + (::getpid() % 50) * 10);
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<crypto::CertificateAuthority> authority_;
  std::unique_ptr<KeyHolder> keys_;
  std::unique_ptr<LocalProvisioner> provisioner_;
  std::unique_ptr<FakeGateway> gateway_;
  CountingObserver observer_;
  EnclavePolicy policy_;
  std::unique_ptr<EnclaveManager> manager_;
};

TEST_F(EnclaveManagerTest, ProvisionReachesReady) {
  make_manager();
  auto created = manager_->provision("alice", "");
  ASSERT_TRUE(created) << created.error().detail;
  EXPECT_EQ(created->state, EnclaveState::starting);
  EXPECT_TRUE(is_uuid(created->id));
  EXPECT_EQ(created->endpoint, "https://127.0.0.1:" + std::to_string(created->port));

  const auto settled = wait_settled("alice", created->id);
  EXPECT_EQ(settled.state, EnclaveState::ready) << settled.failure_reason;
  EXPECT_TRUE(settled.certificate_not_after.has_value());
  EXPECT_EQ(observer_.count(), 1u);

  // The private directory is named by the id and closed to others; the credential is gone.
  const fs::path enclave_directory = directory_ / "enclaves" / created->id;
  EXPECT_EQ(fs::status(enclave_directory).permissions(), fs::perms::owner_all);
  EXPECT_FALSE(fs::exists(enclave_directory / "bootstrap"));
  EXPECT_EQ(provisioner_->find_processes(created->id).size(), 1u);
}

TEST_F(EnclaveManagerTest, EnclaveTokenNamesEnclaveAndOwner) {
  make_manager();
  auto created = manager_->provision("alice", "");
  ASSERT_TRUE(created);
  auto early = manager_->mint_token("alice", created->id, "session-1");
  ASSERT_FALSE(early);
  EXPECT_EQ(early.error().code, EnclaveError::not_ready);
  ASSERT_EQ(wait_settled("alice", created->id).state, EnclaveState::ready);

  auto token = manager_->mint_token("alice", created->id, "session-1");
  ASSERT_TRUE(token) << token.error().detail;
  crypto::VerifyOptions options;
  options.issuer = TokenPolicy{}.issuer;
  options.audience = created->id;
  options.now = std::chrono::system_clock::now();
  auto claims = crypto::verify_with_jwks(token->access_token(), keys_->get()->jwks(), options);
  ASSERT_TRUE(claims);
  EXPECT_EQ((*claims)["sub"], "alice");
  EXPECT_EQ((*claims)["sid"], "session-1");

  auto other_owner = manager_->mint_token("bob", created->id, "session-1");
  ASSERT_FALSE(other_owner);
  EXPECT_EQ(other_owner.error().code, EnclaveError::not_found);
}

TEST_F(EnclaveManagerTest, SameIdempotencyKeyReturnsSameEnclave) {
  policy_.quota = 3;
  make_manager();
  auto first = manager_->provision("alice", "key-1");
  auto second = manager_->provision("alice", "key-1");
  ASSERT_TRUE(first);
  ASSERT_TRUE(second);
  EXPECT_EQ(first->id, second->id);
  auto listed = manager_->list("alice");
  ASSERT_TRUE(listed);
  EXPECT_EQ(listed->size(), 1u);
}

TEST_F(EnclaveManagerTest, QuotaReachedFailedPrecondition) {
  make_manager();
  ASSERT_TRUE(manager_->provision("alice", ""));
  auto second = manager_->provision("alice", "");
  ASSERT_FALSE(second);
  EXPECT_EQ(second.error().code, EnclaveError::quota_exceeded);
  EXPECT_EQ(to_status(second.error()).error_code(), grpc::StatusCode::FAILED_PRECONDITION);
}

TEST_F(EnclaveManagerTest, OtherOwnerAndUnknownIdAreNotFound) {
  make_manager();
  auto created = manager_->provision("alice", "");
  ASSERT_TRUE(created);
  auto other = manager_->get("bob", created->id);
  auto unknown = manager_->get("alice", random_uuid());
  ASSERT_FALSE(other);
  ASSERT_FALSE(unknown);
  EXPECT_EQ(other.error().code, EnclaveError::not_found);
  EXPECT_EQ(unknown.error().code, EnclaveError::not_found);
  EXPECT_EQ(other.error().detail, unknown.error().detail);

  auto deleted_by_other = manager_->remove("bob", created->id);
  ASSERT_FALSE(deleted_by_other);
  EXPECT_EQ(deleted_by_other.error().code, EnclaveError::not_found);
}

TEST_F(EnclaveManagerTest, MalformedIdInvalidArgument) {
  make_manager();
  for (const std::string id : {"", "not-a-uuid", "../../etc", "0B6C7D2E-1F4A-4C3B-9D8E-7A6B5C4D3E2F"}) {
    auto found = manager_->get("alice", id);
    ASSERT_FALSE(found) << id;
    EXPECT_EQ(found.error().code, EnclaveError::invalid_argument) << id;
    EXPECT_EQ(to_status(found.error()).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  }
}

TEST_F(EnclaveManagerTest, DeleteTwiceEndsDeleted) {
  make_manager();
  auto created = manager_->provision("alice", "");
  ASSERT_TRUE(created);
  auto deleted = manager_->remove("alice", created->id);
  ASSERT_TRUE(deleted) << deleted.error().detail;
  EXPECT_EQ(deleted->state, EnclaveState::deleted);
  EXPECT_TRUE(provisioner_->find_processes(created->id).empty());
  EXPECT_FALSE(fs::exists(directory_ / "enclaves" / created->id));

  auto again = manager_->remove("alice", created->id);
  ASSERT_TRUE(again);
  EXPECT_EQ(again->state, EnclaveState::deleted);
  auto listed = manager_->list("alice");
  ASSERT_TRUE(listed);
  EXPECT_TRUE(listed->empty());
  // The quota is free again.
  EXPECT_TRUE(manager_->provision("alice", ""));
}

TEST_F(EnclaveManagerTest, PortRangeExhaustedLeavesNoRecord) {
  policy_.quota = 5;
  policy_.ports = {ports_first_, ports_first_};
  make_manager();
  ASSERT_TRUE(manager_->provision("alice", ""));
  auto second = manager_->provision("bob", "");
  ASSERT_FALSE(second);
  EXPECT_EQ(second.error().code, EnclaveError::no_free_port);
  EXPECT_EQ(to_status(second.error()).error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  auto all = store_->list_all_enclaves();
  ASSERT_TRUE(all);
  EXPECT_EQ(all->size(), 1u);
}

// A record and a bootstrap credential written directly, without an instance.
class CredentialTest : public EnclaveManagerTest {
 protected:
  std::string insert_enclave(EnclaveState target) {
    const std::string id = random_uuid();
    const auto now = std::chrono::system_clock::now();
    store::Enclave record;
    record.id = id;
    record.owner_id = "alice";
    record.created_at = now;
    record.updated_at = now;
    EXPECT_TRUE(store_->insert_enclave(record, 10, {40000, 40010}));
    if (target != EnclaveState::requested) {
      EXPECT_TRUE(store_->transition_enclave(id, EnclaveState::requested, target, {}, now));
    }
    return id;
  }
  std::string add_credential(const std::string& id, std::chrono::seconds lifetime) {
    NewCredential credential = make_credential();
    const auto now = std::chrono::system_clock::now();
    EXPECT_TRUE(store_->insert_enclave_credential(
        {credential.hash_hex, id, store::CredentialKind::bootstrap, now - 1s, now + lifetime}));
    return std::string(credential.credential.text());
  }
  std::string csr() { return crypto::generate_key_and_csr("enclave").value().csr_pem; }
};

TEST_F(CredentialTest, BootstrapCredentialWorksOnce) {
  manager_ = std::make_unique<EnclaveManager>(*store_, *provisioner_, *authority_, *keys_, TokenPolicy{}, policy_,
                                              observer_);
  const std::string id = insert_enclave(EnclaveState::starting);
  const std::string credential = add_credential(id, 600s);

  auto first = manager_->sign_csr(id, credential, csr());
  ASSERT_TRUE(first) << first.error().detail;
  EXPECT_FALSE(first->renewal_credential().empty());
  auto leaf = crypto::ossl::certificate_from_pem(first->certificate_chain_pem()).value();
  EXPECT_EQ(X509_check_host(leaf.get(), (id + ".enclaves.licensing.internal").c_str(), 0, 0, nullptr), 1);
  EXPECT_EQ(X509_check_ip_asc(leaf.get(), "127.0.0.1", 0), 1);

  auto second = manager_->sign_csr(id, credential, csr());
  ASSERT_FALSE(second);
  EXPECT_EQ(second.error().code, EnclaveError::unauthenticated);
  EXPECT_EQ(to_status(second.error()).error_code(), grpc::StatusCode::UNAUTHENTICATED);

  // The renewal credential works once, for the same enclave only.
  const std::string other = insert_enclave(EnclaveState::starting);
  auto stolen = manager_->sign_csr(other, first->renewal_credential(), csr());
  ASSERT_FALSE(stolen);
  EXPECT_EQ(stolen.error().code, EnclaveError::unauthenticated);
  auto renewed = manager_->sign_csr(id, first->renewal_credential(), csr());
  ASSERT_TRUE(renewed) << renewed.error().detail;
  EXPECT_EQ(observer_.count(), 2u);
}

TEST_F(CredentialTest, ExpiredCredentialUnauthenticated) {
  manager_ = std::make_unique<EnclaveManager>(*store_, *provisioner_, *authority_, *keys_, TokenPolicy{}, policy_,
                                              observer_);
  const std::string id = insert_enclave(EnclaveState::starting);
  const std::string credential = add_credential(id, -1s);
  auto expired = manager_->sign_csr(id, credential, csr());
  ASSERT_FALSE(expired);
  EXPECT_EQ(expired.error().code, EnclaveError::unauthenticated);
}

TEST_F(CredentialTest, BadCsrRejectedBeforeCredentialUsed) {
  manager_ = std::make_unique<EnclaveManager>(*store_, *provisioner_, *authority_, *keys_, TokenPolicy{}, policy_,
                                              observer_);
  const std::string id = insert_enclave(EnclaveState::starting);
  const std::string credential = add_credential(id, 600s);
  auto bad = manager_->sign_csr(id, credential, "not a CSR");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, EnclaveError::invalid_argument);
  EXPECT_TRUE(manager_->sign_csr(id, credential, csr()));
}

TEST_F(CredentialTest, ClientCertificateForOwner) {
  manager_ = std::make_unique<EnclaveManager>(*store_, *provisioner_, *authority_, *keys_, TokenPolicy{}, policy_,
                                              observer_);
  auto issued = manager_->issue_client_certificate("alice", csr());
  ASSERT_TRUE(issued) << issued.error().detail;
  auto leaf = crypto::ossl::certificate_from_pem(issued->certificate_chain_pem()).value();
  EXPECT_EQ(X509_get_extended_key_usage(leaf.get()), static_cast<std::uint32_t>(XKU_SSL_CLIENT));
  auto bad = manager_->issue_client_certificate("alice", "junk");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, EnclaveError::invalid_argument);
}

// --- licensing-core as a child process, killed with SIGKILL ---

class CoreProcessTest : public testing::Test {
 protected:
  void SetUp() override {
    directory_ = make_temp_directory();
    ports_first_ = static_cast<std::uint16_t>(22000 + (::getpid() % 50) * 10);
    gateway_ = std::make_unique<FakeGateway>([this](const std::string& id, const std::string& credential,
                                                    const std::string& csr) {
      licensing::v1::SignEnclaveCsrRequest request;
      request.set_enclave_id(id);
      request.set_credential(credential);
      request.set_csr_pem(csr);
      licensing::v1::SignEnclaveCsrResponse response;
      grpc::ClientContext context;
      context.set_deadline(std::chrono::system_clock::now() + 10s);
      const auto status = stub()->SignEnclaveCsr(&context, request, &response);
      if (!status.ok()) return std::pair<int, std::string>{401, "{}"};
      return std::pair<int, std::string>{
          200, nlohmann::json{{"certificate_chain_pem", response.certificate_chain_pem()}}.dump()};
    });
  }

  void TearDown() override {
    stop_core(SIGTERM);
    LocalProvisioner cleanup({FAKE_ENCLAVE_PATH, directory_ / "data" / "enclaves", 3000ms});
    for (const auto& id : cleanup.running_instances()) static_cast<void>(cleanup.stop(id));
    gateway_.reset();
    fs::remove_all(directory_);
  }

  void start_core() {
    const std::string data = (directory_ / "data").string();
    const std::string database = "sqlite://" + (directory_ / "licensing.db").string();
    const std::string range = std::to_string(ports_first_) + "-" + std::to_string(ports_first_ + 9);
    const std::string csr_url = gateway_->url();
    core_pid_ = ::fork();
    if (core_pid_ == 0) {
      ::execl(LICENSING_CORE_PATH, LICENSING_CORE_PATH, "--data-dir", data.c_str(), "--database", database.c_str(),
              "--enclave-binary", FAKE_ENCLAVE_PATH, "--enclave-port-range", range.c_str(), "--csr-url",
              csr_url.c_str(), "--log-level", "warn", static_cast<char*>(nullptr));
      ::_exit(127);
    }
    channel_.reset();
    for (int attempt = 0; attempt < 100 && !fs::exists(directory_ / "data" / "core.sock"); ++attempt) {
      std::this_thread::sleep_for(100ms);
    }
  }

  void stop_core(int signal) {
    if (core_pid_ <= 0) return;
    ::kill(core_pid_, signal);
    int status = 0;
    ::waitpid(core_pid_, &status, 0);
    core_pid_ = -1;
    fs::remove(directory_ / "data" / "core.sock");
  }

  std::unique_ptr<licensing::v1::EnclaveService::Stub> stub() {
    auto channel = grpc::CreateChannel("unix:" + (directory_ / "data" / "core.sock").string(),
                                       grpc::InsecureChannelCredentials());
    return licensing::v1::EnclaveService::NewStub(channel);
  }

  licensing::v1::Enclave provision(const std::string& owner) {
    licensing::v1::ProvisionEnclaveRequest request;
    request.set_owner_id(owner);
    licensing::v1::Enclave response;
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + 20s);
    const auto status = stub()->ProvisionEnclave(&context, request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response;
  }

  // Polls GetEnclave until the state is not starting, for at most 25 s.
  std::string wait_settled(const std::string& owner, const std::string& id) {
    std::string state;
    for (int attempt = 0; attempt < 125; ++attempt) {
      licensing::v1::GetEnclaveRequest request;
      request.set_owner_id(owner);
      request.set_enclave_id(id);
      licensing::v1::Enclave response;
      grpc::ClientContext context;
      context.set_deadline(std::chrono::system_clock::now() + 5s);
      if (stub()->GetEnclave(&context, request, &response).ok()) state = response.state();
      if (!state.empty() && state != "starting" && state != "requested") break;
      std::this_thread::sleep_for(200ms);
    }
    return state;
  }

  std::size_t process_count(const std::string& id) {
    LocalProvisioner scanner({FAKE_ENCLAVE_PATH, directory_ / "data" / "enclaves", 3000ms});
    return scanner.find_processes(id).size();
  }

  fs::path directory_;
  std::uint16_t ports_first_ = 0;
  pid_t core_pid_ = -1;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<FakeGateway> gateway_;
};

TEST_F(CoreProcessTest, KillAfterProvisionAdoptsInstance) {
  start_core();
  const auto created = provision("alice");
  ASSERT_FALSE(created.id().empty());
  stop_core(SIGKILL);

  start_core();
  EXPECT_EQ(wait_settled("alice", created.id()), "ready");
  EXPECT_EQ(process_count(created.id()), 1u);
}

TEST_F(CoreProcessTest, KillWhileReadyKeepsOneInstance) {
  start_core();
  const auto created = provision("alice");
  ASSERT_EQ(wait_settled("alice", created.id()), "ready");
  stop_core(SIGKILL);
  EXPECT_EQ(process_count(created.id()), 1u);

  start_core();
  std::this_thread::sleep_for(2s);
  EXPECT_EQ(wait_settled("alice", created.id()), "ready");
  EXPECT_EQ(process_count(created.id()), 1u);
}

TEST_F(CoreProcessTest, InstanceWithoutLiveRecordStoppedAtStart) {
  start_core();
  const auto created = provision("alice");
  ASSERT_EQ(wait_settled("alice", created.id()), "ready");
  stop_core(SIGKILL);

  // While the core is down, the record ends without the core's help.
  auto opened = store::open_store("sqlite://" + (directory_ / "licensing.db").string());
  ASSERT_TRUE(opened);
  ASSERT_TRUE((*opened)->transition_enclave(created.id(), EnclaveState::ready, EnclaveState::failed,
                                            {.failure_reason = "test"}, std::chrono::system_clock::now()));
  ASSERT_EQ(process_count(created.id()), 1u);

  start_core();
  EXPECT_EQ(process_count(created.id()), 0u);
}

TEST_F(CoreProcessTest, DeadInstanceRestarted) {
  start_core();
  const auto created = provision("alice");
  ASSERT_EQ(wait_settled("alice", created.id()), "ready");
  LocalProvisioner scanner({FAKE_ENCLAVE_PATH, directory_ / "data" / "enclaves", 3000ms});
  const auto pids = scanner.find_processes(created.id());
  ASSERT_EQ(pids.size(), 1u);
  ::kill(pids[0], SIGKILL);

  // The monitor restarts it with its existing certificate and it becomes ready again.
  std::vector<pid_t> restarted;
  for (int attempt = 0; attempt < 100; ++attempt) {
    std::this_thread::sleep_for(100ms);
    restarted = scanner.find_processes(created.id());
    if (!restarted.empty() && restarted[0] != pids[0]) break;
  }
  ASSERT_EQ(restarted.size(), 1u);
  EXPECT_NE(restarted[0], pids[0]);
  EXPECT_EQ(wait_settled("alice", created.id()), "ready");
}

}  // namespace
}  // namespace licensing::core
