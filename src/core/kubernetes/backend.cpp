#include "core/kubernetes/backend.hpp"

#include <CLI/CLI.hpp>
#include <fmt/core.h>

#include <regex>

namespace licensing::core::kubernetes {
namespace {

// A DNS subdomain: labels of [a-z0-9-], at most 253 characters in all.
bool is_dns_subdomain(std::string_view name) {
  static const std::regex pattern(R"(^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$)");
  return !name.empty() && name.size() <= 253 && std::regex_match(name.begin(), name.end(), pattern);
}

// A namespace name: an RFC 1123 label of at most 63 characters.
bool is_namespace_name(std::string_view name) {
  static const std::regex pattern(R"(^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$)");
  return std::regex_match(name.begin(), name.end(), pattern);
}

}  // namespace

void add_kubernetes_options(CLI::App& app, KubernetesOptions& options) {
  app.add_option("--kubernetes-namespace", options.namespace_name,
                 "Namespace of the enclaves' pods and of the cert-manager Issuer (Kubernetes provisioner)")
      ->capture_default_str();
  app.add_option("--kubeconfig", options.kubeconfig,
                 "Kubeconfig file for development (default: the in-cluster service account)");
  app.add_option("--enclave-image", options.enclave_image,
                 "The enclave image by digest, REPOSITORY@sha256:DIGEST (Kubernetes provisioner)");
  app.add_option("--enclave-domain", options.enclave_domain,
                 "DNS domain under which the ingress serves enclave-<id>.DOMAIN (Kubernetes provisioner)");
  app.add_option("--cert-manager-issuer", options.cert_manager_issuer,
                 "Name of the cert-manager Issuer in the enclaves' namespace that signs enclave certificates")
      ->capture_default_str();
  app.add_option("--cert-manager-timeout", options.cert_manager_timeout_seconds,
                 "Seconds to wait for cert-manager to sign an enclave certificate")
      ->check(CLI::Range(1L, 3600L))
      ->capture_default_str();
}

bool is_image_digest_reference(std::string_view image) {
  static const std::regex pattern(R"(^[a-z0-9][a-z0-9._/:-]*@sha256:[0-9a-f]{64}$)");
  return std::regex_match(image.begin(), image.end(), pattern);
}

std::string image_sha256(std::string_view image) {
  if (!is_image_digest_reference(image)) return {};
  return std::string(image.substr(image.size() - 64));
}

Result<std::shared_ptr<Client>, ApiError> make_client(const KubernetesOptions& options) {
  if (!is_namespace_name(options.namespace_name)) {
    return fail(ApiError::config, fmt::format("--kubernetes-namespace '{}' is not a valid namespace name", options.namespace_name));
  }
  auto config = options.kubeconfig.empty() ? in_cluster_config() : load_kubeconfig(options.kubeconfig);
  if (!config) return std::unexpected(config.error());
  return std::make_shared<Client>(std::move(*config));
}

Result<std::unique_ptr<KubernetesProvisioner>, ApiError> make_provisioner(const KubernetesOptions& options) {
  if (!is_image_digest_reference(options.enclave_image)) {
    return fail(ApiError::config,
                fmt::format("--enclave-image '{}' must name the image by digest: REPOSITORY@sha256:<64 hex digits>",
                            options.enclave_image));
  }
  // enclave-<uuid> is 44 characters; the whole host name must fit in 253.
  if (!is_dns_subdomain(options.enclave_domain) || options.enclave_domain.size() > 253 - 45) {
    return fail(ApiError::config,
                fmt::format("--enclave-domain '{}' must be a lowercase DNS name such as enclaves.example.com",
                            options.enclave_domain));
  }
  auto client = make_client(options);
  if (!client) return std::unexpected(client.error());

  KubernetesProvisionerConfig config;
  config.namespace_name = options.namespace_name;
  config.image = options.enclave_image;
  config.enclave_domain = options.enclave_domain;
  return std::make_unique<KubernetesProvisioner>(std::move(*client), std::move(config));
}

Result<std::unique_ptr<CertManagerIssuer>, ApiError> make_cert_manager_issuer(const KubernetesOptions& options) {
  if (!is_dns_subdomain(options.cert_manager_issuer)) {
    return fail(ApiError::config, fmt::format("--cert-manager-issuer '{}' is not a valid object name", options.cert_manager_issuer));
  }
  auto client = make_client(options);
  if (!client) return std::unexpected(client.error());

  CertManagerIssuerConfig config;
  config.namespace_name = options.namespace_name;
  config.issuer_name = options.cert_manager_issuer;
  config.timeout = std::chrono::seconds(options.cert_manager_timeout_seconds);
  return std::make_unique<CertManagerIssuer>(std::move(*client), std::move(config));
}

}  // namespace licensing::core::kubernetes
