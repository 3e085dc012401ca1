// The local provisioner: one process per enclave on this host, each in its own process
// group, with a private directory ROOT/<enclave id> (0700) and a log file
// ROOT/logs/<enclave id>.log. Instances are found again after a restart of
// licensing-core by scanning /proc for processes whose environment names a directory
// under ROOT, so an instance is never lost even when the core died before recording it.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "core/provisioner.hpp"

namespace licensing::core {

struct LocalProvisionerConfig {
  std::filesystem::path binary;  // the enclave program
  std::filesystem::path root;    // parent of the private directories, created 0700
  std::chrono::milliseconds stop_grace{5000};  // SIGTERM, then SIGKILL after this
};

class LocalProvisioner final : public Provisioner {
 public:
  explicit LocalProvisioner(LocalProvisionerConfig config);

  Result<std::string, ProvisionError> start(const InstanceConfig& config) override;
  Result<void, ProvisionError> stop(std::string_view enclave_id) override;
  Result<void, ProvisionError> remove(std::string_view enclave_id) override;
  std::vector<std::string> running_instances() override;
  // Rewrites the instance's jwks.json and sends it SIGHUP, which makes it reread the file.
  Result<void, ProvisionError> publish_jwks(std::string_view enclave_id, const std::string& jwks_json) override;
  std::string endpoint(std::string_view enclave_id, std::uint16_t port) const override;
  std::vector<std::string> certificate_ip_addresses() const override;

  // The process ids of the enclave's instance (normally one).
  std::vector<pid_t> find_processes(std::string_view enclave_id);

 private:
  // Every live process whose environment marks it as an instance under root_, by id.
  std::multimap<std::string, pid_t> scan_processes();
  // scan_processes plus this run's children that have not exited yet.
  std::multimap<std::string, pid_t> live_processes();
  // Reaps children of this process that have exited, so they stop showing up as zombies.
  void reap_children();
  Result<void, ProvisionError> write_files(const std::filesystem::path& directory, const InstanceConfig& config);
  Result<pid_t, ProvisionError> spawn(const std::filesystem::path& directory, const InstanceConfig& config);

  LocalProvisionerConfig config_;
  std::mutex mutex_;  // guards children_ and serializes start and stop
  std::map<pid_t, std::string> children_;  // processes this run started and has not reaped
};

}  // namespace licensing::core
