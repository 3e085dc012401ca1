// The provisioner contract, run against LocalProvisioner (with the fake enclave program)
// and KubernetesProvisioner (against simulator.py on 127.0.0.1), then the Kubernetes
// backend's own cases: retries, watches that drop or expire, cert-manager signing and its
// timeout, names and labels, and kubeconfig parsing.
//
// Every simulator's request log is written to $K8S_REQUEST_LOG_DIR (when set), where
// role_check.py and the schema check read what the provisioner sent.
#include <CLI/CLI.hpp>
#include <gtest/gtest.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "client/https_client.hpp"
#include "core/bootstrap.hpp"
#include "core/enclave_service.hpp"
#include "core/kubernetes/backend.hpp"
#include "core/kubernetes/cert_manager_issuer.hpp"
#include "core/kubernetes/client.hpp"
#include "core/kubernetes/provisioner.hpp"
#include "core/kubernetes/wait.hpp"
#include "core/local_provisioner.hpp"
#include "crypto/ca.hpp"
#include "crypto/openssl.hpp"
#include "crypto/token_keys.hpp"
#include "store/store.hpp"

namespace {

namespace fs = std::filesystem;
namespace k8s = licensing::core::kubernetes;
using licensing::core::InstanceConfig;
using licensing::core::Provisioner;
using nlohmann::json;
using namespace std::chrono_literals;

const std::string kNamespace = "licensing-enclaves";

fs::path make_temp_directory() {
  std::random_device random;
  const fs::path directory = fs::temp_directory_path() / ("k8s_provisioner_test_" + std::to_string(random()));
  fs::create_directories(directory);
  fs::permissions(directory, fs::perms::owner_all, fs::perm_options::replace);
  return directory;
}

std::string read_text(const fs::path& path) {
  std::ifstream input(path);
  std::ostringstream text;
  text << input.rdbuf();
  return text.str();
}

void write_text(const fs::path& path, const std::string& text) {
  std::ofstream output(path, std::ios::trunc);
  output << text;
}

std::string current_test_name() {
  const auto* info = testing::UnitTest::GetInstance()->current_test_info();
  std::string name = std::string(info->test_suite_name()) + "." + info->name();
  for (char& c : name) {
    if (c == '/') c = '_';
  }
  return name;
}

// A simulator process with its own directory, CA and token. Stopped with SIGTERM.
class Simulator {
 public:
  explicit Simulator(std::vector<std::string> extra_arguments = {}) : directory_(make_temp_directory()) {
    const char* log_directory = std::getenv("K8S_REQUEST_LOG_DIR");
    log_ = log_directory != nullptr ? fs::path(log_directory) / (current_test_name() + ".jsonl") : directory_ / "requests.jsonl";
    fs::remove(log_);
    std::vector<std::string> arguments = {"/usr/bin/python3", SIMULATOR_PATH, "--directory", directory_.string(),
                                          "--log", log_.string()};
    arguments.insert(arguments.end(), extra_arguments.begin(), extra_arguments.end());
    pid_ = ::fork();
    if (pid_ == 0) {
      // The simulator ends with this test process, even when the test crashes.
      ::prctl(PR_SET_PDEATHSIG, SIGTERM);
      std::vector<char*> argv;
      for (auto& argument : arguments) argv.push_back(argument.data());
      argv.push_back(nullptr);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    for (int attempt = 0; attempt < 200 && !fs::exists(directory_ / "port"); ++attempt) std::this_thread::sleep_for(50ms);
    port_ = read_text(directory_ / "port");
  }
  ~Simulator() {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      ::waitpid(pid_, nullptr, 0);
    }
    fs::remove_all(directory_);
  }
  Simulator(const Simulator&) = delete;
  Simulator& operator=(const Simulator&) = delete;

  bool ready() const { return !port_.empty(); }
  const fs::path& directory() const { return directory_; }

  k8s::ClusterConfig cluster_config() const { return k8s::load_kubeconfig(directory_ / "kubeconfig").value(); }

  std::shared_ptr<k8s::Client> client() const {
    return std::make_shared<k8s::Client>(cluster_config(), 5s, k8s::RetryPolicy{5, 50ms, 400ms});
  }

  json control(const std::string& method, const std::string& path, const json& body = nullptr) const {
    licensing::client::HttpRequest request;
    request.method = method;
    request.url = "https://127.0.0.1:" + port_ + path;
    if (!body.is_null()) request.body = body.dump();
    licensing::client::HttpOptions options;
    options.ca_bundle_file = (directory_ / "ca.pem").string();
    options.timeout = 5s;
    auto response = licensing::client::send(request, options);
    if (!response) return nullptr;
    return json::parse(response->body, nullptr, false);
  }

  void set_faults(const json& faults) const { control("POST", "/_sim/faults", faults); }

  // Every stored object, each with "_resource" (pods, configmaps, ...).
  std::vector<json> objects() const {
    std::vector<json> result;
    for (const auto& item : control("GET", "/_sim/objects").value("items", json::array())) result.push_back(item);
    return result;
  }

  std::vector<json> objects_of(const std::string& enclave_id) const {
    std::vector<json> result;
    for (const auto& object : objects()) {
      const auto labels = object["metadata"].value("labels", json::object());
      if (labels.value(std::string(k8s::kEnclaveIdLabel), "") == enclave_id) result.push_back(object);
    }
    return result;
  }

  std::vector<json> requests() const {
    std::vector<json> result;
    std::ifstream input(log_);
    for (std::string line; std::getline(input, line);) {
      if (!line.empty()) result.push_back(json::parse(line));
    }
    return result;
  }

 private:
  fs::path directory_;
  fs::path log_;
  pid_t pid_ = -1;
  std::string port_;
};

k8s::KubernetesProvisionerConfig provisioner_config() {
  k8s::KubernetesProvisionerConfig config;
  config.namespace_name = kNamespace;
  config.image = "registry.example/licensing/enclave@sha256:" + std::string(64, 'a');
  config.enclave_domain = "enclaves.example.test";
  config.ready_timeout = 10s;
  config.delete_timeout = 10s;
  config.termination_grace_seconds = 1;
  return config;
}

std::uint16_t free_port() {
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

InstanceConfig instance_config(const std::string& owner = "7d1f0c1e-5b7a-4c55-9a57-2c8f0e1b9d11") {
  InstanceConfig config;
  config.enclave_id = licensing::core::random_uuid();
  config.owner_id = owner;
  config.port = free_port();
  config.csr_url = "https://127.0.0.1:1/v1/enclave-certificates";
  config.issuer = "https://licensing.example.test";
  config.jwks_json = R"({"keys":[{"kid":"first"}]})";
  config.ca_bundle_pem = "-----BEGIN CERTIFICATE-----\nplaceholder\n-----END CERTIFICATE-----\n";
  config.bootstrap_credential = licensing::SecretBytes(std::string_view("bootstrap-credential-for-tests"));
  return config;
}

// --- the contract, per backend ---

class Backend {
 public:
  virtual ~Backend() = default;
  virtual Provisioner& provisioner() = 0;
  // A new provisioner object on the same instances, as a restarted core has.
  virtual std::unique_ptr<Provisioner> restarted() = 0;
  // Prepares what an instance of `config` needs besides the provisioner.
  virtual void prepare(const InstanceConfig& config) { static_cast<void>(config); }
  // The JWKS in the instance's configuration now.
  virtual std::string published_jwks(const std::string& enclave_id) = 0;
  // The names of everything that exists for the enclave (files, objects).
  virtual std::vector<std::string> resource_names(const std::string& enclave_id) = 0;
  // How many instances (processes, pods) of the enclave exist.
  virtual std::size_t instance_count(const std::string& enclave_id) = 0;
};

class LocalBackend final : public Backend {
 public:
  LocalBackend() : directory_(make_temp_directory()) {
    authority_ = licensing::crypto::CertificateAuthority::open(directory_ / "ca", "Provisioner Test").value();
    provisioner_ = std::make_unique<licensing::core::LocalProvisioner>(config());
  }
  ~LocalBackend() override {
    for (const auto& id : provisioner_->running_instances()) static_cast<void>(provisioner_->remove(id));
    fs::remove_all(directory_);
  }

  Provisioner& provisioner() override { return *provisioner_; }
  std::unique_ptr<Provisioner> restarted() override { return std::make_unique<licensing::core::LocalProvisioner>(config()); }

  // The fake enclave skips its CSR when it finds a chain, so each instance gets one here.
  void prepare(const InstanceConfig& instance) override {
    const fs::path directory = directory_ / "enclaves" / instance.enclave_id;
    fs::create_directories(directory);
    fs::permissions(directory_ / "enclaves", fs::perms::owner_all, fs::perm_options::replace);
    fs::permissions(directory, fs::perms::owner_all, fs::perm_options::replace);
    auto key_and_csr = licensing::crypto::generate_key_and_csr("enclave").value();
    licensing::crypto::ServerCertificateRequest request;
    request.csr_pem = key_and_csr.csr_pem;
    request.ip_addresses = {"127.0.0.1"};
    auto issued = authority_->issue_server_certificate(request).value();
    licensing::crypto::ossl::write_file_atomically(directory / "key.pem", key_and_csr.private_key_pem, 0600).value();
    licensing::crypto::ossl::write_file_atomically(directory / "chain.pem", issued.chain_pem, 0600).value();
  }

  std::string published_jwks(const std::string& enclave_id) override {
    return read_text(directory_ / "enclaves" / enclave_id / "jwks.json");
  }

  // Paths under the root that belong to the enclave. Its log file is left out: the local
  // provisioner keeps logs/<id>.log after remove() for operators.
  std::vector<std::string> resource_names(const std::string& enclave_id) override {
    std::vector<std::string> names;
    const fs::path root = directory_ / "enclaves";
    for (const auto& entry : fs::recursive_directory_iterator(root)) {
      const std::string path = fs::relative(entry.path(), root).string();
      if (path.find(enclave_id) != std::string::npos && !path.starts_with("logs/")) names.push_back(path);
    }
    return names;
  }

  std::size_t instance_count(const std::string& enclave_id) override {
    return provisioner_->find_processes(enclave_id).size();
  }

 private:
  licensing::core::LocalProvisionerConfig config() const {
    return {FAKE_ENCLAVE_PATH, directory_ / "enclaves", std::chrono::milliseconds(3000)};
  }

  fs::path directory_;
  std::unique_ptr<licensing::crypto::CertificateAuthority> authority_;
  std::unique_ptr<licensing::core::LocalProvisioner> provisioner_;
};

class KubernetesBackend final : public Backend {
 public:
  KubernetesBackend() : provisioner_(simulator_.client(), provisioner_config()) {}

  Provisioner& provisioner() override { return provisioner_; }
  std::unique_ptr<Provisioner> restarted() override {
    return std::make_unique<k8s::KubernetesProvisioner>(simulator_.client(), provisioner_config());
  }

  std::string published_jwks(const std::string& enclave_id) override {
    for (const auto& object : simulator_.objects_of(enclave_id)) {
      if (object["_resource"] == "configmaps") return object["data"].value("jwks.json", "");
    }
    return {};
  }

  std::vector<std::string> resource_names(const std::string& enclave_id) override {
    std::vector<std::string> names;
    for (const auto& object : simulator_.objects_of(enclave_id)) names.push_back(object["metadata"]["name"]);
    return names;
  }

  std::size_t instance_count(const std::string& enclave_id) override {
    std::size_t count = 0;
    for (const auto& object : simulator_.objects_of(enclave_id)) count += object["_resource"] == "pods" ? 1 : 0;
    return count;
  }

  Simulator& simulator() { return simulator_; }

 private:
  Simulator simulator_;
  k8s::KubernetesProvisioner provisioner_;
};

class ProvisionerContract : public testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (GetParam() == "local") {
      backend_ = std::make_unique<LocalBackend>();
    } else {
      auto kubernetes = std::make_unique<KubernetesBackend>();
      ASSERT_TRUE(kubernetes->simulator().ready()) << "the simulator did not start";
      backend_ = std::move(kubernetes);
    }
  }

  std::string start(const InstanceConfig& config) {
    backend_->prepare(config);
    auto started = backend_->provisioner().start(config);
    EXPECT_TRUE(started) << (started ? "" : started.error().detail);
    return started ? *started : std::string();
  }

  bool is_running(Provisioner& provisioner, const std::string& id) {
    const auto running = provisioner.running_instances();
    return std::count(running.begin(), running.end(), id) > 0;
  }

  std::unique_ptr<Backend> backend_;
};

TEST_P(ProvisionerContract, StartedInstanceIsRunning) {
  const auto config = instance_config();
  const std::string name = start(config);

  EXPECT_FALSE(name.empty());
  EXPECT_TRUE(is_running(backend_->provisioner(), config.enclave_id));
}

TEST_P(ProvisionerContract, StartTwiceLeavesOneInstance) {
  const auto config = instance_config();
  start(config);
  start(config);

  const auto running = backend_->provisioner().running_instances();
  EXPECT_EQ(std::count(running.begin(), running.end(), config.enclave_id), 1);
  EXPECT_EQ(backend_->instance_count(config.enclave_id), 1u);
}

TEST_P(ProvisionerContract, StoppedInstanceIsNotRunning) {
  const auto config = instance_config();
  start(config);

  auto stopped = backend_->provisioner().stop(config.enclave_id);

  ASSERT_TRUE(stopped) << stopped.error().detail;
  EXPECT_FALSE(is_running(backend_->provisioner(), config.enclave_id));
  EXPECT_EQ(backend_->instance_count(config.enclave_id), 0u);
}

TEST_P(ProvisionerContract, RemoveDeletesResources) {
  const auto config = instance_config();
  start(config);
  ASSERT_FALSE(backend_->resource_names(config.enclave_id).empty());

  auto removed = backend_->provisioner().remove(config.enclave_id);

  ASSERT_TRUE(removed) << removed.error().detail;
  EXPECT_FALSE(is_running(backend_->provisioner(), config.enclave_id));
  EXPECT_TRUE(backend_->resource_names(config.enclave_id).empty());
}

TEST_P(ProvisionerContract, PublishedJwksReachesInstance) {
  const auto config = instance_config();
  start(config);
  EXPECT_EQ(backend_->published_jwks(config.enclave_id), config.jwks_json);

  const std::string rotated = R"({"keys":[{"kid":"first"},{"kid":"second"}]})";
  auto published = backend_->provisioner().publish_jwks(config.enclave_id, rotated);

  ASSERT_TRUE(published) << published.error().detail;
  EXPECT_EQ(backend_->published_jwks(config.enclave_id), rotated);
}

TEST_P(ProvisionerContract, NamesNeverContainOwner) {
  // Owner ids are internal ids, but not even a username passed by mistake reaches a name.
  for (const std::string& owner : std::vector<std::string>{"Alice.Smith", "bob", "J\xC3\xBCrgen", std::string(70, 'x')}) {
    SCOPED_TRACE(owner);
    const auto config = instance_config(owner);
    start(config);
    const auto names = backend_->resource_names(config.enclave_id);
    ASSERT_FALSE(names.empty());
    for (const auto& name : names) {
      EXPECT_EQ(name.find(owner), std::string::npos) << name;
      EXPECT_NE(name.find(config.enclave_id), std::string::npos) << name;
    }
    static_cast<void>(backend_->provisioner().remove(config.enclave_id));
  }
}

TEST_P(ProvisionerContract, RestartedProvisionerFindsInstances) {
  const auto first = instance_config();
  const auto second = instance_config();
  start(first);
  start(second);

  auto restarted = backend_->restarted();
  // A local instance is visible to a new provisioner once its process has exec'd.
  for (int attempt = 0; attempt < 30 && !(is_running(*restarted, first.enclave_id) && is_running(*restarted, second.enclave_id)); ++attempt) {
    std::this_thread::sleep_for(100ms);
  }

  EXPECT_TRUE(is_running(*restarted, first.enclave_id));
  EXPECT_TRUE(is_running(*restarted, second.enclave_id));
  auto stopped = restarted->stop(first.enclave_id);
  ASSERT_TRUE(stopped) << stopped.error().detail;
  EXPECT_FALSE(is_running(backend_->provisioner(), first.enclave_id));
  EXPECT_TRUE(is_running(backend_->provisioner(), second.enclave_id));
}

INSTANTIATE_TEST_SUITE_P(Backends, ProvisionerContract, testing::Values("local", "kubernetes"),
                         [](const testing::TestParamInfo<std::string>& info) { return info.param; });

// --- the Kubernetes backend ---

class KubernetesProvisionerTest : public testing::Test {
 protected:
  // The simulator starts here, not in the constructor, so derived fixtures can pass it
  // arguments through simulator_arguments().
  void SetUp() override {
    simulator_ = std::make_unique<Simulator>(simulator_arguments());
    ASSERT_TRUE(simulator_->ready()) << "the simulator did not start";
    provisioner_ = std::make_unique<k8s::KubernetesProvisioner>(simulator_->client(), provisioner_config());
  }

  std::vector<json> requests_matching(const std::string& method, const std::string& path_part) {
    std::vector<json> matching;
    for (const auto& request : simulator_->requests()) {
      if (request["method"] == method && request["path"].get<std::string>().find(path_part) != std::string::npos) {
        matching.push_back(request);
      }
    }
    return matching;
  }

  json find_object(const std::string& resource, const std::string& name) {
    for (const auto& object : simulator_->objects()) {
      if (object["_resource"] == resource && object["metadata"]["name"] == name) return object;
    }
    return nullptr;
  }

  virtual std::vector<std::string> simulator_arguments() { return {}; }

  std::unique_ptr<Simulator> simulator_;
  std::unique_ptr<k8s::KubernetesProvisioner> provisioner_;
};

TEST(KubernetesNames, ResourceNamesFitDnsLabel) {
  const std::string id = "0f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a";
  const auto names = k8s::resource_names(id);

  ASSERT_TRUE(names);
  EXPECT_EQ(names->pod, "enclave-" + id);
  for (const auto& name : {names->pod, names->config_map, names->secret}) {
    EXPECT_LE(name.size(), 63u) << name;
    EXPECT_TRUE(k8s::is_dns_label(name)) << name;
  }
}

TEST(KubernetesNames, NonUuidIdsRejected) {
  for (const std::string& id : std::vector<std::string>{"", "Alice", "0F8E7D6C-5B4A-4392-8170-6F5E4D3C2B1A", "../etc", std::string(80, 'a')}) {
    EXPECT_FALSE(k8s::resource_names(id)) << id;
  }
}

TEST(KubernetesNames, LabelValuesChecked) {
  EXPECT_TRUE(k8s::is_label_value("7d1f0c1e-5b7a-4c55-9a57-2c8f0e1b9d11"));
  EXPECT_TRUE(k8s::is_label_value("Alice.Smith"));
  EXPECT_FALSE(k8s::is_label_value(std::string(64, 'a')));
  EXPECT_FALSE(k8s::is_label_value("J\xC3\xBCrgen"));
  EXPECT_FALSE(k8s::is_label_value("-leading"));
  EXPECT_FALSE(k8s::is_label_value("trailing."));
  EXPECT_FALSE(k8s::is_label_value("with space"));
}

TEST_F(KubernetesProvisionerTest, PodManifestIsHardened) {
  const auto config = instance_config();
  const json pod = provisioner_->pod_manifest(config);
  const json& spec = pod["spec"];
  const json& container = spec["containers"][0];

  EXPECT_EQ(pod["metadata"]["name"], "enclave-" + config.enclave_id);
  EXPECT_EQ(spec["automountServiceAccountToken"], false);
  EXPECT_EQ(spec["securityContext"]["runAsNonRoot"], true);
  EXPECT_EQ(spec["securityContext"]["seccompProfile"]["type"], "RuntimeDefault");
  EXPECT_NE(container["image"].get<std::string>().find("@sha256:"), std::string::npos);
  EXPECT_EQ(container["securityContext"]["readOnlyRootFilesystem"], true);
  EXPECT_EQ(container["securityContext"]["allowPrivilegeEscalation"], false);
  EXPECT_EQ(container["securityContext"]["capabilities"]["drop"], json::array({"ALL"}));
  EXPECT_TRUE(container["resources"]["limits"].contains("memory"));
  EXPECT_TRUE(container["resources"]["limits"].contains("cpu"));
  EXPECT_TRUE(container.contains("readinessProbe"));
  EXPECT_TRUE(container.contains("livenessProbe"));
  EXPECT_EQ(spec["volumes"][0]["emptyDir"]["medium"], "Memory");
  std::set<std::string> variables;
  for (const auto& variable : container["env"]) variables.insert(variable["name"]);
  for (const char* name : {"LICENSING_ENCLAVE_ID", "LICENSING_ENCLAVE_OWNER", "LICENSING_ENCLAVE_DIR",
                           "LICENSING_ENCLAVE_LISTEN", "LICENSING_ENCLAVE_CSR_URL", "LICENSING_ENCLAVE_CA_BUNDLE",
                           "LICENSING_ENCLAVE_BOOTSTRAP_FILE", "LICENSING_ENCLAVE_JWKS_FILE", "LICENSING_ENCLAVE_ISSUER",
                           "LICENSING_ENCLAVE_REQUIRE_CLIENT_CERT"}) {
    EXPECT_TRUE(variables.contains(name)) << name;
  }
  EXPECT_EQ(pod.dump().find("bootstrap-credential-for-tests"), std::string::npos) << "the credential belongs in the Secret";
}

TEST_F(KubernetesProvisionerTest, DependentsOwnedByPod) {
  const auto config = instance_config();
  ASSERT_TRUE(provisioner_->start(config));
  const std::string name = "enclave-" + config.enclave_id;
  const json pod = find_object("pods", name);
  ASSERT_FALSE(pod.is_null());

  for (const auto& [resource, object_name] : {std::pair{"configmaps", name + "-config"}, std::pair{"secrets", name + "-bootstrap"},
                                              std::pair{"services", name}, std::pair{"ingresses", name}}) {
    SCOPED_TRACE(resource);
    const json object = find_object(resource, object_name);
    ASSERT_FALSE(object.is_null());
    ASSERT_EQ(object["metadata"]["ownerReferences"].size(), 1u);
    EXPECT_EQ(object["metadata"]["ownerReferences"][0]["uid"], pod["metadata"]["uid"]);
    EXPECT_EQ(object["metadata"]["ownerReferences"][0]["kind"], "Pod");
  }
  const json ingress = find_object("ingresses", name);
  EXPECT_EQ(ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/ssl-passthrough"], "true");
  EXPECT_EQ(ingress["spec"]["rules"][0]["host"], name + ".enclaves.example.test");
  EXPECT_EQ(provisioner_->endpoint(config.enclave_id, 0), "https://" + name + ".enclaves.example.test:443");
  EXPECT_TRUE(provisioner_->certificate_ip_addresses().empty());

  const auto pod_posts = requests_matching("POST", "/pods");
  const auto all = simulator_->requests();
  ASSERT_FALSE(pod_posts.empty());
  EXPECT_EQ(all.front()["path"], "/api/v1/namespaces/" + kNamespace + "/pods") << "the Pod is created first";
}

TEST_F(KubernetesProvisionerTest, OwnerLabelOnlyWhenValid) {
  auto valid = instance_config("7d1f0c1e-5b7a-4c55-9a57-2c8f0e1b9d11");
  auto invalid = instance_config(std::string(70, 'x'));
  ASSERT_TRUE(provisioner_->start(valid));
  ASSERT_TRUE(provisioner_->start(invalid));

  const json with_label = find_object("pods", "enclave-" + valid.enclave_id);
  const json without_label = find_object("pods", "enclave-" + invalid.enclave_id);
  EXPECT_EQ(with_label["metadata"]["labels"][std::string(k8s::kOwnerIdLabel)], valid.owner_id);
  EXPECT_FALSE(without_label["metadata"]["labels"].contains(std::string(k8s::kOwnerIdLabel)));
  EXPECT_EQ(without_label["metadata"]["labels"][std::string(k8s::kManagedByLabel)], "licensing-core");
}

TEST_F(KubernetesProvisionerTest, ServerErrorsRetriedWithBackoff) {
  simulator_->set_faults({{"fail_next", 3}, {"fail_status", 503}});
  const auto config = instance_config();

  const auto began = std::chrono::steady_clock::now();
  auto started = provisioner_->start(config);
  const auto elapsed = std::chrono::steady_clock::now() - began;

  ASSERT_TRUE(started) << started.error().detail;
  const auto posts = requests_matching("POST", "/pods");
  ASSERT_EQ(posts.size(), 4u);
  EXPECT_EQ(posts[0]["status"], 503);
  EXPECT_EQ(posts[2]["status"], 503);
  EXPECT_EQ(posts[3]["status"], 201);
  // Backoff of 50, 100 and 200 ms, each with jitter down to half: at least 175 ms.
  EXPECT_GE(elapsed, 175ms);
}

TEST_F(KubernetesProvisionerTest, PersistentServerErrorsFail) {
  simulator_->set_faults({{"fail_next", 100}, {"fail_status", 500}});

  auto started = provisioner_->start(instance_config());

  ASSERT_FALSE(started);
  EXPECT_NE(started.error().detail.find("status 500 after 5 attempts"), std::string::npos) << started.error().detail;
  EXPECT_EQ(requests_matching("POST", "/pods").size(), 5u);
}

TEST_F(KubernetesProvisionerTest, ClientErrorsNotRetried) {
  auto config = simulator_->cluster_config();
  config.token_file.clear();
  config.token = licensing::SecretBytes(std::string_view("a-wrong-token"));
  k8s::Client client(std::move(config), 5s, k8s::RetryPolicy{5, 50ms, 400ms});

  auto answer = client.request("GET", "/api/v1/namespaces/" + kNamespace + "/pods");

  ASSERT_TRUE(answer);
  EXPECT_EQ(answer->status, 401u);
  EXPECT_EQ(simulator_->requests().size(), 1u);
}

TEST_F(KubernetesProvisionerTest, InClusterConfigUsed) {
  const fs::path service_account = simulator_->directory() / "serviceaccount";
  fs::create_directories(service_account);
  fs::copy_file(simulator_->directory() / "ca.pem", service_account / "ca.crt");
  fs::copy_file(simulator_->directory() / "token", service_account / "token");
  const std::string server = simulator_->cluster_config().server;
  const std::string port = server.substr(server.rfind(':') + 1);
  ::setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1", 1);
  ::setenv("KUBERNETES_SERVICE_PORT", port.c_str(), 1);

  auto config = k8s::in_cluster_config(service_account);
  ::unsetenv("KUBERNETES_SERVICE_HOST");
  ::unsetenv("KUBERNETES_SERVICE_PORT");

  ASSERT_TRUE(config) << config.error().detail;
  EXPECT_EQ(config->server, server);
  EXPECT_EQ(config->token_file, service_account / "token");
  k8s::Client client(std::move(*config));
  auto listed = client.request("GET", "/api/v1/namespaces/" + kNamespace + "/pods");
  ASSERT_TRUE(listed) << listed.error().detail;
  EXPECT_EQ(listed->status, 200u);
}

TEST(KubernetesConfig, InClusterNeedsEnvironment) {
  ::unsetenv("KUBERNETES_SERVICE_HOST");

  auto config = k8s::in_cluster_config("/nonexistent");

  ASSERT_FALSE(config);
  EXPECT_EQ(config.error().detail,
            "KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set: run in a pod or pass --kubeconfig");
}

TEST_F(KubernetesProvisionerTest, RotatedTokenReadAgain) {
  auto client = simulator_->client();
  ASSERT_EQ(client->request("GET", "/api/v1/namespaces/" + kNamespace + "/pods")->status, 200u);

  write_text(simulator_->directory() / "token", "a-rotated-token");

  EXPECT_EQ(client->request("GET", "/api/v1/namespaces/" + kNamespace + "/pods")->status, 200u);
}

class SlowPodTest : public KubernetesProvisionerTest {
 protected:
  std::vector<std::string> simulator_arguments() override {
    return {"--pod-ready-delay", "1.5", "--pod-delete-delay", "2"};
  }

  std::size_t pod_watches() {
    std::size_t count = 0;
    for (const auto& request : requests_matching("GET", "/pods")) count += request["query"].value("watch", "") == "true";
    return count;
  }
};

TEST_F(SlowPodTest, TerminatingPodNotRunning) {
  const auto config = instance_config();
  ASSERT_TRUE(provisioner_->start(config));
  auto client = simulator_->client();
  // Right after the delete the Pod is still there, with a deletionTimestamp.
  ASSERT_EQ(client->request("DELETE", "/api/v1/namespaces/" + kNamespace + "/pods/enclave-" + config.enclave_id)->status, 200u);

  const auto running = provisioner_->running_instances();

  EXPECT_EQ(std::count(running.begin(), running.end(), config.enclave_id), 0);
  const json pod = find_object("pods", "enclave-" + config.enclave_id);
  ASSERT_FALSE(pod.is_null()) << "the Pod is still terminating";
  EXPECT_TRUE(pod["metadata"].contains("deletionTimestamp"));
}

TEST_F(SlowPodTest, DroppedWatchRecovered) {
  simulator_->set_faults({{"drop_watches", 2}});
  const auto config = instance_config();

  auto started = provisioner_->start(config);

  ASSERT_TRUE(started) << started.error().detail;
  EXPECT_GE(pod_watches(), 2u) << "both dropped watches were opened";
  EXPECT_GE(requests_matching("GET", "/pods/enclave-" + config.enclave_id).size(), 3u) << "each drop re-lists";
  const json pod = find_object("pods", "enclave-" + config.enclave_id);
  EXPECT_TRUE(k8s::has_true_condition(pod, "Ready"));
}

TEST_F(SlowPodTest, ExpiredWatchRecovered) {
  simulator_->set_faults({{"gone_watches", 2}});
  const auto config = instance_config();

  auto started = provisioner_->start(config);

  ASSERT_TRUE(started) << started.error().detail;
  EXPECT_GE(pod_watches(), 2u) << "both expired watches were opened";
  EXPECT_GE(requests_matching("GET", "/pods/enclave-" + config.enclave_id).size(), 3u) << "each 410 re-lists";
}

TEST_F(KubernetesProvisionerTest, StaleDependentsReplacedWithoutGarbageCollector) {
  simulator_->set_faults({{"garbage_collection", false}});
  const auto config = instance_config();
  ASSERT_TRUE(provisioner_->start(config));
  ASSERT_TRUE(provisioner_->stop(config.enclave_id));
  ASSERT_EQ(simulator_->objects_of(config.enclave_id).size(), 4u) << "the dependents outlive their Pod";

  ASSERT_TRUE(provisioner_->start(config));

  const std::string name = "enclave-" + config.enclave_id;
  const json pod = find_object("pods", name);
  const json config_map = find_object("configmaps", name + "-config");
  EXPECT_EQ(config_map["metadata"]["ownerReferences"][0]["uid"], pod["metadata"]["uid"]);
  ASSERT_TRUE(provisioner_->remove(config.enclave_id));
  EXPECT_TRUE(simulator_->objects_of(config.enclave_id).empty());
}

TEST_F(KubernetesProvisionerTest, StaleSecretRemovedWithoutCredential) {
  simulator_->set_faults({{"garbage_collection", false}});
  auto config = instance_config();
  ASSERT_TRUE(provisioner_->start(config));
  ASSERT_TRUE(provisioner_->stop(config.enclave_id));
  config.bootstrap_credential.reset();

  ASSERT_TRUE(provisioner_->start(config));

  EXPECT_TRUE(find_object("secrets", "enclave-" + config.enclave_id + "-bootstrap").is_null());
  EXPECT_FALSE(find_object("configmaps", "enclave-" + config.enclave_id + "-config").is_null());
}

TEST_F(KubernetesProvisionerTest, ListingKeptDuringApiOutage) {
  const auto config = instance_config();
  ASSERT_TRUE(provisioner_->start(config));
  ASSERT_EQ(provisioner_->running_instances(), std::vector<std::string>{config.enclave_id});
  simulator_->set_faults({{"fail_next", 100}, {"fail_status", 503}});

  const auto during_outage = provisioner_->running_instances();

  EXPECT_EQ(during_outage, std::vector<std::string>{config.enclave_id});
  EXPECT_EQ(requests_matching("GET", "/pods").back()["status"], 503);
}

TEST_F(KubernetesProvisionerTest, JwksUpdateRetriedOnConflict) {
  const auto config = instance_config();
  ASSERT_TRUE(provisioner_->start(config));
  simulator_->set_faults({{"conflict_puts", 2}});

  auto published = provisioner_->publish_jwks(config.enclave_id, R"({"keys":[]})");

  ASSERT_TRUE(published) << published.error().detail;
  const json config_map = find_object("configmaps", "enclave-" + config.enclave_id + "-config");
  EXPECT_EQ(config_map["data"]["jwks.json"], R"({"keys":[]})");
  const auto puts = requests_matching("PUT", "/configmaps/");
  ASSERT_EQ(puts.size(), 3u);
  EXPECT_EQ(puts[0]["status"], 409);
  EXPECT_EQ(puts[2]["status"], 200);
  EXPECT_FALSE(puts[2]["body"]["metadata"].value("resourceVersion", "").empty()) << "the PUT carries its resourceVersion";
}

TEST_F(KubernetesProvisionerTest, StaleResourceVersionConflicts) {
  const auto config = instance_config();
  ASSERT_TRUE(provisioner_->start(config));
  auto client = simulator_->client();
  const std::string path = "/api/v1/namespaces/" + kNamespace + "/configmaps/enclave-" + config.enclave_id + "-config";
  json stale = client->request("GET", path)->body;
  ASSERT_TRUE(provisioner_->publish_jwks(config.enclave_id, R"({"keys":[]})"));

  EXPECT_EQ(client->request("PUT", path, stale)->status, 409u);
}

// --- cert-manager ---

// A CSR with a P-256 key, subject CN=`common_name` and the given DNS subjectAltNames.
std::string make_csr(const std::string& common_name, const std::vector<std::string>& dns_names) {
  licensing::crypto::ossl::Pkey key = licensing::crypto::ossl::generate_p256_key();
  licensing::crypto::ossl::X509Req request(X509_REQ_new());
  X509_NAME* subject = X509_REQ_get_subject_name(request.get());
  X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_UTF8, reinterpret_cast<const unsigned char*>(common_name.c_str()), -1,
                             -1, 0);
  if (!dns_names.empty()) {
    std::string text;
    for (const auto& name : dns_names) text += (text.empty() ? "DNS:" : ",DNS:") + name;
    STACK_OF(X509_EXTENSION)* extensions = sk_X509_EXTENSION_new_null();
    X509_EXTENSION* extension = X509V3_EXT_conf_nid(nullptr, nullptr, NID_subject_alt_name, text.c_str());
    sk_X509_EXTENSION_push(extensions, extension);
    X509_REQ_add_extensions(request.get(), extensions);
    sk_X509_EXTENSION_pop_free(extensions, X509_EXTENSION_free);
  }
  X509_REQ_set_pubkey(request.get(), key.get());
  X509_REQ_sign(request.get(), key.get(), EVP_sha256());
  return licensing::crypto::ossl::request_to_pem(request.get()).value();
}

class CertManagerIssuerTest : public KubernetesProvisionerTest {
 protected:
  licensing::core::EnclaveCertificateRequest request_for(const std::string& id, const std::string& csr) {
    licensing::core::EnclaveCertificateRequest request;
    request.enclave_id = id;
    request.csr_pem = csr;
    request.dns_names = {id + ".enclaves.licensing.internal"};
    request.lifetime = std::chrono::hours(24);
    return request;
  }

  k8s::CertManagerIssuer issuer(std::chrono::milliseconds timeout = 10s) {
    return k8s::CertManagerIssuer(simulator_->client(), {kNamespace, "licensing-ca", timeout});
  }

  std::size_t certificate_requests_left() {
    std::size_t count = 0;
    for (const auto& object : simulator_->objects()) count += object["_resource"] == "certificaterequests";
    return count;
  }
};

TEST_F(CertManagerIssuerTest, SignedRequestReturnsChain) {
  const std::string id = licensing::core::random_uuid();
  const std::string dns_name = id + ".enclaves.licensing.internal";
  auto signer = issuer();

  auto issued = signer.issue(request_for(id, make_csr(dns_name, {dns_name})));

  ASSERT_TRUE(issued) << issued.error().detail;
  const std::string signing_ca = read_text(simulator_->directory() / "signing-ca.pem");
  EXPECT_TRUE(issued->chain_pem.starts_with(issued->certificate_pem));
  EXPECT_NE(issued->chain_pem.find(signing_ca), std::string::npos);
  EXPECT_FALSE(issued->serial_hex.empty());
  EXPECT_GT(issued->not_after, std::chrono::system_clock::now() + std::chrono::hours(23));
  EXPECT_EQ(certificate_requests_left(), 0u) << "the CertificateRequest is deleted after use";

  const auto posts = requests_matching("POST", "/certificaterequests");
  ASSERT_EQ(posts.size(), 1u);
  const json& spec = posts[0]["body"]["spec"];
  EXPECT_EQ(spec["issuerRef"], json({{"name", "licensing-ca"}, {"kind", "Issuer"}, {"group", "cert-manager.io"}}));
  EXPECT_EQ(spec["usages"], json::array({"digital signature", "key encipherment", "server auth"}));
  EXPECT_EQ(spec["duration"], "86400s");
  EXPECT_EQ(posts[0]["body"].dump().find("PRIVATE KEY"), std::string::npos);
}

TEST_F(CertManagerIssuerTest, NeverSignedRequestTimesOut) {
  simulator_->set_faults({{"never_sign", true}});
  const std::string id = licensing::core::random_uuid();
  const std::string dns_name = id + ".enclaves.licensing.internal";
  auto signer = issuer(1500ms);

  auto issued = signer.issue(request_for(id, make_csr(dns_name, {dns_name})));

  ASSERT_FALSE(issued);
  EXPECT_EQ(issued.error().code, licensing::core::IssuerError::timed_out);
  EXPECT_NE(issued.error().detail.find("was not signed within 1 s"), std::string::npos) << issued.error().detail;
  EXPECT_NE(issued.error().detail.find("it was deleted"), std::string::npos) << issued.error().detail;
  EXPECT_NE(issued.error().detail.find("Issuer licensing-ca"), std::string::npos) << issued.error().detail;
  EXPECT_EQ(certificate_requests_left(), 0u);
  EXPECT_EQ(requests_matching("DELETE", "/certificaterequests/").size(), 1u);
}

TEST_F(CertManagerIssuerTest, CsrForOtherNamesRejected) {
  const std::string id = licensing::core::random_uuid();
  const std::string dns_name = id + ".enclaves.licensing.internal";
  auto signer = issuer();

  auto other_name = signer.issue(request_for(id, make_csr(dns_name, {dns_name, "www.example.com"})));
  auto other_subject = signer.issue(request_for(id, make_csr("www.example.com", {dns_name})));
  auto no_san = signer.issue(request_for(id, make_csr(dns_name, {})));

  ASSERT_FALSE(other_name);
  EXPECT_EQ(other_name.error().code, licensing::core::IssuerError::invalid_csr);
  EXPECT_EQ(other_name.error().detail, "the CSR asks for DNS name www.example.com");
  ASSERT_FALSE(other_subject);
  EXPECT_EQ(other_subject.error().code, licensing::core::IssuerError::invalid_csr);
  ASSERT_FALSE(no_san);
  EXPECT_EQ(no_san.error().detail, "the CSR must name DNS:" + dns_name + " in its subjectAltName");
  auto two_names = request_for(id, make_csr(dns_name, {dns_name}));
  two_names.dns_names.push_back("enclave-" + id + ".enclaves.example.test");
  auto missing_second = signer.issue(two_names);
  ASSERT_FALSE(missing_second);
  EXPECT_EQ(missing_second.error().detail, "the CSR must name DNS:enclave-" + id + ".enclaves.example.test in its subjectAltName");
  EXPECT_TRUE(requests_matching("POST", "/certificaterequests").empty()) << "nothing reaches cert-manager";
}

TEST_F(CertManagerIssuerTest, DeniedRequestReported) {
  simulator_->set_faults({{"deny_requests", true}});
  const std::string id = licensing::core::random_uuid();
  const std::string dns_name = id + ".enclaves.licensing.internal";
  auto signer = issuer();

  auto issued = signer.issue(request_for(id, make_csr(dns_name, {dns_name})));

  ASSERT_FALSE(issued);
  EXPECT_EQ(issued.error().code, licensing::core::IssuerError::denied);
  EXPECT_NE(issued.error().detail.find("Denied: denied by the approval policy"), std::string::npos) << issued.error().detail;
  EXPECT_EQ(certificate_requests_left(), 0u);
}

// The whole chain: EnclaveManager provisions a Pod through the Kubernetes provisioner, and
// the enclave's CSR, sent with the credential from the Pod's Secret, is signed through
// cert-manager and measured. The monitor thread is not started, because its health check
// would resolve the enclave's DNS name.
class CountingObserver final : public licensing::core::CertificateObserver {
 public:
  licensing::Result<void, licensing::core::MeasurementError> on_enclave_certificate(
      const licensing::core::IssuedEnclaveCertificate& issued) override {
    enclave_ids.emplace_back(issued.enclave_id);
    return {};
  }
  std::vector<std::string> enclave_ids;
};

TEST_F(CertManagerIssuerTest, EnclaveManagerSignsThroughCertManager) {
  const fs::path directory = make_temp_directory();
  auto store = licensing::store::open_store("sqlite://" + (directory / "licensing.db").string());
  ASSERT_TRUE(store) << store.error().detail;
  ASSERT_TRUE((*store)->migrate());
  auto authority = licensing::crypto::CertificateAuthority::open(directory / "ca", "Provisioner Test").value();
  licensing::crypto::TokenKeysConfig key_config;
  key_config.key_directory = directory / "keys";
  auto keys = licensing::crypto::TokenKeys::open(std::move(key_config), std::chrono::system_clock::now());
  ASSERT_TRUE(keys);
  licensing::core::KeyHolder key_holder(std::shared_ptr<licensing::crypto::TokenKeys>(std::move(*keys)));
  licensing::core::EnclavePolicy policy;
  policy.csr_url = "https://gateway.example.test/v1/enclave-certificates";
  policy.ports = {30000, 30009};
  CountingObserver observer;
  auto signer = issuer();
  licensing::core::EnclaveManager manager(**store, *provisioner_, *authority, signer, key_holder,
                                          licensing::core::TokenPolicy{}, policy, observer);

  auto enclave = manager.provision("7d1f0c1e-5b7a-4c55-9a57-2c8f0e1b9d11", "");
  ASSERT_TRUE(enclave) << enclave.error().detail;
  EXPECT_EQ(enclave->endpoint, "https://enclave-" + enclave->id + ".enclaves.example.test:443");
  const json secret = find_object("secrets", "enclave-" + enclave->id + "-bootstrap");
  ASSERT_FALSE(secret.is_null());
  const std::string encoded = secret["data"]["credential"];
  std::string credential(encoded.size(), '\0');
  const int length = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(credential.data()),
                                     reinterpret_cast<const unsigned char*>(encoded.data()), static_cast<int>(encoded.size()));
  ASSERT_GT(length, 0);
  credential.resize(static_cast<std::size_t>(length));
  while (!credential.empty() && credential.back() == '\0') credential.pop_back();

  // The CSR names the internal name and the ingress host, which cert-manager copies.
  const std::string dns_name = licensing::core::enclave_dns_name(enclave->id);
  const std::string ingress_host = "enclave-" + enclave->id + ".enclaves.example.test";

  // A CSR for another name is rejected before the credential is spent: no request reaches
  // cert-manager, and the same credential works for the right CSR below.
  auto wrong = manager.sign_csr(enclave->id, credential, make_csr(dns_name, {dns_name, "other.example.test"}));
  ASSERT_FALSE(wrong);
  EXPECT_EQ(wrong.error().code, licensing::core::EnclaveError::invalid_argument);
  EXPECT_TRUE(requests_matching("POST", "/certificaterequests").empty());

  auto signed_csr = manager.sign_csr(enclave->id, credential, make_csr(dns_name, {dns_name, ingress_host}));

  ASSERT_TRUE(signed_csr) << signed_csr.error().detail;
  EXPECT_NE(signed_csr->certificate_chain_pem().find(read_text(simulator_->directory() / "signing-ca.pem")), std::string::npos);
  EXPECT_EQ(observer.enclave_ids, std::vector<std::string>{enclave->id});
  EXPECT_EQ(certificate_requests_left(), 0u);
  const auto posts = requests_matching("POST", "/certificaterequests");
  ASSERT_EQ(posts.size(), 1u);
  EXPECT_EQ(posts[0]["body"]["metadata"]["labels"][std::string(k8s::kEnclaveIdLabel)], enclave->id);
  fs::remove_all(directory);
}

// --- configuration ---

class KubeconfigTest : public testing::Test {
 protected:
  void SetUp() override { directory_ = make_temp_directory(); }
  void TearDown() override { fs::remove_all(directory_); }

  licensing::Result<k8s::ClusterConfig, k8s::ApiError> load(const std::string& user, const std::string& cluster_extra = {}) {
    write_text(directory_ / "ca.pem", "CA PEM");
    write_text(directory_ / "config",
               "apiVersion: v1\nkind: Config\ncurrent-context: dev\n"
               "clusters:\n- name: local\n  cluster:\n    server: https://127.0.0.1:6443\n    certificate-authority: ca.pem\n" +
                   cluster_extra +
                   "users:\n- name: me\n  user:\n" + user +
                   "contexts:\n- name: dev\n  context:\n    cluster: local\n    user: me\n    namespace: team\n");
    return k8s::load_kubeconfig(directory_ / "config");
  }

  fs::path directory_;
};

TEST_F(KubeconfigTest, TokenAndRelativeCaRead) {
  auto config = load("    token: abc\n");

  ASSERT_TRUE(config) << config.error().detail;
  EXPECT_EQ(config->server, "https://127.0.0.1:6443");
  EXPECT_EQ(config->ca_pem, "CA PEM");
  EXPECT_EQ(config->namespace_name, "team");
  ASSERT_TRUE(config->token);
  EXPECT_EQ(config->token->text(), "abc");
}

TEST_F(KubeconfigTest, ClientCertificateDataDecoded) {
  // base64 of "CERT" and "KEY!".
  auto config = load("    client-certificate-data: Q0VSVA==\n    client-key-data: S0VZIQ==\n");

  ASSERT_TRUE(config) << config.error().detail;
  EXPECT_EQ(config->client_certificate_pem, "CERT");
  ASSERT_TRUE(config->client_key_pem);
  EXPECT_EQ(config->client_key_pem->text(), "KEY!");
}

TEST_F(KubeconfigTest, UnsupportedCredentialsRejected) {
  auto exec = load("    exec:\n      command: aws\n");
  auto insecure = load("    token: abc\n", "    insecure-skip-tls-verify: true\n");
  auto half = load("    client-certificate-data: Q0VSVA==\n");

  ASSERT_FALSE(exec);
  EXPECT_NE(exec.error().detail.find("exec"), std::string::npos);
  ASSERT_FALSE(insecure);
  EXPECT_NE(insecure.error().detail.find("insecure-skip-tls-verify"), std::string::npos);
  ASSERT_FALSE(half);
  EXPECT_EQ(half.error().detail, "the kubeconfig user needs both client-certificate and client-key, or neither");
}

TEST(KubernetesOptions, ImageMustBeByDigest) {
  EXPECT_TRUE(k8s::is_image_digest_reference("ghcr.io/licensing/enclave@sha256:" + std::string(64, 'f')));
  EXPECT_FALSE(k8s::is_image_digest_reference("ghcr.io/licensing/enclave:1.0"));
  EXPECT_FALSE(k8s::is_image_digest_reference("ghcr.io/licensing/enclave@sha256:" + std::string(63, 'f')));
  EXPECT_EQ(k8s::image_sha256("enclave@sha256:" + std::string(64, 'b')), std::string(64, 'b'));

  k8s::KubernetesOptions options;
  options.enclave_image = "ghcr.io/licensing/enclave:latest";
  options.enclave_domain = "enclaves.example.com";
  auto provisioner = k8s::make_provisioner(options);
  ASSERT_FALSE(provisioner);
  EXPECT_NE(provisioner.error().detail.find("--enclave-image"), std::string::npos);
}

TEST(KubernetesOptions, FlagsRegisteredWithDefaults) {
  CLI::App app;
  k8s::KubernetesOptions defaults;
  k8s::add_kubernetes_options(app, defaults);
  app.parse(std::vector<std::string>{});

  EXPECT_EQ(defaults.namespace_name, "licensing-enclaves");
  EXPECT_EQ(defaults.cert_manager_issuer, "licensing-ca");
  EXPECT_EQ(defaults.cert_manager_timeout_seconds, 60);
  EXPECT_TRUE(defaults.kubeconfig.empty());

  CLI::App other;
  k8s::KubernetesOptions options;
  k8s::add_kubernetes_options(other, options);
  // CLI11 parses a reversed argument vector.
  other.parse(std::vector<std::string>{"30", "--cert-manager-timeout", "ca", "--cert-manager-issuer", "example.org",
                                       "--enclave-domain", "enclave@sha256:" + std::string(64, 'c'), "--enclave-image",
                                       "/tmp/kubeconfig", "--kubeconfig", "team", "--kubernetes-namespace"});
  EXPECT_EQ(options.namespace_name, "team");
  EXPECT_EQ(options.kubeconfig, "/tmp/kubeconfig");
  EXPECT_EQ(options.enclave_domain, "example.org");
  EXPECT_EQ(options.cert_manager_issuer, "ca");
  EXPECT_EQ(options.cert_manager_timeout_seconds, 30);
  EXPECT_THROW(other.parse(std::vector<std::string>{"0", "--cert-manager-timeout"}), CLI::ValidationError);
}

TEST(KubernetesOptions, NamespaceValidated) {
  k8s::KubernetesOptions options;
  options.namespace_name = "Not_A_Namespace";

  auto client = k8s::make_client(options);

  ASSERT_FALSE(client);
  EXPECT_NE(client.error().detail.find("--kubernetes-namespace"), std::string::npos);
}

}  // namespace
