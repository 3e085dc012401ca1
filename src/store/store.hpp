// The database interface. PostgreSQL (production) and SQLite (the embedded default)
// implement it with one schema and pass one test suite. Every method is safe to call
// from several threads at once.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "common/error.hpp"

namespace licensing::store {

enum class StoreError {
  conflict,     // a unique key exists already (username key, refresh token hash, ...)
  not_found,    // the row to update does not exist
  unavailable,  // the database cannot be reached or timed out; retry later
  corrupt,      // a row violates the schema's invariants
  migration,    // the schema cannot be brought to the version this build expects
};

using TimePoint = std::chrono::system_clock::time_point;

struct User {
  std::string id;             // UUID v4, text
  std::string username;       // NFC display form
  std::string username_key;   // normalized unique key (see common/username.hpp)
  std::string password_hash;  // $argon2id$... or $2b$...
  TimePoint created_at;
};

struct RefreshToken {
  std::string token_hash;  // hex SHA-256 of the opaque token; the token itself is never stored
  std::string family_id;   // one login starts a family; every rotation stays in it
  std::string user_id;
  TimePoint issued_at;
  TimePoint expires_at;
};

enum class RefreshOutcome {
  rotated,   // the token was current: it is now used, the caller issues the successor
  reused,    // the token was already used: its whole family is now revoked
  revoked,   // the family was revoked (logout or reuse) before this request
  expired,
  unknown,
};

struct RefreshResult {
  RefreshOutcome outcome;
  std::optional<RefreshToken> token;  // set for rotated, reused, revoked, expired
};

class Store {
 public:
  virtual ~Store() = default;

  // Applies pending migrations in order, each in one transaction; records them in
  // schema_migrations. Safe to run from two processes at once.
  virtual Result<void, StoreError> migrate() = 0;
  virtual int schema_version() = 0;

  virtual Result<void, StoreError> create_user(const User& user) = 0;  // conflict on username_key
  virtual Result<std::optional<User>, StoreError> find_user_by_key(std::string_view username_key) = 0;
  virtual Result<std::optional<User>, StoreError> find_user_by_id(std::string_view id) = 0;
  // Replaces the hash only if it still equals `expected_hash`, so two concurrent
  // re-hashes cannot lose a password change.
  virtual Result<void, StoreError> update_password_hash(std::string_view user_id, std::string_view expected_hash,
                                                        std::string_view new_hash) = 0;

  virtual Result<void, StoreError> insert_refresh_token(const RefreshToken& token) = 0;
  // Atomically: a current token is marked used (rotated); a used one revokes its family
  // (reused). `now` decides expiry.
  virtual Result<RefreshResult, StoreError> use_refresh_token(std::string_view token_hash, TimePoint now) = 0;
  virtual Result<void, StoreError> revoke_family(std::string_view family_id, TimePoint now) = 0;
  virtual Result<bool, StoreError> is_family_revoked(std::string_view family_id) = 0;

  // True when a trivial query succeeds; for /readyz.
  virtual bool ping() = 0;
};

// Opens a store from a URL: "sqlite:///absolute/path.db" or "postgresql://..." (any
// libpq connection URI). Does not migrate.
Result<std::unique_ptr<Store>, StoreError> open_store(std::string_view url);

}  // namespace licensing::store
