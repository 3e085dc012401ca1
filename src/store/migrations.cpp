// The schema, as an ordered list of migrations. Both back ends run the same DDL, so the
// types are the ones SQLite and PostgreSQL share: TEXT, and BIGINT for Unix seconds.
// To change the schema, append one entry to kMigrations. Never edit an applied one,
// because databases that ran it will not run it again.
#include <fmt/core.h>

#include <array>

#include "store/backends.hpp"

namespace licensing::store {
namespace {

constexpr std::string_view kInitialSchema = R"sql(
CREATE TABLE users (
  id TEXT NOT NULL PRIMARY KEY,
  username TEXT NOT NULL,
  username_key TEXT NOT NULL UNIQUE,
  password_hash TEXT NOT NULL,
  created_at BIGINT NOT NULL
);

CREATE TABLE token_families (
  family_id TEXT NOT NULL PRIMARY KEY,
  user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  created_at BIGINT NOT NULL,
  revoked_at BIGINT
);
CREATE INDEX token_families_user_id ON token_families (user_id);

CREATE TABLE refresh_tokens (
  token_hash TEXT NOT NULL PRIMARY KEY,
  family_id TEXT NOT NULL REFERENCES token_families (family_id) ON DELETE CASCADE,
  user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  issued_at BIGINT NOT NULL,
  expires_at BIGINT NOT NULL,
  used_at BIGINT
);
CREATE INDEX refresh_tokens_family_id ON refresh_tokens (family_id);
)sql";

// Enclave records and their single-use CSR credentials. A NULL idempotency key never
// conflicts, because both back ends treat NULLs in a UNIQUE constraint as distinct. The
// partial index keeps two live enclaves off one port; ended ones (deleted, failed) free it.
constexpr std::string_view kEnclaves = R"sql(
CREATE TABLE enclaves (
  id TEXT NOT NULL PRIMARY KEY,
  owner_id TEXT NOT NULL,
  state TEXT NOT NULL,
  endpoint TEXT NOT NULL DEFAULT '',
  port BIGINT NOT NULL,
  instance TEXT NOT NULL DEFAULT '',
  failure_reason TEXT NOT NULL DEFAULT '',
  idempotency_key TEXT,
  certificate_not_after BIGINT,
  created_at BIGINT NOT NULL,
  updated_at BIGINT NOT NULL,
  UNIQUE (owner_id, idempotency_key)
);
CREATE INDEX enclaves_owner_id ON enclaves (owner_id);
CREATE UNIQUE INDEX enclaves_live_port ON enclaves (port) WHERE state NOT IN ('deleted', 'failed');

CREATE TABLE enclave_credentials (
  credential_hash TEXT NOT NULL PRIMARY KEY,
  enclave_id TEXT NOT NULL REFERENCES enclaves (id) ON DELETE CASCADE,
  kind TEXT NOT NULL,
  issued_at BIGINT NOT NULL,
  expires_at BIGINT NOT NULL,
  used_at BIGINT
);
CREATE INDEX enclave_credentials_enclave_id ON enclave_credentials (enclave_id);
)sql";

constexpr std::array kMigrations = {
    Migration{1, "users and refresh tokens", kInitialSchema},
    Migration{2, "enclaves and enclave credentials", kEnclaves},
};

}  // namespace

std::span<const Migration> schema_migrations() { return kMigrations; }

namespace detail {

Result<void, StoreError> check_migration_list(std::span<const Migration> migrations) {
  for (std::size_t i = 0; i < migrations.size(); ++i) {
    const int expected = static_cast<int>(i) + 1;
    if (migrations[i].version != expected) {
      return fail(StoreError::migration, fmt::format("migration list is out of order: expected version {} at "
                                                     "position {}, found {}",
                                                     expected, i, migrations[i].version));
    }
  }
  return {};
}

}  // namespace detail
}  // namespace licensing::store
