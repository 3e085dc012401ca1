// The PostgreSQL back end (libpqxx 6.4): a fixed pool of connections, one transaction
// per call, every value passed as a statement parameter.
#include <fmt/core.h>

#include <condition_variable>
#include <mutex>
#include <pqxx/pqxx>
#include <set>
#include <utility>
#include <vector>

#include "common/secret.hpp"
#include "store/backends.hpp"

namespace licensing::store::detail {
namespace {

// The key of the advisory lock that serializes migrations across processes: the ASCII
// bytes of "licmigr1".
constexpr std::int64_t kMigrationLockKey = 0x6c69636d69677231;
// The key of the advisory lock that serializes enclave inserts, so that the quota count
// and the port choice see every earlier insert: the ASCII bytes of "licencl1".
constexpr std::int64_t kEnclaveInsertLockKey = 0x6c6963656e636c31;

// Connections are made on first use and replaced when they break. A call waits at most
// `wait` for a free connection.
class ConnectionPool {
 public:
  // Exclusive use of one connection until destroyed.
  class Lease {
   public:
    Lease(ConnectionPool* pool, std::size_t slot) : pool_(pool), slot_(slot) {}
    Lease(Lease&& other) noexcept : pool_(std::exchange(other.pool_, nullptr)), slot_(other.slot_) {}
    Lease& operator=(Lease&&) = delete;
    ~Lease() {
      if (pool_ != nullptr) pool_->release(slot_);
    }

    pqxx::connection& connection() { return *pool_->connections_[slot_]; }
    // Drops the connection so that the next lease of this slot connects again.
    void discard() { pool_->connections_[slot_].reset(); }

   private:
    ConnectionPool* pool_;
    std::size_t slot_;
  };

  ConnectionPool(std::string_view url, std::size_t size, std::chrono::milliseconds wait)
      : url_(url), wait_(wait), connections_(size), in_use_(size, false) {}

  Result<Lease, StoreError> acquire() {
    std::size_t slot = 0;
    {
      std::unique_lock lock(mutex_);
      const bool free = available_.wait_for(lock, wait_, [this] {
        for (bool used : in_use_) {
          if (!used) return true;
        }
        return false;
      });
      if (!free) {
        return fail(StoreError::unavailable, fmt::format("all {} database connections stayed busy for {} ms",
                                                         in_use_.size(), wait_.count()));
      }
      while (in_use_[slot]) ++slot;
      in_use_[slot] = true;
    }

    // The slot is ours alone from here, so its connection is touched without the lock.
    Lease lease{this, slot};
    auto& connection = connections_[slot];
    if (connection && connection->is_open()) return lease;

    std::string url{url_.text()};
    try {
      connection = std::make_unique<pqxx::connection>(url);
    } catch (const std::exception& error) {
      wipe_string(url);
      connection.reset();
      // libpq's message names the host, port and user, never the password.
      std::string reason = error.what();
      while (!reason.empty() && (reason.back() == '\n' || reason.back() == ' ')) reason.pop_back();
      return fail(StoreError::unavailable, fmt::format("cannot connect to PostgreSQL: {}", reason));
    }
    wipe_string(url);
    return lease;
  }

 private:
  void release(std::size_t slot) {
    {
      std::lock_guard lock(mutex_);
      in_use_[slot] = false;
    }
    available_.notify_one();
  }

  SecretBytes url_;  // the URL may contain the password
  std::chrono::milliseconds wait_;
  std::mutex mutex_;
  std::condition_variable available_;
  std::vector<std::unique_ptr<pqxx::connection>> connections_;  // a slot's entry belongs to its lease holder
  std::vector<bool> in_use_;                                    // guarded by mutex_
};

// True for SQLSTATE classes that mean the session is gone: connection exceptions (08)
// and operator intervention such as a server shutdown (57P).
bool is_connection_lost(const std::string& sqlstate) {
  return sqlstate.starts_with("08") || sqlstate.starts_with("57P");
}

class PostgresStore final : public Store {
 public:
  PostgresStore(std::string_view url, const StoreOptions& options)
      : pool_(url, options.pool_size, options.pool_wait), migrations_(options.migrations) {}

  // Checks that one connection can be made, so open_store reports a bad URL at once.
  Result<void, StoreError> connect() {
    auto lease = pool_.acquire();
    if (!lease) return std::unexpected(lease.error());
    return {};
  }

  Result<void, StoreError> migrate() override;
  int schema_version() override;

  Result<void, StoreError> create_user(const User& user) override;
  Result<std::optional<User>, StoreError> find_user_by_key(std::string_view username_key) override;
  Result<std::optional<User>, StoreError> find_user_by_id(std::string_view id) override;
  Result<void, StoreError> update_password_hash(std::string_view user_id, std::string_view expected_hash,
                                                std::string_view new_hash) override;

  Result<void, StoreError> insert_refresh_token(const RefreshToken& token) override;
  Result<RefreshResult, StoreError> use_refresh_token(std::string_view token_hash, TimePoint now) override;
  Result<void, StoreError> revoke_family(std::string_view family_id, TimePoint now) override;
  Result<bool, StoreError> is_family_revoked(std::string_view family_id) override;

  Result<EnclaveInsertResult, StoreError> insert_enclave(const Enclave& enclave, std::size_t quota,
                                                         PortRange ports) override;
  Result<std::optional<Enclave>, StoreError> find_enclave(std::string_view id) override;
  Result<std::vector<Enclave>, StoreError> list_enclaves(std::string_view owner_id) override;
  Result<std::vector<Enclave>, StoreError> list_all_enclaves() override;
  Result<Enclave, StoreError> transition_enclave(std::string_view id, EnclaveState from, EnclaveState to,
                                                 const EnclaveChange& change, TimePoint now) override;
  Result<void, StoreError> set_enclave_certificate(std::string_view id, TimePoint not_after, TimePoint now) override;
  Result<void, StoreError> insert_enclave_credential(const EnclaveCredential& credential) override;
  Result<CredentialResult, StoreError> consume_enclave_credential(std::string_view credential_hash,
                                                                  std::string_view enclave_id,
                                                                  TimePoint now) override;

  bool ping() override;

 private:
  // Runs `body` in one transaction on a pooled connection and commits when it succeeds.
  // libpqxx exceptions become store errors here. Their messages stay out of the detail
  // because the server's message can quote the failed statement or key values.
  template <typename T, typename Body>
  Result<T, StoreError> transact(std::string_view action, Body&& body);

  Result<std::optional<User>, StoreError> find_user(std::string sql, std::string_view value);
  static int read_schema_version(pqxx::work& transaction);

  ConnectionPool pool_;
  std::span<const Migration> migrations_;
};

template <typename T, typename Body>
Result<T, StoreError> PostgresStore::transact(std::string_view action, Body&& body) {
  auto lease = pool_.acquire();
  if (!lease) return std::unexpected(lease.error());

  try {
    pqxx::work transaction(lease->connection());
    Result<T, StoreError> result = body(transaction);
    if (result) transaction.commit();
    return result;
  } catch (const pqxx::broken_connection&) {
    lease->discard();
    return fail(StoreError::unavailable, fmt::format("{}: the connection to PostgreSQL was lost", action));
  } catch (const pqxx::in_doubt_error&) {
    lease->discard();
    return fail(StoreError::unavailable,
                fmt::format("{}: the connection was lost during commit; the outcome is unknown", action));
  } catch (const pqxx::transaction_rollback&) {
    return fail(StoreError::unavailable,
                fmt::format("{}: the server rolled the transaction back (deadlock or serialization failure); retry",
                            action));
  } catch (const pqxx::unique_violation&) {
    return fail(StoreError::conflict, fmt::format("{}: a row with this key exists already", action));
  } catch (const pqxx::foreign_key_violation&) {
    return fail(StoreError::not_found, fmt::format("{}: the referenced row does not exist", action));
  } catch (const pqxx::undefined_table&) {
    return fail(StoreError::migration, fmt::format("{}: a table is missing, run migrate() first", action));
  } catch (const pqxx::sql_error& error) {
    if (is_connection_lost(error.sqlstate())) lease->discard();
    return fail(StoreError::unavailable, fmt::format("{}: database error, SQLSTATE {}", action, error.sqlstate()));
  } catch (const pqxx::conversion_error&) {
    return fail(StoreError::corrupt, fmt::format("{}: invalid column value, conversion failed", action));
  } catch (const std::exception& error) {
    // Other libpqxx failures (usage, internal) leave the connection in an unknown state.
    lease->discard();
    return fail(StoreError::unavailable, fmt::format("{}: {}", action, error.what()));
  }
}

// --- migrations ---

int PostgresStore::read_schema_version(pqxx::work& transaction) {
  const auto exists = transaction.exec1("SELECT to_regclass('schema_migrations') IS NOT NULL");
  if (!exists[0].as<bool>()) return 0;
  return transaction.exec1("SELECT coalesce(max(version), 0) FROM schema_migrations")[0].as<int>();
}

Result<void, StoreError> PostgresStore::migrate() {
  auto valid = check_migration_list(migrations_);
  if (!valid) return valid;

  const int known = static_cast<int>(migrations_.size());
  while (true) {
    // One transaction per migration. The advisory lock is held until the transaction
    // ends, so a second process waits here and then reads the new version.
    auto applied = transact<bool>("apply migration", [&](pqxx::work& transaction) -> Result<bool, StoreError> {
      transaction.exec_params("SELECT pg_advisory_xact_lock($1)", kMigrationLockKey);
      if (!transaction.exec1("SELECT to_regclass('schema_migrations') IS NOT NULL")[0].as<bool>()) {
        transaction.exec0(
            "CREATE TABLE schema_migrations (version BIGINT NOT NULL PRIMARY KEY, applied_at BIGINT NOT NULL)");
      }

      const int current = read_schema_version(transaction);
      if (current > known) {
        return fail(StoreError::migration,
                    fmt::format("database schema is at version {}, newer than the latest version {} this build "
                                "knows; upgrade the server",
                                current, known));
      }
      if (current == known) return false;

      const Migration& next = migrations_[static_cast<std::size_t>(current)];
      const std::string_view sql = next.postgres_sql.empty() ? next.sql : next.postgres_sql;
      transaction.exec(std::string{sql});
      transaction.exec_params0("INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)", next.version,
                               to_unix_seconds(std::chrono::system_clock::now()));
      return true;
    });
    if (!applied) return std::unexpected(applied.error());
    if (!*applied) return {};
  }
}

int PostgresStore::schema_version() {
  auto version = transact<int>("read schema version", [](pqxx::work& transaction) -> Result<int, StoreError> {
    return read_schema_version(transaction);
  });
  return version ? *version : -1;
}

// --- users ---

Result<void, StoreError> PostgresStore::create_user(const User& user) {
  return transact<void>("create user", [&](pqxx::work& transaction) -> Result<void, StoreError> {
    transaction.exec_params0(
        "INSERT INTO users (id, username, username_key, password_hash, created_at) VALUES ($1, $2, $3, $4, $5)",
        user.id, user.username, user.username_key, user.password_hash, to_unix_seconds(user.created_at));
    return {};
  });
}

Result<std::optional<User>, StoreError> PostgresStore::find_user(std::string sql, std::string_view value) {
  return transact<std::optional<User>>(
      "find user", [&](pqxx::work& transaction) -> Result<std::optional<User>, StoreError> {
        const pqxx::result rows = transaction.exec_params(sql, std::string{value});
        if (rows.empty()) return std::nullopt;

        const pqxx::row row = rows[0];
        return User{
            .id = row[0].as<std::string>(),
            .username = row[1].as<std::string>(),
            .username_key = row[2].as<std::string>(),
            .password_hash = row[3].as<std::string>(),
            .created_at = from_unix_seconds(row[4].as<std::int64_t>()),
        };
      });
}

Result<std::optional<User>, StoreError> PostgresStore::find_user_by_key(std::string_view username_key) {
  return find_user("SELECT id, username, username_key, password_hash, created_at FROM users WHERE username_key = $1",
                   username_key);
}

Result<std::optional<User>, StoreError> PostgresStore::find_user_by_id(std::string_view id) {
  return find_user("SELECT id, username, username_key, password_hash, created_at FROM users WHERE id = $1", id);
}

Result<void, StoreError> PostgresStore::update_password_hash(std::string_view user_id, std::string_view expected_hash,
                                                             std::string_view new_hash) {
  return transact<void>("update password hash", [&](pqxx::work& transaction) -> Result<void, StoreError> {
    const pqxx::result updated =
        transaction.exec_params0("UPDATE users SET password_hash = $1 WHERE id = $2 AND password_hash = $3",
                                 std::string{new_hash}, std::string{user_id}, std::string{expected_hash});
    if (updated.affected_rows() == 0) {
      return fail(StoreError::not_found, "update password hash: no user with this id still has the expected hash");
    }
    return {};
  });
}

// --- refresh tokens ---

Result<void, StoreError> PostgresStore::insert_refresh_token(const RefreshToken& token) {
  return transact<void>("insert refresh token", [&](pqxx::work& transaction) -> Result<void, StoreError> {
    transaction.exec_params0(
        "INSERT INTO token_families (family_id, user_id, created_at) VALUES ($1, $2, $3) "
        "ON CONFLICT (family_id) DO NOTHING",
        token.family_id, token.user_id, to_unix_seconds(token.issued_at));

    const pqxx::result owner =
        transaction.exec_params("SELECT user_id FROM token_families WHERE family_id = $1", token.family_id);
    if (owner.empty() || owner[0][0].as<std::string>() != token.user_id) {
      return fail(StoreError::conflict, "insert refresh token: the token family belongs to another user");
    }

    transaction.exec_params0(
        "INSERT INTO refresh_tokens (token_hash, family_id, user_id, issued_at, expires_at) "
        "VALUES ($1, $2, $3, $4, $5)",
        token.token_hash, token.family_id, token.user_id, to_unix_seconds(token.issued_at),
        to_unix_seconds(token.expires_at));
    return {};
  });
}

Result<RefreshResult, StoreError> PostgresStore::use_refresh_token(std::string_view token_hash, TimePoint now) {
  return transact<RefreshResult>(
      "use refresh token", [&](pqxx::work& transaction) -> Result<RefreshResult, StoreError> {
        // FOR UPDATE locks the token and its family row. A concurrent call for the same
        // token waits here, then reads the row as the first call left it.
        const pqxx::result rows = transaction.exec_params(
            "SELECT t.family_id, t.user_id, t.issued_at, t.expires_at, t.used_at IS NOT NULL, "
            "f.revoked_at IS NOT NULL "
            "FROM refresh_tokens t JOIN token_families f ON f.family_id = t.family_id "
            "WHERE t.token_hash = $1 FOR UPDATE",
            std::string{token_hash});
        if (rows.empty()) return RefreshResult{RefreshOutcome::unknown, std::nullopt};

        const pqxx::row row = rows[0];
        const RefreshTokenState state{
            .token =
                RefreshToken{
                    .token_hash = std::string{token_hash},
                    .family_id = row[0].as<std::string>(),
                    .user_id = row[1].as<std::string>(),
                    .issued_at = from_unix_seconds(row[2].as<std::int64_t>()),
                    .expires_at = from_unix_seconds(row[3].as<std::int64_t>()),
                },
            .used = row[4].as<bool>(),
            .family_revoked = row[5].as<bool>(),
        };
        const RefreshOutcome outcome = decide_refresh_outcome(state, now);

        if (outcome == RefreshOutcome::rotated) {
          transaction.exec_params0("UPDATE refresh_tokens SET used_at = $1 WHERE token_hash = $2",
                                   to_unix_seconds(now), std::string{token_hash});
        }
        if (outcome == RefreshOutcome::reused) {
          transaction.exec_params0("UPDATE token_families SET revoked_at = $1 WHERE family_id = $2",
                                   to_unix_seconds(now), state.token.family_id);
        }
        return RefreshResult{outcome, state.token};
      });
}

Result<void, StoreError> PostgresStore::revoke_family(std::string_view family_id, TimePoint now) {
  return transact<void>("revoke token family", [&](pqxx::work& transaction) -> Result<void, StoreError> {
    const pqxx::result updated =
        transaction.exec_params0("UPDATE token_families SET revoked_at = coalesce(revoked_at, $1) WHERE family_id = $2",
                                 to_unix_seconds(now), std::string{family_id});
    if (updated.affected_rows() == 0) return fail(StoreError::not_found, "revoke token family: no such family");
    return {};
  });
}

Result<bool, StoreError> PostgresStore::is_family_revoked(std::string_view family_id) {
  return transact<bool>("read token family", [&](pqxx::work& transaction) -> Result<bool, StoreError> {
    const pqxx::result rows = transaction.exec_params(
        "SELECT revoked_at IS NOT NULL FROM token_families WHERE family_id = $1", std::string{family_id});
    if (rows.empty()) return fail(StoreError::not_found, "read token family: no such family");
    return rows[0][0].as<bool>();
  });
}

// --- enclaves ---

Result<Enclave, StoreError> read_enclave(const pqxx::row& row) {
  const auto state_text = row[2].as<std::string>();
  const auto state = parse_enclave_state(state_text);
  if (!state) return fail(StoreError::corrupt, "read enclave: unknown state " + state_text.substr(0, 32));
  Enclave enclave{
      .id = row[0].as<std::string>(),
      .owner_id = row[1].as<std::string>(),
      .state = *state,
      .endpoint = row[3].as<std::string>(),
      .port = static_cast<std::uint16_t>(row[4].as<std::int64_t>()),
      .instance = row[5].as<std::string>(),
      .failure_reason = row[6].as<std::string>(),
      .idempotency_key = row[7].as<std::string>(),
      .certificate_not_after = std::nullopt,
      .created_at = from_unix_seconds(row[9].as<std::int64_t>()),
      .updated_at = from_unix_seconds(row[10].as<std::int64_t>()),
  };
  if (!row[8].is_null()) enclave.certificate_not_after = from_unix_seconds(row[8].as<std::int64_t>());
  return enclave;
}

Result<std::vector<Enclave>, StoreError> read_enclaves(const pqxx::result& rows) {
  std::vector<Enclave> enclaves;
  for (const auto& row : rows) {
    auto enclave = read_enclave(row);
    if (!enclave) return std::unexpected(enclave.error());
    enclaves.push_back(std::move(*enclave));
  }
  return enclaves;
}

Result<EnclaveInsertResult, StoreError> PostgresStore::insert_enclave(const Enclave& enclave, std::size_t quota,
                                                                      PortRange ports) {
  return transact<EnclaveInsertResult>(
      "insert enclave", [&](pqxx::work& transaction) -> Result<EnclaveInsertResult, StoreError> {
        transaction.exec_params("SELECT pg_advisory_xact_lock($1)", kEnclaveInsertLockKey);

        if (!enclave.idempotency_key.empty()) {
          const pqxx::result rows = transaction.exec_params(
              fmt::format("SELECT {} FROM enclaves WHERE owner_id = $1 AND idempotency_key = $2", kEnclaveColumns),
              enclave.owner_id, enclave.idempotency_key);
          if (!rows.empty()) {
            auto existing = read_enclave(rows[0]);
            if (!existing) return std::unexpected(existing.error());
            return EnclaveInsertResult{EnclaveInsertOutcome::existing, std::move(*existing)};
          }
        }

        const auto live = transaction
                              .exec_params1("SELECT count(*) FROM enclaves WHERE owner_id = $1 "
                                            "AND state NOT IN ('deleted', 'failed')",
                                            enclave.owner_id)[0]
                              .as<std::int64_t>();
        if (static_cast<std::size_t>(live) >= quota) {
          return EnclaveInsertResult{EnclaveInsertOutcome::quota_exceeded, std::nullopt};
        }

        std::set<std::int64_t> taken;
        for (const auto& row : transaction.exec("SELECT port FROM enclaves WHERE state NOT IN ('deleted', 'failed')")) {
          taken.insert(row[0].as<std::int64_t>());
        }
        const auto port = lowest_free_port(taken, ports);
        if (!port) return EnclaveInsertResult{EnclaveInsertOutcome::no_free_port, std::nullopt};

        transaction.exec_params0(
            "INSERT INTO enclaves (id, owner_id, state, endpoint, port, instance, failure_reason, idempotency_key, "
            "created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, nullif($8, ''), $9, $10)",
            enclave.id, enclave.owner_id, std::string{to_string(enclave.state)}, enclave.endpoint,
            std::int64_t{*port}, enclave.instance, enclave.failure_reason, enclave.idempotency_key, to_unix_seconds(enclave.created_at),
            to_unix_seconds(enclave.updated_at));

        Enclave created = enclave;
        created.port = *port;
        created.created_at = from_unix_seconds(to_unix_seconds(enclave.created_at));
        created.updated_at = from_unix_seconds(to_unix_seconds(enclave.updated_at));
        return EnclaveInsertResult{EnclaveInsertOutcome::created, std::move(created)};
      });
}

Result<std::optional<Enclave>, StoreError> PostgresStore::find_enclave(std::string_view id) {
  return transact<std::optional<Enclave>>(
      "read enclave", [&](pqxx::work& transaction) -> Result<std::optional<Enclave>, StoreError> {
        const pqxx::result rows =
            transaction.exec_params(fmt::format("SELECT {} FROM enclaves WHERE id = $1", kEnclaveColumns),
                                    std::string{id});
        if (rows.empty()) return std::nullopt;
        auto enclave = read_enclave(rows[0]);
        if (!enclave) return std::unexpected(enclave.error());
        return std::move(*enclave);
      });
}

Result<std::vector<Enclave>, StoreError> PostgresStore::list_enclaves(std::string_view owner_id) {
  return transact<std::vector<Enclave>>(
      "list enclaves", [&](pqxx::work& transaction) -> Result<std::vector<Enclave>, StoreError> {
        return read_enclaves(transaction.exec_params(
            fmt::format("SELECT {} FROM enclaves WHERE owner_id = $1 ORDER BY created_at, id", kEnclaveColumns),
            std::string{owner_id}));
      });
}

Result<std::vector<Enclave>, StoreError> PostgresStore::list_all_enclaves() {
  return transact<std::vector<Enclave>>(
      "list enclaves", [&](pqxx::work& transaction) -> Result<std::vector<Enclave>, StoreError> {
        return read_enclaves(
            transaction.exec(fmt::format("SELECT {} FROM enclaves ORDER BY created_at, id", kEnclaveColumns)));
      });
}

Result<Enclave, StoreError> PostgresStore::transition_enclave(std::string_view id, EnclaveState from, EnclaveState to,
                                                              const EnclaveChange& change, TimePoint now) {
  if (!is_allowed_transition(from, to)) {
    return fail(StoreError::illegal_transition,
                fmt::format("enclave state cannot change from {} to {}", to_string(from), to_string(to)));
  }

  return transact<Enclave>("change enclave state", [&](pqxx::work& transaction) -> Result<Enclave, StoreError> {
    // FOR UPDATE makes a concurrent transition wait and then see this one's result.
    const pqxx::result rows = transaction.exec_params(
        fmt::format("SELECT {} FROM enclaves WHERE id = $1 FOR UPDATE", kEnclaveColumns), std::string{id});
    if (rows.empty()) return fail(StoreError::not_found, "change enclave state: no such enclave");
    auto current = read_enclave(rows[0]);
    if (!current) return std::unexpected(current.error());
    Enclave enclave = std::move(*current);
    if (enclave.state != from) {
      return fail(StoreError::conflict, fmt::format("change enclave state: expected {}, found {}", to_string(from),
                                                    to_string(enclave.state)));
    }

    enclave.state = to;
    if (change.endpoint) enclave.endpoint = *change.endpoint;
    if (change.instance) enclave.instance = *change.instance;
    if (change.failure_reason) enclave.failure_reason = *change.failure_reason;
    enclave.updated_at = from_unix_seconds(to_unix_seconds(now));
    transaction.exec_params0(
        "UPDATE enclaves SET state = $1, endpoint = $2, instance = $3, failure_reason = $4, updated_at = $5 "
        "WHERE id = $6",
        std::string{to_string(enclave.state)}, enclave.endpoint, enclave.instance, enclave.failure_reason,
        to_unix_seconds(now), std::string{id});
    return enclave;
  });
}

Result<void, StoreError> PostgresStore::set_enclave_certificate(std::string_view id, TimePoint not_after,
                                                                TimePoint now) {
  return transact<void>("record enclave certificate", [&](pqxx::work& transaction) -> Result<void, StoreError> {
    const pqxx::result updated = transaction.exec_params0(
        "UPDATE enclaves SET certificate_not_after = $1, updated_at = $2 WHERE id = $3", to_unix_seconds(not_after),
        to_unix_seconds(now), std::string{id});
    if (updated.affected_rows() == 0) return fail(StoreError::not_found, "record enclave certificate: no such enclave");
    return {};
  });
}

Result<void, StoreError> PostgresStore::insert_enclave_credential(const EnclaveCredential& credential) {
  return transact<void>("insert enclave credential", [&](pqxx::work& transaction) -> Result<void, StoreError> {
    // A new bootstrap credential replaces older bootstrap ones only, so a restarted instance
    // keeps its renewal credential. A new renewal credential follows a successful CSR and
    // replaces every outstanding credential of the enclave.
    transaction.exec_params0(
        "UPDATE enclave_credentials SET used_at = $1 WHERE enclave_id = $2 AND used_at IS NULL "
        "AND (kind = $3 OR $3 = 'renewal')",
        to_unix_seconds(credential.issued_at), credential.enclave_id, std::string{to_column(credential.kind)});
    transaction.exec_params0(
        "INSERT INTO enclave_credentials (credential_hash, enclave_id, kind, issued_at, expires_at) "
        "VALUES ($1, $2, $3, $4, $5)",
        credential.credential_hash, credential.enclave_id, std::string{to_column(credential.kind)},
        to_unix_seconds(credential.issued_at), to_unix_seconds(credential.expires_at));
    return {};
  });
}

Result<CredentialResult, StoreError> PostgresStore::consume_enclave_credential(std::string_view credential_hash,
                                                                               std::string_view enclave_id,
                                                                               TimePoint now) {
  return transact<CredentialResult>(
      "use enclave credential", [&](pqxx::work& transaction) -> Result<CredentialResult, StoreError> {
        // FOR UPDATE: a concurrent call for the same credential waits, then sees it used.
        const pqxx::result rows = transaction.exec_params(
            "SELECT enclave_id, kind, expires_at, used_at IS NOT NULL FROM enclave_credentials "
            "WHERE credential_hash = $1 FOR UPDATE",
            std::string{credential_hash});
        if (rows.empty()) return CredentialResult{CredentialOutcome::unknown, std::nullopt};

        const CredentialState state{rows[0][0].as<std::string>(), rows[0][1].as<std::string>(),
                                    rows[0][2].as<std::int64_t>(), rows[0][3].as<bool>()};
        const CredentialOutcome outcome = decide_credential_outcome(state, enclave_id, now);
        if (outcome == CredentialOutcome::unknown) return CredentialResult{outcome, std::nullopt};
        const auto kind = credential_kind_from_column(state.kind);
        if (!kind) return fail(StoreError::corrupt, "read enclave credential: unknown kind");

        if (outcome == CredentialOutcome::consumed) {
          transaction.exec_params0("UPDATE enclave_credentials SET used_at = $1 WHERE credential_hash = $2",
                                   to_unix_seconds(now), std::string{credential_hash});
        }
        return CredentialResult{outcome, kind};
      });
}

bool PostgresStore::ping() {
  auto answered = transact<void>("ping", [](pqxx::work& transaction) -> Result<void, StoreError> {
    transaction.exec1("SELECT 1");
    return {};
  });
  return answered.has_value();
}

}  // namespace

Result<std::unique_ptr<Store>, StoreError> open_postgres_store(const std::string& url, const StoreOptions& options) {
  if (options.pool_size == 0) return fail(StoreError::unavailable, "PostgreSQL pool size must be at least 1");

  auto store = std::make_unique<PostgresStore>(url, options);
  auto connected = store->connect();
  if (!connected) return std::unexpected(connected.error());
  return store;
}

}  // namespace licensing::store::detail
