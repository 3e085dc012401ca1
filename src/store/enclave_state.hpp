// The enclave life cycle: the states a record moves through and the one table of the
// transitions allowed between them. The store rejects every other transition.
#pragma once

#include <optional>
#include <string_view>

namespace licensing::store {

enum class EnclaveState {
  requested,  // the record exists; nothing runs yet
  starting,   // the instance was started; it is fetching its certificate
  ready,      // the instance serves GET /healthz over TLS with its issued certificate
  deleting,   // the instance is being stopped and its resources removed
  deleted,    // nothing of it remains but the record
  failed,     // it could not be made ready, and failure_reason gives the reason
};

constexpr std::string_view to_string(EnclaveState state) {
  switch (state) {
    case EnclaveState::requested: return "requested";
    case EnclaveState::starting: return "starting";
    case EnclaveState::ready: return "ready";
    case EnclaveState::deleting: return "deleting";
    case EnclaveState::deleted: return "deleted";
    case EnclaveState::failed: return "failed";
  }
  return "unknown";
}

constexpr std::optional<EnclaveState> parse_enclave_state(std::string_view text) {
  for (auto state : {EnclaveState::requested, EnclaveState::starting, EnclaveState::ready, EnclaveState::deleting,
                     EnclaveState::deleted, EnclaveState::failed}) {
    if (to_string(state) == text) return state;
  }
  return std::nullopt;
}

// Live records count against the owner's quota and hold their port.
constexpr bool is_live(EnclaveState state) {
  return state != EnclaveState::deleted && state != EnclaveState::failed;
}

// The allowed transitions:
//   requested -> starting | failed | deleting
//   starting  -> ready | failed | deleting
//   ready     -> starting | failed | deleting  (starting: the instance died and is restarted)
//   failed    -> deleting
//   deleting  -> deleted
// deleted is final.
constexpr bool is_allowed_transition(EnclaveState from, EnclaveState to) {
  using enum EnclaveState;
  switch (from) {
    case requested: return to == starting || to == failed || to == deleting;
    case starting: return to == ready || to == failed || to == deleting;
    case ready: return to == starting || to == failed || to == deleting;
    case failed: return to == deleting;
    case deleting: return to == deleted;
    case deleted: return false;
  }
  return false;
}

}  // namespace licensing::store
