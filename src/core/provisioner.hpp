// The provisioner interface: it runs one isolated instance per enclave. The local
// provisioner runs processes on this host; a Kubernetes provisioner (pods) can implement
// the same interface. Instances are named after the enclave id, never after a username.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.hpp"
#include "common/secret.hpp"

namespace licensing::core {

enum class ProvisionError {
  io,            // creating the instance's directory or files failed
  spawn,         // the instance could not be started (missing binary, fork failed)
  port_in_use,   // another program listens on the enclave's port
};

// Everything an instance is started with; the environment variables of docs/enclaves.md
// are built from it.
struct InstanceConfig {
  std::string enclave_id;
  std::string owner_id;
  std::uint16_t port = 0;
  std::string csr_url;
  std::string issuer;
  std::string jwks_json;
  std::string ca_bundle_pem;
  // Written to the bootstrap file when set. Unset on a restart of an enclave that has a
  // certificate already; the bootstrap file is then removed, because its credential is
  // used or replaced.
  std::optional<SecretBytes> bootstrap_credential;
  bool require_client_certificate = true;
};

class Provisioner {
 public:
  virtual ~Provisioner() = default;

  // Creates the instance's private resources and starts it. An instance of the same
  // enclave that still runs is stopped first. Returns the instance's name.
  virtual Result<std::string, ProvisionError> start(const InstanceConfig& config) = 0;
  // Stops the instance: a polite request first, then a forced stop after a bounded wait.
  // Succeeds when nothing of that enclave runs.
  virtual Result<void, ProvisionError> stop(std::string_view enclave_id) = 0;
  // Stops the instance and removes its resources.
  virtual Result<void, ProvisionError> remove(std::string_view enclave_id) = 0;
  // The enclave ids of every instance that runs now, including instances that an earlier
  // run of licensing-core started.
  virtual std::vector<std::string> running_instances() = 0;

  // Hands a running instance a new JWKS after the signing keys changed, so tokens signed
  // by a new key verify there. The default does nothing, for provisioners whose instances
  // read the JWKS some other way.
  virtual Result<void, ProvisionError> publish_jwks(std::string_view enclave_id, const std::string& jwks_json) {
    static_cast<void>(enclave_id);
    static_cast<void>(jwks_json);
    return {};
  }
  // https://host:port as a client reaches the instance.
  virtual std::string endpoint(std::string_view enclave_id, std::uint16_t port) const = 0;
  // IP addresses to name in the enclave's certificate besides its DNS name.
  virtual std::vector<std::string> certificate_ip_addresses() const = 0;
  // Whether an instance started again finds the private directory (key, certificate) of
  // the one before. When it does not, every start gets a bootstrap credential.
  virtual bool keeps_private_directory() const { return true; }
};

}  // namespace licensing::core
