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

constexpr std::array kMigrations = {
    Migration{1, "users and refresh tokens", kInitialSchema},
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
