// The Kubernetes provisioner: one Pod per enclave in one namespace, with a ConfigMap
// (JWKS and CA bundle), a Secret (the bootstrap credential, when there is one), a Service
// and an Ingress with TLS passthrough, so TLS ends inside the enclave. Every name derives
// from the enclave id only (`enclave-<uuid>`); labels carry the enclave id, the owner id
// when it is a valid label value, and app.kubernetes.io/managed-by=licensing-core, which
// is how a restarted core finds its instances again.
//
// The Pod is created first and the other objects carry an ownerReference to it, so the
// cluster's garbage collector removes them with the Pod. remove() also deletes them
// explicitly, for clusters or tests where no garbage collector runs.
#pragma once

#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "core/kubernetes/client.hpp"
#include "core/provisioner.hpp"

namespace licensing::core::kubernetes {

struct KubernetesProvisionerConfig {
  std::string namespace_name = "licensing-enclaves";
  std::string image;           // the enclave image by digest: repository@sha256:<64 hex>
  std::string enclave_domain;  // instances are reached at enclave-<uuid>.<enclave_domain>
  std::string ingress_class = "nginx";
  // How long start() waits for the Pod to be Ready. A Pod that is not Ready by then is
  // left running for the core's own ready deadline to judge. It stays below the
  // gateway's 60 s deadline for provisioning calls.
  std::chrono::milliseconds ready_timeout{std::chrono::seconds(30)};
  // How long stop() waits for the Pod to be gone after the delete.
  std::chrono::milliseconds delete_timeout{std::chrono::seconds(60)};
  int termination_grace_seconds = 10;
  std::string cpu_limit = "500m";
  std::string memory_limit = "256Mi";
};

// The names of an enclave's objects. Every one is a DNS-1035 label of at most 63
// characters, because the enclave id is a lowercase UUID.
struct ResourceNames {
  std::string pod;         // also the Service and the Ingress
  std::string config_map;  // enclave-<uuid>-config
  std::string secret;      // enclave-<uuid>-bootstrap
};

// Returns the names for `enclave_id`, or nothing when it is not a lowercase UUID.
std::optional<ResourceNames> resource_names(std::string_view enclave_id);
// True when `value` may be a Kubernetes label value: at most 63 characters of
// [A-Za-z0-9._-], beginning and ending with an alphanumeric character, or empty.
bool is_label_value(std::string_view value);
// True when `name` is a DNS-1035 label: at most 63 of [a-z0-9-], starting with a letter
// and ending with a letter or digit.
bool is_dns_label(std::string_view name);

// The label that carries the enclave id, and the selector for every managed instance.
inline constexpr std::string_view kEnclaveIdLabel = "licensing.internal/enclave-id";
inline constexpr std::string_view kOwnerIdLabel = "licensing.internal/owner-id";
inline constexpr std::string_view kManagedByLabel = "app.kubernetes.io/managed-by";
inline constexpr std::string_view kManagedByValue = "licensing-core";

class KubernetesProvisioner final : public Provisioner {
 public:
  KubernetesProvisioner(std::shared_ptr<Client> client, KubernetesProvisionerConfig config);

  // Creates the Pod, then its dependents, and waits a bounded time for the Pod to be
  // Ready. A Pod of the same enclave that exists already (409) is stopped first.
  Result<std::string, ProvisionError> start(const InstanceConfig& config) override;
  // Deletes the Pod (404 counts as done) and waits until it is gone.
  Result<void, ProvisionError> stop(std::string_view enclave_id) override;
  // stop(), then deletes the Service, Ingress, ConfigMap and Secret (404 counts as done).
  Result<void, ProvisionError> remove(std::string_view enclave_id) override;
  // Managed Pods that are neither Succeeded nor Failed nor being deleted. When the API
  // cannot be read, the last successful listing is returned and the failure logged: an
  // empty list would make the reconciler restart every instance.
  std::vector<std::string> running_instances() override;
  // Replaces jwks.json in the enclave's ConfigMap (GET, then PUT with its
  // resourceVersion, again on 409).
  // The kubelet refreshes the mounted file after its sync period, and the enclave rereads
  // it every 30 s, so a new key reaches it within that sync period plus 30 s.
  Result<void, ProvisionError> publish_jwks(std::string_view enclave_id, const std::string& jwks_json) override;
  // https://enclave-<uuid>.<enclave domain>:443; the port is ignored.
  std::string endpoint(std::string_view enclave_id, std::uint16_t port) const override;
  // None: clients reach an instance by its DNS name through the Ingress.
  std::vector<std::string> certificate_ip_addresses() const override;
  // A new pod starts with an empty in-memory volume.
  bool keeps_private_directory() const override { return false; }

  // The manifests start() sends, for tests and for review.
  nlohmann::json pod_manifest(const InstanceConfig& config) const;
  nlohmann::json config_map_manifest(const InstanceConfig& config, const nlohmann::json& owner) const;
  nlohmann::json secret_manifest(const InstanceConfig& config, const nlohmann::json& owner) const;
  nlohmann::json service_manifest(const InstanceConfig& config, const nlohmann::json& owner) const;
  nlohmann::json ingress_manifest(const InstanceConfig& config, const nlohmann::json& owner) const;

 private:
  Result<void, ProvisionError> create_dependent(const std::string& collection, const nlohmann::json& manifest,
                                                const std::string& owner_uid);
  Result<void, ProvisionError> delete_object(const std::string& collection, const std::string& name);
  nlohmann::json labels(const InstanceConfig& config) const;
  std::string core_path(std::string_view resource) const;

  std::shared_ptr<Client> client_;
  KubernetesProvisionerConfig config_;
  std::mutex listing_mutex_;  // guards last_listing_
  std::vector<std::string> last_listing_;
};

}  // namespace licensing::core::kubernetes
