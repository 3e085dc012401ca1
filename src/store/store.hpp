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
#include <vector>

#include "common/error.hpp"
#include "store/enclave_state.hpp"

namespace licensing::store {

enum class StoreError {
  conflict,     // a unique key exists already (username key, refresh token hash, ...)
  not_found,    // the row to update does not exist
  unavailable,  // the database cannot be reached or timed out; retry later
  corrupt,      // a row violates the schema's invariants
  migration,    // the schema cannot be brought to the version this build expects
  illegal_transition,  // an enclave state change that is_allowed_transition() rejects
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

// One enclave record. Its instance (process or pod) is named after `id`, never after the
// owner's username.
struct Enclave {
  std::string id;        // UUID, chosen by the caller
  std::string owner_id;  // the user id
  EnclaveState state = EnclaveState::requested;
  std::string endpoint;         // https://host:port as a client reaches it; empty until known
  std::uint16_t port = 0;       // assigned by insert_enclave from the PortRange
  std::string instance;         // the provisioner's name for the instance: a directory, a pod
  std::string failure_reason;   // set with the transition to failed
  std::string idempotency_key;  // empty: none
  std::optional<TimePoint> certificate_not_after;  // set once a certificate was issued
  TimePoint created_at;
  TimePoint updated_at;
};

// Ports handed to enclaves, both ends included.
struct PortRange {
  std::uint16_t first = 20000;
  std::uint16_t last = 20999;
};

enum class EnclaveInsertOutcome {
  created,         // the record is new; `enclave` is it, with its port
  existing,        // the owner used this idempotency key before; `enclave` is that record
  quota_exceeded,  // the owner has `quota` live enclaves already; nothing was written
  no_free_port,    // every port of the range belongs to a live enclave; nothing was written
};

struct EnclaveInsertResult {
  EnclaveInsertOutcome outcome;
  std::optional<Enclave> enclave;  // set for created and existing
};

// Fields that a state transition sets along with the state; unset ones keep their value.
struct EnclaveChange {
  std::optional<std::string> endpoint = std::nullopt;
  std::optional<std::string> instance = std::nullopt;
  std::optional<std::string> failure_reason = std::nullopt;
};

enum class CredentialKind { bootstrap, renewal };

// A single-use credential an enclave presents with its CSR. Only the SHA-256 (hex) of the
// credential is stored.
struct EnclaveCredential {
  std::string credential_hash;
  std::string enclave_id;
  CredentialKind kind = CredentialKind::bootstrap;
  TimePoint issued_at;
  TimePoint expires_at;
};

enum class CredentialOutcome {
  consumed,  // it was valid for this enclave and is now used
  unknown,   // no such credential for this enclave (another enclave's counts as unknown)
  used,      // used before, or replaced by a newer credential
  expired,   // now >= expires_at
};

struct CredentialResult {
  CredentialOutcome outcome;
  std::optional<CredentialKind> kind;  // set unless unknown
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

  // --- enclaves ---

  // In one transaction: returns the owner's record with the same non-empty idempotency key
  // if there is one (existing); otherwise counts the owner's live enclaves (states other
  // than deleted and failed) against `quota`, picks the lowest port of `ports` that no
  // live enclave holds, and inserts `enclave` with that port and `enclave.state`.
  // Fails with conflict when the id exists.
  virtual Result<EnclaveInsertResult, StoreError> insert_enclave(const Enclave& enclave, std::size_t quota,
                                                                 PortRange ports) = 0;
  virtual Result<std::optional<Enclave>, StoreError> find_enclave(std::string_view id) = 0;
  // The owner's records in every state, oldest first.
  virtual Result<std::vector<Enclave>, StoreError> list_enclaves(std::string_view owner_id) = 0;
  // Every record in every state, oldest first; for reconciliation.
  // NOTE: reads the whole table, which is fine for thousands of records, not millions.
  virtual Result<std::vector<Enclave>, StoreError> list_all_enclaves() = 0;
  // Moves the record from `from` to `to` and applies `change`, atomically, and returns the
  // updated record. Fails with illegal_transition when is_allowed_transition(from, to) is
  // false, with not_found for an unknown id, and with conflict when the record is no
  // longer in `from` (another caller moved it first).
  virtual Result<Enclave, StoreError> transition_enclave(std::string_view id, EnclaveState from, EnclaveState to,
                                                         const EnclaveChange& change, TimePoint now) = 0;
  // Records that a certificate valid until `not_after` was issued. not_found for an
  // unknown id.
  virtual Result<void, StoreError> set_enclave_certificate(std::string_view id, TimePoint not_after,
                                                           TimePoint now) = 0;

  // Inserts a credential and, in the same transaction, marks every other unused
  // credential of that enclave used, so at most one is valid at a time. not_found when
  // the enclave does not exist, conflict when the hash exists.
  virtual Result<void, StoreError> insert_enclave_credential(const EnclaveCredential& credential) = 0;
  // Atomically marks the credential used when it belongs to `enclave_id`, is unused and
  // is not expired at `now`; two concurrent calls consume it at most once.
  virtual Result<CredentialResult, StoreError> consume_enclave_credential(std::string_view credential_hash,
                                                                          std::string_view enclave_id,
                                                                          TimePoint now) = 0;

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
