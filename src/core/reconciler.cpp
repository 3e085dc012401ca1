// Reconciliation and monitoring of enclaves: the part of EnclaveManager that compares
// records with the instances the provisioner really runs. It runs once at start and then
// on every tick of the monitor thread. A crash of licensing-core at any point is thus
// repaired by the next pass: no instance runs without a live record, and no live record
// stays without an instance.
#include <fcntl.h>
#include <fmt/core.h>
#include <unistd.h>

#include "client/https_client.hpp"
#include "common/logging.hpp"
#include "core/enclave_service.hpp"

namespace licensing::core {
namespace {

using store::EnclaveState;
using SystemClock = std::chrono::system_clock;
using SteadyClock = std::chrono::steady_clock;

}  // namespace

void EnclaveManager::start() {
  reconcile();
  monitor_ = std::thread([this] { monitor_loop(); });
}

void EnclaveManager::stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (monitor_.joinable()) monitor_.join();
}

void EnclaveManager::monitor_loop() {
  std::unique_lock lock(mutex_);
  while (!stopping_) {
    wake_.wait_for(lock, policy_.monitor_interval, [this] { return stopping_; });
    if (stopping_) break;
    lock.unlock();
    reconcile();
    lock.lock();
  }
}

// Writes `content` to `path` with mode 0600, replacing any older file.
static bool write_private_file(const std::filesystem::path& path, const std::string& content) {
  std::filesystem::remove(path);
  const int descriptor = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (descriptor < 0) return false;
  const bool written = ::write(descriptor, content.data(), content.size()) == static_cast<ssize_t>(content.size());
  ::close(descriptor);
  return written;
}

std::optional<std::pair<std::string, std::string>> EnclaveManager::health_client_files(const std::string& owner_id) {
  // An enclave that requires client certificates accepts only its owner's, so the health
  // check presents a short-lived one for the owner, made and kept by the core.
  const auto directory = policy_.ca_root_file.parent_path() / "health-clients";
  const auto certificate_file = directory / (owner_id + ".pem");
  const auto key_file = directory / (owner_id + ".key");
  const auto now = std::chrono::system_clock::now();

  std::lock_guard lock(health_mutex_);
  if (const auto found = health_clients_.find(owner_id); found != health_clients_.end() && found->second > now + std::chrono::minutes(5)) {
    return std::pair{certificate_file.string(), key_file.string()};
  }
  std::error_code error;
  std::filesystem::create_directories(directory, error);
  std::filesystem::permissions(directory, std::filesystem::perms::owner_all, std::filesystem::perm_options::replace, error);

  auto key_and_csr = crypto::generate_key_and_csr("licensing-core health check");
  if (!key_and_csr) return std::nullopt;
  crypto::ClientCertificateRequest request;
  request.csr_pem = key_and_csr->csr_pem;
  request.user_id = owner_id;
  request.lifetime = std::chrono::hours(1);
  auto issued = authority_.issue_client_certificate(request);
  if (!issued || !write_private_file(key_file, key_and_csr->private_key_pem) ||
      !write_private_file(certificate_file, issued->chain_pem)) {
    logging::error("health_client_certificate_failed", {{"owner_id", owner_id}});
    return std::nullopt;
  }
  health_clients_[owner_id] = issued->not_after;
  return std::pair{certificate_file.string(), key_file.string()};
}

bool EnclaveManager::is_healthy(const store::Enclave& enclave) {
  client::HttpRequest request;
  request.url = provisioner_.endpoint(enclave.id, enclave.port) + "/healthz";
  client::HttpOptions options;
  // NOTE: the check connects to the endpoint clients use; on Kubernetes that is the
  // public ingress host, so the core's pod must be able to resolve and reach it.
  options.ca_bundle_file =
      (policy_.health_ca_bundle_file.empty() ? policy_.ca_root_file : policy_.health_ca_bundle_file).string();
  options.timeout = policy_.health_timeout;
  if (policy_.require_client_certificate) {
    const auto files = health_client_files(enclave.owner_id);
    if (!files) return false;
    options.client_certificate_file = files->first;
    options.client_key_file = files->second;
  }
  auto response = client::send(request, options);
  return response && response->status == 200;
}

void EnclaveManager::publish_jwks(const std::string& jwks_json) {
  auto records = store_.list_all_enclaves();
  if (!records) {
    logging::error("jwks_publish_failed", {{"detail", records.error().detail}});
    return;
  }
  for (const auto& enclave : *records) {
    if (!store::is_live(enclave.state)) continue;
    auto published = provisioner_.publish_jwks(enclave.id, jwks_json);
    if (!published) {
      logging::error("jwks_publish_failed", {{"enclave_id", enclave.id}, {"detail", published.error().detail}});
    }
  }
  logging::info("jwks_published", {{"enclaves", records->size()}});
}

void EnclaveManager::reconcile() {
  std::lock_guard pass(reconcile_mutex_);
  auto records = store_.list_all_enclaves();
  if (!records) {
    logging::error("reconcile_failed", {{"detail", records.error().detail}});
    return;
  }

  std::map<std::string, EnclaveState> states;
  for (const auto& enclave : *records) states[enclave.id] = enclave.state;
  const auto running_ids = provisioner_.running_instances();
  const std::set<std::string> running(running_ids.begin(), running_ids.end());

  // An instance whose record is missing or has ended is stopped.
  for (const auto& id : running) {
    const auto state = states.find(id);
    const bool has_live_record = state != states.end() && store::is_live(state->second);
    if (has_live_record || !claim(id)) continue;
    logging::warn("enclave_orphan_stopped", {{"enclave_id", id}});
    auto stopped = provisioner_.stop(id);
    if (!stopped) logging::error("enclave_stop_failed", {{"enclave_id", id}, {"detail", stopped.error().detail}});
    release(id);
  }

  for (const auto& enclave : *records) {
    if (!store::is_live(enclave.state) || !claim(enclave.id)) continue;
    reconcile_one(enclave, running);
    release(enclave.id);
  }
}

void EnclaveManager::reconcile_one(const store::Enclave& enclave, const std::set<std::string>& running) {
  const bool is_running = running.contains(enclave.id);
  const auto now = SteadyClock::now();

  if (enclave.state == EnclaveState::deleting) {
    static_cast<void>(finish_delete(enclave));
    return;
  }

  Watch watch;
  {
    std::lock_guard lock(mutex_);
    auto [entry, inserted] = watches_.try_emplace(enclave.id);
    if (inserted) entry->second.starting_since = now;
    watch = entry->second;
  }

  if (enclave.state == EnclaveState::requested && is_running) {
    // The core stopped between starting the instance and recording it.
    auto starting = store_.transition_enclave(enclave.id, EnclaveState::requested, EnclaveState::starting,
                                              {.endpoint = provisioner_.endpoint(enclave.id, enclave.port)},
                                              SystemClock::now());
    if (!starting) logging::error("reconcile_failed", {{"enclave_id", enclave.id}, {"detail", starting.error().detail}});
    return;
  }

  if (!is_running) {
    // Restart with a growing delay; past max_restarts the enclave is failed.
    if (enclave.state != EnclaveState::requested && watch.restarts >= policy_.max_restarts) {
      static_cast<void>(fail_enclave(enclave, fmt::format("the instance exited {} times", watch.restarts + 1)));
      return;
    }
    if (now < watch.next_restart) return;
    {
      std::lock_guard lock(mutex_);
      auto& entry = watches_[enclave.id];
      entry.restarts += enclave.state == EnclaveState::requested ? 0 : 1;
      entry.next_restart = now + std::chrono::seconds(1 << std::min(entry.restarts, 5));
    }
    logging::warn("enclave_restarting", {{"enclave_id", enclave.id}, {"state", store::to_string(enclave.state)}});

    store::Enclave current = enclave;
    if (enclave.state == EnclaveState::ready) {
      auto starting = store_.transition_enclave(enclave.id, EnclaveState::ready, EnclaveState::starting, {}, SystemClock::now());
      if (!starting) return;
      current = std::move(*starting);
    }
    // A ready instance stored its certificate, so its restart gets no new bootstrap
    // credential: an unused one would lie in its directory for its whole lifetime.
    auto instance = launch(current, enclave.state == EnclaveState::ready);
    if (!instance) {
      static_cast<void>(fail_enclave(current, instance.error().detail));
      return;
    }
    if (current.state == EnclaveState::requested) {
      auto starting = store_.transition_enclave(
          enclave.id, EnclaveState::requested, EnclaveState::starting,
          {.endpoint = provisioner_.endpoint(enclave.id, enclave.port), .instance = *instance}, SystemClock::now());
      if (!starting) logging::error("reconcile_failed", {{"enclave_id", enclave.id}, {"detail", starting.error().detail}});
    }
    return;
  }

  if (enclave.state != EnclaveState::starting) return;
  if (is_healthy(enclave)) {
    auto ready = store_.transition_enclave(enclave.id, EnclaveState::starting, EnclaveState::ready, {}, SystemClock::now());
    if (ready) {
      logging::info("enclave_ready", {{"enclave_id", enclave.id}});
      // Only consecutive failures count towards max_restarts: an instance that became
      // healthy again starts with a clean slate.
      std::lock_guard lock(mutex_);
      watches_[enclave.id].restarts = 0;
    }
    return;
  }
  if (now - watch.starting_since > policy_.ready_deadline) {
    static_cast<void>(fail_enclave(
        enclave, fmt::format("the instance did not pass its TLS health check within {} s", policy_.ready_deadline.count())));
  }
}

}  // namespace licensing::core
