// The Kubernetes backend as licensing-core's command line selects it: the options
// (--kubernetes-namespace, --kubeconfig, --enclave-image, --enclave-domain,
// --cert-manager-issuer, --cert-manager-timeout) and factories for the provisioner and
// the cert-manager issuer built from them.
//
// Use in main():
//   licensing::core::kubernetes::KubernetesOptions kubernetes_options;
//   licensing::core::kubernetes::add_kubernetes_options(app, kubernetes_options);
//   ...
//   auto provisioner = licensing::core::kubernetes::make_provisioner(kubernetes_options);
//   auto issuer = licensing::core::kubernetes::make_cert_manager_issuer(kubernetes_options);
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "common/error.hpp"
#include "core/enclave_issuer.hpp"
#include "core/kubernetes/cert_manager_issuer.hpp"
#include "core/kubernetes/client.hpp"
#include "core/kubernetes/provisioner.hpp"

namespace CLI {
class App;
}

namespace licensing::core::kubernetes {

struct KubernetesOptions {
  std::string namespace_name = "licensing-enclaves";
  // A kubeconfig for development; empty means the in-cluster service account.
  std::string kubeconfig;
  std::string enclave_image;   // repository@sha256:<64 hex>
  std::string enclave_domain;  // instances are reached at enclave-<uuid>.<domain>
  std::string cert_manager_issuer = "licensing-ca";
  long cert_manager_timeout_seconds = 60;
};

// Registers the options above on `app`. They are validated by the factories, because
// they are required only when the Kubernetes provisioner or cert-manager is selected.
void add_kubernetes_options(CLI::App& app, KubernetesOptions& options);

// True when `image` names an image by digest: a repository, "@sha256:" and 64 lowercase
// hex digits.
bool is_image_digest_reference(std::string_view image);
// The 64 hex digits after "@sha256:" (what the core measures as the enclave image), or
// empty when `image` is not by digest.
std::string image_sha256(std::string_view image);

// An API client from --kubeconfig, or from the in-cluster configuration without it.
Result<std::shared_ptr<Client>, ApiError> make_client(const KubernetesOptions& options);

// Builds the Kubernetes provisioner. Fails (ApiError::config, with the option's name) on
// an image that is not by digest, an empty or invalid --enclave-domain, or an unusable
// cluster configuration.
Result<std::unique_ptr<KubernetesProvisioner>, ApiError> make_provisioner(const KubernetesOptions& options);

// Builds the cert-manager issuer with the Issuer named by --cert-manager-issuer.
Result<std::unique_ptr<CertManagerIssuer>, ApiError> make_cert_manager_issuer(const KubernetesOptions& options);

}  // namespace licensing::core::kubernetes
