// Internal to the store library: the two back ends and helpers they share.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

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

}  // namespace licensing::store::detail
