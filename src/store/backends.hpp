// Internal to the store library: the two back ends and helpers they share.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>

#include "store/store.hpp"

namespace licensing::store::detail {

// Opens the SQLite file at an absolute `path`.
Result<std::unique_ptr<Store>, StoreError> open_sqlite_store(const std::string& path, const StoreOptions& options);

// Opens a pool of connections to the libpq connection URI `url`.
Result<std::unique_ptr<Store>, StoreError> open_postgres_store(const std::string& url, const StoreOptions& options);

// Checks that versions run 1, 2, 3, ... so that the highest version is the list's size.
Result<void, StoreError> check_migration_list(std::span<const Migration> migrations);

// Whole Unix seconds, rounded down, as the schema stores every time.
inline std::int64_t to_unix_seconds(TimePoint time) {
  return std::chrono::floor<std::chrono::seconds>(time.time_since_epoch()).count();
}

inline TimePoint from_unix_seconds(std::int64_t seconds) {
  return TimePoint{std::chrono::seconds{seconds}};
}

// A refresh token row with the state of its family, as both back ends read it inside the
// transaction that decides its fate.
struct RefreshTokenState {
  RefreshToken token;
  bool used = false;
  bool family_revoked = false;
};

// Decides what presenting a known token means, in the order the Store contract lists.
inline RefreshOutcome decide_refresh_outcome(const RefreshTokenState& state, TimePoint now) {
  if (state.family_revoked) return RefreshOutcome::revoked;
  if (state.used) return RefreshOutcome::reused;
  if (to_unix_seconds(now) >= to_unix_seconds(state.token.expires_at)) return RefreshOutcome::expired;
  return RefreshOutcome::rotated;
}

// The columns every enclave query selects, in the order read_enclave functions expect.
inline constexpr std::string_view kEnclaveColumns =
    "id, owner_id, state, endpoint, port, instance, failure_reason, coalesce(idempotency_key, ''), "
    "certificate_not_after, created_at, updated_at";

// The lowest port of `ports` that is not in `taken`.
inline std::optional<std::uint16_t> lowest_free_port(const std::set<std::int64_t>& taken, PortRange ports) {
  for (std::int64_t port = ports.first; port <= ports.last; ++port) {
    if (!taken.contains(port)) return static_cast<std::uint16_t>(port);
  }
  return std::nullopt;
}

inline std::string_view to_column(CredentialKind kind) {
  return kind == CredentialKind::bootstrap ? "bootstrap" : "renewal";
}

inline std::optional<CredentialKind> credential_kind_from_column(std::string_view text) {
  if (text == "bootstrap") return CredentialKind::bootstrap;
  if (text == "renewal") return CredentialKind::renewal;
  return std::nullopt;
}

// A credential row as read inside the transaction that consumes it.
struct CredentialState {
  std::string enclave_id;
  std::string kind;
  std::int64_t expires_at = 0;
  bool used = false;
};

// Decides what presenting a stored credential means: a credential of another enclave is
// reported as unknown, so the reply does not reveal that it exists.
inline CredentialOutcome decide_credential_outcome(const CredentialState& state, std::string_view enclave_id,
                                                   TimePoint now) {
  if (state.enclave_id != enclave_id) return CredentialOutcome::unknown;
  if (state.used) return CredentialOutcome::used;
  if (to_unix_seconds(now) >= state.expires_at) return CredentialOutcome::expired;
  return CredentialOutcome::consumed;
}

}  // namespace licensing::store::detail
