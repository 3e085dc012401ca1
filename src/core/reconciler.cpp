// Reconciliation and monitoring of enclaves: the part of EnclaveManager that compares
// records with the instances the provisioner really runs. It runs once at start and then
// on every tick of the monitor thread. A crash of licensing-core at any point is thus
// repaired by the next pass: no instance runs without a live record, and no live record
// stays without an instance.
#include <fmt/core.h>

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

bool EnclaveManager::is_healthy(const store::Enclave& enclave) {
  client::HttpRequest request;
  request.url = provisioner_.endpoint(enclave.id, enclave.port) + "/healthz";
  client::HttpOptions options;
  options.ca_bundle_file = policy_.ca_root_file.string();
  options.timeout = policy_.health_timeout;
  auto response = client::send(request, options);
  return response && response->status == 200;
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
    auto instance = launch(current);
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
    if (ready) logging::info("enclave_ready", {{"enclave_id", enclave.id}});
    return;
  }
  if (now - watch.starting_since > policy_.ready_deadline) {
    static_cast<void>(fail_enclave(
        enclave, fmt::format("the instance did not pass its TLS health check within {} s", policy_.ready_deadline.count())));
  }
}

}  // namespace licensing::core
