#include "core/kubernetes/provisioner.hpp"

#include <fmt/core.h>
#include <openssl/evp.h>

#include <thread>

#include "common/logging.hpp"
#include "core/bootstrap.hpp"
#include "core/kubernetes/wait.hpp"

namespace licensing::core::kubernetes {
namespace {

using json = nlohmann::json;

constexpr int kContainerPort = 8443;
constexpr std::string_view kPortName = "https";
// Mount points inside the Pod. The private directory is a subdirectory of the in-memory
// volume, because the enclave requires a directory that it owns with mode 0700.
constexpr std::string_view kPrivateMount = "/var/lib/enclave";
constexpr std::string_view kPrivateDirectory = "/var/lib/enclave/private";
constexpr std::string_view kConfigMount = "/etc/enclave/config";
constexpr std::string_view kBootstrapMount = "/etc/enclave/bootstrap";
constexpr std::string_view kJwksKey = "jwks.json";
constexpr std::string_view kCaBundleKey = "ca-bundle.pem";
constexpr std::string_view kCredentialKey = "credential";
constexpr int kMaxJwksConflicts = 5;

std::string encode_base64(std::string_view data) {
  std::string encoded(4 * ((data.size() + 2) / 3), '\0');
  const int length = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(encoded.data()),
                                     reinterpret_cast<const unsigned char*>(data.data()), static_cast<int>(data.size()));
  encoded.resize(static_cast<std::size_t>(length));
  return encoded;
}

json owner_reference(const std::string& pod_name, const std::string& uid) {
  return json::array({{{"apiVersion", "v1"}, {"kind", "Pod"}, {"name", pod_name}, {"uid", uid}, {"controller", false}}});
}

json env_variable(std::string_view name, std::string_view value) { return {{"name", name}, {"value", value}}; }

std::string describe(const Error<ApiError>& error) { return fmt::format("{}: {}", to_string(error.code), error.detail); }

}  // namespace

bool is_label_value(std::string_view value) {
  if (value.empty()) return true;
  if (value.size() > 63) return false;
  auto alphanumeric = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) != 0 && static_cast<unsigned char>(c) < 0x80; };
  if (!alphanumeric(value.front()) || !alphanumeric(value.back())) return false;
  for (char c : value) {
    if (!alphanumeric(c) && c != '-' && c != '_' && c != '.') return false;
  }
  return true;
}

bool is_dns_label(std::string_view name) {
  if (name.empty() || name.size() > 63) return false;
  if (name.front() < 'a' || name.front() > 'z') return false;
  if (name.back() == '-') return false;
  for (char c : name) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) return false;
  }
  return true;
}

std::optional<ResourceNames> resource_names(std::string_view enclave_id) {
  if (!is_uuid(enclave_id)) return std::nullopt;
  const std::string base = "enclave-" + std::string(enclave_id);
  return ResourceNames{base, base + "-config", base + "-bootstrap"};
}

KubernetesProvisioner::KubernetesProvisioner(std::shared_ptr<Client> client, KubernetesProvisionerConfig config)
    : client_(std::move(client)), config_(std::move(config)) {}

std::string KubernetesProvisioner::core_path(std::string_view resource) const {
  return fmt::format("/api/v1/namespaces/{}/{}", config_.namespace_name, resource);
}

json KubernetesProvisioner::labels(const InstanceConfig& config) const {
  json result = {{"app.kubernetes.io/name", "licensing-enclave"},
                 {std::string(kManagedByLabel), kManagedByValue},
                 {std::string(kEnclaveIdLabel), config.enclave_id}};
  // Owner ids are internal ids, never usernames; one that is no valid label value is left out.
  if (!config.owner_id.empty() && is_label_value(config.owner_id)) result[std::string(kOwnerIdLabel)] = config.owner_id;
  return result;
}

json KubernetesProvisioner::pod_manifest(const InstanceConfig& config) const {
  const auto names = resource_names(config.enclave_id).value();
  const json drop_all = {{"allowPrivilegeEscalation", false},
                         {"readOnlyRootFilesystem", true},
                         {"runAsNonRoot", true},
                         {"capabilities", {{"drop", json::array({"ALL"})}}},
                         {"seccompProfile", {{"type", "RuntimeDefault"}}}};
  const json env = json::array({
      env_variable("LICENSING_ENCLAVE_ID", config.enclave_id),
      env_variable("LICENSING_ENCLAVE_OWNER", config.owner_id),
      env_variable("LICENSING_ENCLAVE_DIR", kPrivateDirectory),
      env_variable("LICENSING_ENCLAVE_LISTEN", fmt::format("0.0.0.0:{}", kContainerPort)),
      env_variable("LICENSING_ENCLAVE_CSR_URL", config.csr_url),
      env_variable("LICENSING_ENCLAVE_CA_BUNDLE", fmt::format("{}/{}", kConfigMount, kCaBundleKey)),
      env_variable("LICENSING_ENCLAVE_BOOTSTRAP_FILE", fmt::format("{}/{}", kBootstrapMount, kCredentialKey)),
      env_variable("LICENSING_ENCLAVE_JWKS_FILE", fmt::format("{}/{}", kConfigMount, kJwksKey)),
      env_variable("LICENSING_ENCLAVE_ISSUER", config.issuer),
      env_variable("LICENSING_ENCLAVE_REQUIRE_CLIENT_CERT", config.require_client_certificate ? "true" : "false"),
      // The ingress host clients connect to: the CSR must ask for it, because cert-manager
      // signs only the names a CSR contains.
      env_variable("LICENSING_ENCLAVE_PUBLIC_HOST", fmt::format("{}.{}", names.pod, config_.enclave_domain)),
  });
  // TCP probes: the enclave listens only once it has a certificate, and an HTTPS probe
  // would fail its client-certificate check.
  const json probe_port = {{"tcpSocket", {{"port", kPortName}}}};
  json readiness = probe_port;
  readiness["periodSeconds"] = 2;
  json liveness = probe_port;
  liveness["initialDelaySeconds"] = 30;
  liveness["periodSeconds"] = 20;

  json container = {
      {"name", "enclave"},
      {"image", config_.image},
      {"imagePullPolicy", "IfNotPresent"},
      {"ports", json::array({{{"name", kPortName}, {"containerPort", kContainerPort}, {"protocol", "TCP"}}})},
      {"env", env},
      {"securityContext", drop_all},
      {"resources",
       {{"requests", {{"cpu", "50m"}, {"memory", "64Mi"}}},
        {"limits", {{"cpu", config_.cpu_limit}, {"memory", config_.memory_limit}}}}},
      {"readinessProbe", readiness},
      {"livenessProbe", liveness},
      {"volumeMounts", json::array({{{"name", "private"}, {"mountPath", kPrivateMount}},
                                    {{"name", "config"}, {"mountPath", kConfigMount}, {"readOnly", true}},
                                    {{"name", "bootstrap"}, {"mountPath", kBootstrapMount}, {"readOnly", true}}})},
  };
  // The Secret is optional: an enclave restarted with a valid certificate gets none.
  const json volumes = json::array({
      {{"name", "private"}, {"emptyDir", {{"medium", "Memory"}, {"sizeLimit", "16Mi"}}}},
      {{"name", "config"}, {"configMap", {{"name", names.config_map}}}},
      {{"name", "bootstrap"}, {"secret", {{"secretName", names.secret}, {"defaultMode", 0440}, {"optional", true}}}},
  });
  return {
      {"apiVersion", "v1"},
      {"kind", "Pod"},
      {"metadata", {{"name", names.pod}, {"namespace", config_.namespace_name}, {"labels", labels(config)}}},
      {"spec",
       {{"automountServiceAccountToken", false},
        {"enableServiceLinks", false},
        {"restartPolicy", "Always"},
        {"terminationGracePeriodSeconds", config_.termination_grace_seconds},
        {"securityContext",
         {{"runAsNonRoot", true},
          {"runAsUser", 65532},
          {"runAsGroup", 65532},
          {"fsGroup", 65532},
          {"seccompProfile", {{"type", "RuntimeDefault"}}}}},
        {"containers", json::array({container})},
        {"volumes", volumes}}},
  };
}

json KubernetesProvisioner::config_map_manifest(const InstanceConfig& config, const json& owner) const {
  const auto names = resource_names(config.enclave_id).value();
  return {{"apiVersion", "v1"},
          {"kind", "ConfigMap"},
          {"metadata",
           {{"name", names.config_map}, {"namespace", config_.namespace_name}, {"labels", labels(config)}, {"ownerReferences", owner}}},
          {"data", {{std::string(kJwksKey), config.jwks_json}, {std::string(kCaBundleKey), config.ca_bundle_pem}}}};
}

json KubernetesProvisioner::secret_manifest(const InstanceConfig& config, const json& owner) const {
  const auto names = resource_names(config.enclave_id).value();
  const std::string_view credential = config.bootstrap_credential ? config.bootstrap_credential->text() : std::string_view();
  return {{"apiVersion", "v1"},
          {"kind", "Secret"},
          {"metadata",
           {{"name", names.secret}, {"namespace", config_.namespace_name}, {"labels", labels(config)}, {"ownerReferences", owner}}},
          {"type", "Opaque"},
          {"data", {{std::string(kCredentialKey), encode_base64(credential)}}}};
}

json KubernetesProvisioner::service_manifest(const InstanceConfig& config, const json& owner) const {
  const auto names = resource_names(config.enclave_id).value();
  return {{"apiVersion", "v1"},
          {"kind", "Service"},
          {"metadata",
           {{"name", names.pod}, {"namespace", config_.namespace_name}, {"labels", labels(config)}, {"ownerReferences", owner}}},
          {"spec",
           {{"type", "ClusterIP"},
            {"selector", {{std::string(kManagedByLabel), kManagedByValue}, {std::string(kEnclaveIdLabel), config.enclave_id}}},
            {"ports", json::array({{{"name", kPortName}, {"port", 443}, {"targetPort", kPortName}, {"protocol", "TCP"}}})}}}};
}

json KubernetesProvisioner::ingress_manifest(const InstanceConfig& config, const json& owner) const {
  const auto names = resource_names(config.enclave_id).value();
  // ingress-nginx forwards the TLS stream by SNI without terminating it, so the enclave's
  // own certificate is what clients see.
  const json annotations = {{"nginx.ingress.kubernetes.io/ssl-passthrough", "true"},
                            {"nginx.ingress.kubernetes.io/backend-protocol", "HTTPS"}};
  const json path = {{"path", "/"},
                     {"pathType", "Prefix"},
                     {"backend", {{"service", {{"name", names.pod}, {"port", {{"name", kPortName}}}}}}}};
  return {{"apiVersion", "networking.k8s.io/v1"},
          {"kind", "Ingress"},
          {"metadata",
           {{"name", names.pod},
            {"namespace", config_.namespace_name},
            {"labels", labels(config)},
            {"annotations", annotations},
            {"ownerReferences", owner}}},
          {"spec",
           {{"ingressClassName", config_.ingress_class},
            {"rules", json::array({{{"host", fmt::format("{}.{}", names.pod, config_.enclave_domain)},
                                    {"http", {{"paths", json::array({path})}}}}})}}}};
}

Result<void, ProvisionError> KubernetesProvisioner::delete_object(const std::string& collection, const std::string& name) {
  auto deleted = client_->request("DELETE", collection + "/" + name);
  if (!deleted) return fail(ProvisionError::io, fmt::format("deleting {}/{} failed: {}", collection, name, describe(deleted.error())));
  if (deleted->status != 200 && deleted->status != 202 && deleted->status != 404) {
    return fail(ProvisionError::io, fmt::format("deleting {}/{} returned status {}", collection, name, deleted->status));
  }
  return {};
}

// Creates an object that belongs to the Pod `owner_uid`. An object of that name left by an
// earlier Pod (its garbage collection has not run) is deleted and created again.
Result<void, ProvisionError> KubernetesProvisioner::create_dependent(const std::string& collection, const json& manifest,
                                                                     const std::string& owner_uid) {
  const std::string name = manifest["metadata"]["name"];
  for (int attempt = 0; attempt < 2; ++attempt) {
    auto created = client_->request("POST", collection, manifest);
    if (!created) return fail(ProvisionError::spawn, fmt::format("creating {}/{} failed: {}", collection, name, describe(created.error())));
    if (created->status == 201 || created->status == 200) return {};
    if (created->status != 409) {
      return fail(ProvisionError::spawn, fmt::format("creating {}/{} returned status {}", collection, name, created->status));
    }

    auto existing = client_->request("GET", collection + "/" + name);
    if (!existing) return fail(ProvisionError::spawn, fmt::format("reading {}/{} failed: {}", collection, name, describe(existing.error())));
    if (existing->status == 200) {
      const auto references = existing->body["metadata"].value("ownerReferences", json::array());
      for (const auto& reference : references) {
        if (reference.value("uid", "") == owner_uid) return {};
      }
    }
    logging::info("kubernetes_stale_object_replaced", {{"object", collection + "/" + name}});
    if (auto deleted = delete_object(collection, name); !deleted) return deleted;
  }
  return fail(ProvisionError::spawn, fmt::format("{}/{} exists and could not be replaced", collection, name));
}

Result<std::string, ProvisionError> KubernetesProvisioner::start(const InstanceConfig& config) {
  const auto names = resource_names(config.enclave_id);
  if (!names) return fail(ProvisionError::spawn, "the enclave id is not a lowercase UUID");
  const std::string pods = core_path("pods");

  // The Pod first: its uid is what the other objects name as their owner.
  const json pod = pod_manifest(config);
  auto created = client_->request("POST", pods, pod);
  if (!created) return fail(ProvisionError::spawn, "creating the pod failed: " + describe(created.error()));
  if (created->status == 409) {
    logging::info("enclave_instance_replaced", {{"enclave_id", config.enclave_id}, {"pod", names->pod}});
    if (auto stopped = stop(config.enclave_id); !stopped) return std::unexpected(stopped.error());
    created = client_->request("POST", pods, pod);
    if (!created) return fail(ProvisionError::spawn, "creating the pod failed: " + describe(created.error()));
  }
  if (created->status != 201 && created->status != 200) {
    return fail(ProvisionError::spawn, fmt::format("creating pod {} returned status {}", names->pod, created->status));
  }
  const std::string uid = created->body.is_object() ? created->body["metadata"].value("uid", "") : "";
  if (uid.empty()) return fail(ProvisionError::spawn, "the created pod has no metadata.uid");
  const json owner = owner_reference(names->pod, uid);

  // Then its dependents. On failure the Pod goes, and with it whatever was created.
  Result<void, ProvisionError> dependents = create_dependent(core_path("configmaps"), config_map_manifest(config, owner), uid);
  if (dependents && config.bootstrap_credential) {
    dependents = create_dependent(core_path("secrets"), secret_manifest(config, owner), uid);
  } else if (dependents) {
    // A Secret left by an earlier Pod contains a used credential. It must not be mounted.
    // The core passes a credential on every start (keeps_private_directory() is false),
    // so this branch means a caller outside the core.
    logging::warn("enclave_instance_without_credential", {{"enclave_id", config.enclave_id}});
    dependents = delete_object(core_path("secrets"), names->secret);
  }
  if (dependents) dependents = create_dependent(core_path("services"), service_manifest(config, owner), uid);
  if (dependents) {
    const std::string ingresses = fmt::format("/apis/networking.k8s.io/v1/namespaces/{}/ingresses", config_.namespace_name);
    dependents = create_dependent(ingresses, ingress_manifest(config, owner), uid);
  }
  if (!dependents) {
    logging::error("enclave_instance_incomplete", {{"enclave_id", config.enclave_id}, {"detail", dependents.error().detail}});
    if (auto removed = remove(config.enclave_id); !removed) {
      logging::error("enclave_instance_cleanup_failed", {{"enclave_id", config.enclave_id}, {"detail", removed.error().detail}});
    }
    return std::unexpected(dependents.error());
  }
  logging::info("enclave_instance_created", {{"enclave_id", config.enclave_id}, {"pod", names->pod}});

  // A bounded wait for readiness. The core's own health check decides what a slow Pod means.
  const auto deadline = std::chrono::steady_clock::now() + config_.ready_timeout;
  auto ready = wait_for_object(*client_, pods, names->pod, deadline, [](const json& object) {
    if (object.is_null()) return true;
    const std::string phase = object.contains("status") ? object["status"].value("phase", "") : "";
    return has_true_condition(object, "Ready") || phase == "Failed" || phase == "Succeeded";
  });
  if (!ready) {
    logging::warn("enclave_instance_not_ready", {{"enclave_id", config.enclave_id}, {"detail", describe(ready.error())}});
  } else if (ready->is_null() || !has_true_condition(*ready, "Ready")) {
    return fail(ProvisionError::spawn, fmt::format("pod {} ended before it was ready", names->pod));
  }
  return names->pod;
}

Result<void, ProvisionError> KubernetesProvisioner::stop(std::string_view enclave_id) {
  const auto names = resource_names(enclave_id);
  if (!names) return fail(ProvisionError::io, "the enclave id is not a lowercase UUID");
  const std::string pods = core_path("pods");

  auto deleted = client_->request(
      "DELETE", fmt::format("{}/{}?gracePeriodSeconds={}&propagationPolicy=Background", pods, names->pod,
                            config_.termination_grace_seconds));
  if (!deleted) return fail(ProvisionError::io, "deleting the pod failed: " + describe(deleted.error()));
  if (deleted->status == 404) return {};
  if (deleted->status != 200 && deleted->status != 202) {
    return fail(ProvisionError::io, fmt::format("deleting pod {} returned status {}", names->pod, deleted->status));
  }

  const auto deadline = std::chrono::steady_clock::now() + config_.delete_timeout;
  auto gone = wait_for_object(*client_, pods, names->pod, deadline, [](const json& object) { return object.is_null(); });
  if (!gone) return fail(ProvisionError::io, fmt::format("pod {} is still there: {}", names->pod, describe(gone.error())));
  logging::info("enclave_instance_stopped", {{"enclave_id", std::string(enclave_id)}, {"pod", names->pod}});
  return {};
}

Result<void, ProvisionError> KubernetesProvisioner::remove(std::string_view enclave_id) {
  if (auto stopped = stop(enclave_id); !stopped) return stopped;
  const auto names = resource_names(enclave_id).value();
  const std::string ingresses = fmt::format("/apis/networking.k8s.io/v1/namespaces/{}/ingresses", config_.namespace_name);
  for (const auto& [collection, name] : {std::pair{ingresses, names.pod}, std::pair{core_path("services"), names.pod},
                                         std::pair{core_path("secrets"), names.secret},
                                         std::pair{core_path("configmaps"), names.config_map}}) {
    if (auto deleted = delete_object(collection, name); !deleted) return deleted;
  }
  return {};
}

std::vector<std::string> KubernetesProvisioner::running_instances() {
  const std::string selector = fmt::format("{}={},{}", kManagedByLabel, kManagedByValue, kEnclaveIdLabel);
  auto listed = client_->request("GET", core_path("pods") + "?labelSelector=" + url_encode(selector));
  if (!listed || listed->status != 200 || !listed->body.is_object()) {
    logging::error("enclave_instances_unlisted",
                   {{"detail", !listed ? describe(listed.error()) : fmt::format("status {}", listed->status)},
                    {"action", "returned the last successful listing"}});
    std::lock_guard lock(listing_mutex_);
    return last_listing_;
  }
  std::vector<std::string> running;
  for (const auto& pod : listed->body.value("items", json::array())) {
    const auto& metadata = pod.value("metadata", json::object());
    if (metadata.contains("deletionTimestamp") && !metadata["deletionTimestamp"].is_null()) continue;
    const std::string phase = pod.contains("status") ? pod["status"].value("phase", "") : "";
    if (phase == "Succeeded" || phase == "Failed") continue;
    const std::string id = metadata.value("labels", json::object()).value(std::string(kEnclaveIdLabel), "");
    // Only a Pod whose name matches its label is ours; anything else is left alone.
    const auto names = resource_names(id);
    if (names && metadata.value("name", "") == names->pod) running.push_back(id);
  }
  std::lock_guard lock(listing_mutex_);
  last_listing_ = running;
  return running;
}

Result<void, ProvisionError> KubernetesProvisioner::publish_jwks(std::string_view enclave_id, const std::string& jwks_json) {
  const auto names = resource_names(enclave_id);
  if (!names) return fail(ProvisionError::io, "the enclave id is not a lowercase UUID");
  const std::string path = core_path("configmaps") + "/" + names->config_map;

  for (int attempt = 1; attempt <= kMaxJwksConflicts; ++attempt) {
    auto current = client_->request("GET", path);
    if (!current) return fail(ProvisionError::io, "reading the ConfigMap failed: " + describe(current.error()));
    if (current->status != 200 || !current->body.is_object()) {
      return fail(ProvisionError::io, fmt::format("reading ConfigMap {} returned status {}", names->config_map, current->status));
    }
    json updated = std::move(current->body);
    updated["data"][std::string(kJwksKey)] = jwks_json;
    // The PUT carries the resourceVersion just read, so a concurrent writer causes a 409
    // and another round, never a lost update.
    auto replaced = client_->request("PUT", path, updated);
    if (!replaced) return fail(ProvisionError::io, "updating the ConfigMap failed: " + describe(replaced.error()));
    if (replaced->status == 200) return {};
    if (replaced->status != 409) {
      return fail(ProvisionError::io, fmt::format("updating ConfigMap {} returned status {}", names->config_map, replaced->status));
    }
  }
  return fail(ProvisionError::io, fmt::format("ConfigMap {} changed concurrently {} times in a row", names->config_map, kMaxJwksConflicts));
}

std::string KubernetesProvisioner::endpoint(std::string_view enclave_id, std::uint16_t) const {
  const auto names = resource_names(enclave_id);
  return fmt::format("https://{}.{}:443", names ? names->pod : std::string("invalid"), config_.enclave_domain);
}

std::vector<std::string> KubernetesProvisioner::certificate_ip_addresses() const { return {}; }

}  // namespace licensing::core::kubernetes
