// The database interface. PostgreSQL (production) and SQLite (the embedded default)
// implement it with one schema and pass one test suite. Every method is safe to call
// from several threads at once.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
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

  // Applies pending migrations in order, each in one transaction, and records them in
  // schema_migrations. Safe to run from two processes at once.
  // Fails with `migration` when the database is at a version newer than the last
  // migration of this build.
  virtual Result<void, StoreError> migrate() = 0;
  // The highest applied migration: 0 before the first migrate(), -1 when the database
  // cannot be read.
  virtual int schema_version() = 0;

  virtual Result<void, StoreError> create_user(const User& user) = 0;  // conflict on username_key
  virtual Result<std::optional<User>, StoreError> find_user_by_key(std::string_view username_key) = 0;
  virtual Result<std::optional<User>, StoreError> find_user_by_id(std::string_view id) = 0;
  // Replaces the hash only if it still equals `expected_hash`, so two concurrent
  // re-hashes cannot lose a password change.
  virtual Result<void, StoreError> update_password_hash(std::string_view user_id, std::string_view expected_hash,
                                                        std::string_view new_hash) = 0;

  // Inserts a token, and its family when the family is new. Fails with conflict when the
  // token hash exists or the family belongs to another user, and with not_found when
  // the user does not exist.
  virtual Result<void, StoreError> insert_refresh_token(const RefreshToken& token) = 0;
  // Atomically: a current token is marked used (rotated); a used one revokes its family
  // (reused). `now` decides expiry.
  // The checks run in this order: unknown hash, revoked family, already used, expired
  // (now >= expires_at). Times are stored as whole Unix seconds, rounded down.
  virtual Result<RefreshResult, StoreError> use_refresh_token(std::string_view token_hash, TimePoint now) = 0;
  // Marks the family revoked. Revoking it again keeps the first time. Fails with
  // not_found for an unknown family.
  virtual Result<void, StoreError> revoke_family(std::string_view family_id, TimePoint now) = 0;
  // Fails with not_found for an unknown family.
  virtual Result<bool, StoreError> is_family_revoked(std::string_view family_id) = 0;

  // True when a trivial query succeeds; for /readyz.
  virtual bool ping() = 0;
};

// One schema change. The SQL runs unchanged on both back ends unless `postgres_sql` is
// set, in which case SQLite runs `sql` and PostgreSQL runs `postgres_sql`.
struct Migration {
  int version;  // 1, 2, 3, ... without gaps
  std::string_view name;
  std::string_view sql;
  std::string_view postgres_sql = {};
};

// The migrations this build applies, in order (src/store/migrations.cpp).
std::span<const Migration> schema_migrations();

struct StoreOptions {
  // Tests replace the list to simulate a newer or older build.
  std::span<const Migration> migrations = schema_migrations();
  // SQLite: how long a statement waits for another connection's write lock.
  std::chrono::milliseconds busy_timeout{5000};
  // PostgreSQL: the number of connections, and how long a call waits for a free one
  // before it fails with unavailable.
  std::size_t pool_size = 4;
  std::chrono::milliseconds pool_wait{5000};
};

// Opens a store from a URL: "sqlite:///absolute/path.db" or "postgresql://..." /
// "postgres://..." (any libpq connection URI). Does not migrate.
// SQLite creates the file with mode 0600 when it is missing and serializes all calls on
// one connection per Store object; PostgreSQL keeps a pool of `pool_size` connections
// and replaces a broken one on its next use.
// A URL with any other scheme, or a relative SQLite path, fails with unavailable and
// a detail that names the expected forms.
Result<std::unique_ptr<Store>, StoreError> open_store(std::string_view url);
Result<std::unique_ptr<Store>, StoreError> open_store(std::string_view url, const StoreOptions& options);

}  // namespace licensing::store
