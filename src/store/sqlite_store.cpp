// The SQLite back end: one connection per Store object, and a mutex that serializes
// every call on it. Writes that read first run in BEGIN IMMEDIATE transactions, so they
// take the write lock before reading and two connections (or processes) cannot
// interleave. The busy timeout makes the second one wait instead of failing.
#include <fcntl.h>
#include <fmt/core.h>
#include <sqlite3.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <mutex>
#include <utility>

#include "store/backends.hpp"

namespace licensing::store::detail {
namespace {

struct DatabaseCloser {
  void operator()(sqlite3* db) const { sqlite3_close_v2(db); }
};
using Database = std::unique_ptr<sqlite3, DatabaseCloser>;

struct StatementFinalizer {
  void operator()(sqlite3_stmt* statement) const { sqlite3_finalize(statement); }
};

// Maps a SQLite result code to a store error. The detail carries SQLite's generic text
// for the code, never the statement or the bound values.
Error<StoreError> sqlite_error(sqlite3* db, int code, std::string_view action) {
  const int primary = code & 0xff;
  const std::string reason = sqlite3_errstr(code);

  if (primary == SQLITE_BUSY || primary == SQLITE_LOCKED) {
    return {StoreError::unavailable, fmt::format("{}: database is locked by another connection ({})", action, reason)};
  }
  if (code == SQLITE_CONSTRAINT_UNIQUE || code == SQLITE_CONSTRAINT_PRIMARYKEY) {
    return {StoreError::conflict, fmt::format("{}: a row with this key exists already", action)};
  }
  if (code == SQLITE_CONSTRAINT_FOREIGNKEY) {
    return {StoreError::not_found, fmt::format("{}: the referenced row does not exist", action)};
  }
  if (primary == SQLITE_CONSTRAINT || primary == SQLITE_CORRUPT || primary == SQLITE_NOTADB) {
    return {StoreError::corrupt, fmt::format("{}: {}", action, reason)};
  }
  if (primary == SQLITE_ERROR && db != nullptr && std::strstr(sqlite3_errmsg(db), "no such table") != nullptr) {
    return {StoreError::migration, fmt::format("{}: a table is missing, run migrate() first", action)};
  }
  return {StoreError::unavailable, fmt::format("{}: {}", action, reason)};
}

// A prepared statement. Binding errors are kept and reported by step(), so call sites
// read as a plain list of binds.
class Statement {
 public:
  Statement(sqlite3* db, std::unique_ptr<sqlite3_stmt, StatementFinalizer> statement, std::string_view action)
      : db_(db), statement_(std::move(statement)), action_(action) {}

  // Binds text without copying: the caller keeps `text` alive until the last step().
  Statement& bind(int index, std::string_view text) {
    remember(sqlite3_bind_text(statement_.get(), index, text.data(), static_cast<int>(text.size()), SQLITE_STATIC));
    return *this;
  }
  Statement& bind(int index, std::int64_t value) {
    remember(sqlite3_bind_int64(statement_.get(), index, value));
    return *this;
  }

  // Returns SQLITE_ROW or SQLITE_DONE.
  Result<int, StoreError> step() {
    if (bind_error_ != SQLITE_OK) return std::unexpected(sqlite_error(db_, bind_error_, action_));
    const int code = sqlite3_step(statement_.get());
    if (code == SQLITE_ROW || code == SQLITE_DONE) return code;
    return std::unexpected(sqlite_error(db_, sqlite3_extended_errcode(db_), action_));
  }

  // Runs a statement that returns no rows.
  Result<void, StoreError> run() {
    auto code = step();
    if (!code) return std::unexpected(code.error());
    return {};
  }

  bool is_null(int column) const { return sqlite3_column_type(statement_.get(), column) == SQLITE_NULL; }
  std::int64_t integer(int column) const { return sqlite3_column_int64(statement_.get(), column); }
  std::string text(int column) const {
    const auto* bytes = sqlite3_column_text(statement_.get(), column);
    if (bytes == nullptr) return {};
    return {reinterpret_cast<const char*>(bytes), static_cast<std::size_t>(sqlite3_column_bytes(statement_.get(), column))};
  }

 private:
  void remember(int code) {
    if (bind_error_ == SQLITE_OK) bind_error_ = code;
  }

  sqlite3* db_;
  std::unique_ptr<sqlite3_stmt, StatementFinalizer> statement_;
  std::string_view action_;
  int bind_error_ = SQLITE_OK;
};

// Runs SQL text that takes no parameters (transaction control, migrations).
Result<void, StoreError> execute(sqlite3* db, const std::string& sql, std::string_view action) {
  const int code = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr);
  if (code != SQLITE_OK) return std::unexpected(sqlite_error(db, sqlite3_extended_errcode(db), action));
  return {};
}

// A BEGIN IMMEDIATE transaction that rolls back unless committed.
class Transaction {
 public:
  static Result<Transaction, StoreError> begin(sqlite3* db) {
    auto begun = execute(db, "BEGIN IMMEDIATE", "begin transaction");
    if (!begun) return std::unexpected(begun.error());
    return Transaction{db};
  }
  Transaction(Transaction&& other) noexcept : db_(std::exchange(other.db_, nullptr)) {}
  Transaction& operator=(Transaction&&) = delete;
  ~Transaction() {
    if (db_ != nullptr) sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
  }

  Result<void, StoreError> commit() {
    auto committed = execute(db_, "COMMIT", "commit transaction");
    if (committed) db_ = nullptr;
    return committed;
  }

 private:
  explicit Transaction(sqlite3* db) : db_(db) {}
  sqlite3* db_;
};

class SqliteStore final : public Store {
 public:
  SqliteStore(Database db, std::span<const Migration> migrations) : db_(std::move(db)), migrations_(migrations) {}

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
  // These run with mutex_ held.
  Result<std::optional<Enclave>, StoreError> select_enclave(std::string_view sql, std::string_view value);
  Result<std::vector<Enclave>, StoreError> select_enclaves(std::string_view sql, std::string_view value);

  Result<Statement, StoreError> prepare(std::string_view sql, std::string_view action);
  Result<std::optional<User>, StoreError> find_user(std::string_view sql, std::string_view value);
  Result<int, StoreError> read_schema_version();
  Result<bool, StoreError> apply_next_migration();

  std::mutex mutex_;  // guards db_: SQLite connections must not be used by two threads at once
  Database db_;
  std::span<const Migration> migrations_;
};

Result<Statement, StoreError> SqliteStore::prepare(std::string_view sql, std::string_view action) {
  sqlite3_stmt* raw = nullptr;
  const int code = sqlite3_prepare_v2(db_.get(), sql.data(), static_cast<int>(sql.size()), &raw, nullptr);
  std::unique_ptr<sqlite3_stmt, StatementFinalizer> statement{raw};
  if (code != SQLITE_OK) return std::unexpected(sqlite_error(db_.get(), sqlite3_extended_errcode(db_.get()), action));
  return Statement{db_.get(), std::move(statement), action};
}

// --- migrations ---

Result<int, StoreError> SqliteStore::read_schema_version() {
  auto exists = prepare("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'",
                        "read schema version");
  if (!exists) return std::unexpected(exists.error());
  auto row = exists->step();
  if (!row) return std::unexpected(row.error());
  if (exists->integer(0) == 0) return 0;

  auto version = prepare("SELECT coalesce(max(version), 0) FROM schema_migrations", "read schema version");
  if (!version) return std::unexpected(version.error());
  row = version->step();
  if (!row) return std::unexpected(row.error());
  return static_cast<int>(version->integer(0));
}

// Applies the migration after the current version in one transaction. Returns false
// when the schema was already current.
Result<bool, StoreError> SqliteStore::apply_next_migration() {
  auto transaction = Transaction::begin(db_.get());
  if (!transaction) return std::unexpected(transaction.error());

  auto created = execute(db_.get(),
                         "CREATE TABLE IF NOT EXISTS schema_migrations ("
                         "version BIGINT NOT NULL PRIMARY KEY, applied_at BIGINT NOT NULL)",
                         "create schema_migrations");
  if (!created) return std::unexpected(created.error());

  auto current = read_schema_version();
  if (!current) return std::unexpected(current.error());
  const int known = static_cast<int>(migrations_.size());
  if (*current > known) {
    return fail(StoreError::migration,
                fmt::format("database schema is at version {}, newer than the latest version {} this build "
                            "knows; upgrade the server",
                            *current, known));
  }
  if (*current == known) {
    auto committed = transaction->commit();
    if (!committed) return std::unexpected(committed.error());
    return false;
  }

  const Migration& next = migrations_[static_cast<std::size_t>(*current)];
  auto applied = execute(db_.get(), std::string{next.sql}, fmt::format("apply migration {} ({})", next.version, next.name));
  if (!applied) return std::unexpected(applied.error());

  auto record = prepare("INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)", "record migration");
  if (!record) return std::unexpected(record.error());
  auto recorded = record->bind(1, std::int64_t{next.version})
                      .bind(2, to_unix_seconds(std::chrono::system_clock::now()))
                      .run();
  if (!recorded) return std::unexpected(recorded.error());

  auto committed = transaction->commit();
  if (!committed) return std::unexpected(committed.error());
  return true;
}

Result<void, StoreError> SqliteStore::migrate() {
  auto valid = check_migration_list(migrations_);
  if (!valid) return valid;

  std::lock_guard lock(mutex_);
  while (true) {
    auto applied = apply_next_migration();
    if (!applied) return std::unexpected(applied.error());
    if (!*applied) return {};
  }
}

int SqliteStore::schema_version() {
  std::lock_guard lock(mutex_);
  auto version = read_schema_version();
  return version ? *version : -1;
}

// --- users ---

Result<void, StoreError> SqliteStore::create_user(const User& user) {
  std::lock_guard lock(mutex_);
  auto insert = prepare(
      "INSERT INTO users (id, username, username_key, password_hash, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
      "create user");
  if (!insert) return std::unexpected(insert.error());
  return insert->bind(1, user.id)
      .bind(2, user.username)
      .bind(3, user.username_key)
      .bind(4, user.password_hash)
      .bind(5, to_unix_seconds(user.created_at))
      .run();
}

Result<std::optional<User>, StoreError> SqliteStore::find_user(std::string_view sql, std::string_view value) {
  std::lock_guard lock(mutex_);
  auto select = prepare(sql, "find user");
  if (!select) return std::unexpected(select.error());
  auto row = select->bind(1, value).step();
  if (!row) return std::unexpected(row.error());
  if (*row == SQLITE_DONE) return std::nullopt;

  return User{
      .id = select->text(0),
      .username = select->text(1),
      .username_key = select->text(2),
      .password_hash = select->text(3),
      .created_at = from_unix_seconds(select->integer(4)),
  };
}

Result<std::optional<User>, StoreError> SqliteStore::find_user_by_key(std::string_view username_key) {
  return find_user("SELECT id, username, username_key, password_hash, created_at FROM users WHERE username_key = ?1",
                   username_key);
}

Result<std::optional<User>, StoreError> SqliteStore::find_user_by_id(std::string_view id) {
  return find_user("SELECT id, username, username_key, password_hash, created_at FROM users WHERE id = ?1", id);
}

Result<void, StoreError> SqliteStore::update_password_hash(std::string_view user_id, std::string_view expected_hash,
                                                           std::string_view new_hash) {
  std::lock_guard lock(mutex_);
  auto update = prepare("UPDATE users SET password_hash = ?1 WHERE id = ?2 AND password_hash = ?3",
                        "update password hash");
  if (!update) return std::unexpected(update.error());
  auto updated = update->bind(1, new_hash).bind(2, user_id).bind(3, expected_hash).run();
  if (!updated) return updated;

  if (sqlite3_changes(db_.get()) == 0) {
    return fail(StoreError::not_found, "update password hash: no user with this id still has the expected hash");
  }
  return {};
}

// --- refresh tokens ---

Result<void, StoreError> SqliteStore::insert_refresh_token(const RefreshToken& token) {
  std::lock_guard lock(mutex_);
  auto transaction = Transaction::begin(db_.get());
  if (!transaction) return std::unexpected(transaction.error());

  auto family = prepare(
      "INSERT INTO token_families (family_id, user_id, created_at) VALUES (?1, ?2, ?3) "
      "ON CONFLICT (family_id) DO NOTHING",
      "insert token family");
  if (!family) return std::unexpected(family.error());
  auto inserted = family->bind(1, token.family_id).bind(2, token.user_id).bind(3, to_unix_seconds(token.issued_at)).run();
  if (!inserted) return inserted;

  auto owner = prepare("SELECT user_id FROM token_families WHERE family_id = ?1", "read token family");
  if (!owner) return std::unexpected(owner.error());
  auto row = owner->bind(1, token.family_id).step();
  if (!row) return std::unexpected(row.error());
  if (*row != SQLITE_ROW || owner->text(0) != token.user_id) {
    return fail(StoreError::conflict, "insert refresh token: the token family belongs to another user");
  }

  auto insert = prepare(
      "INSERT INTO refresh_tokens (token_hash, family_id, user_id, issued_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5)",
      "insert refresh token");
  if (!insert) return std::unexpected(insert.error());
  inserted = insert->bind(1, token.token_hash)
                 .bind(2, token.family_id)
                 .bind(3, token.user_id)
                 .bind(4, to_unix_seconds(token.issued_at))
                 .bind(5, to_unix_seconds(token.expires_at))
                 .run();
  if (!inserted) return inserted;

  return transaction->commit();
}

Result<RefreshResult, StoreError> SqliteStore::use_refresh_token(std::string_view token_hash, TimePoint now) {
  std::lock_guard lock(mutex_);
  auto transaction = Transaction::begin(db_.get());
  if (!transaction) return std::unexpected(transaction.error());

  auto select = prepare(
      "SELECT t.family_id, t.user_id, t.issued_at, t.expires_at, t.used_at IS NOT NULL, f.revoked_at IS NOT NULL "
      "FROM refresh_tokens t JOIN token_families f ON f.family_id = t.family_id WHERE t.token_hash = ?1",
      "read refresh token");
  if (!select) return std::unexpected(select.error());
  auto row = select->bind(1, token_hash).step();
  if (!row) return std::unexpected(row.error());
  if (*row == SQLITE_DONE) return RefreshResult{RefreshOutcome::unknown, std::nullopt};

  const RefreshTokenState state{
      .token =
          RefreshToken{
              .token_hash = std::string{token_hash},
              .family_id = select->text(0),
              .user_id = select->text(1),
              .issued_at = from_unix_seconds(select->integer(2)),
              .expires_at = from_unix_seconds(select->integer(3)),
          },
      .used = select->integer(4) != 0,
      .family_revoked = select->integer(5) != 0,
  };
  const RefreshOutcome outcome = decide_refresh_outcome(state, now);

  if (outcome == RefreshOutcome::rotated) {
    auto mark = prepare("UPDATE refresh_tokens SET used_at = ?1 WHERE token_hash = ?2", "mark refresh token used");
    if (!mark) return std::unexpected(mark.error());
    auto marked = mark->bind(1, to_unix_seconds(now)).bind(2, token_hash).run();
    if (!marked) return std::unexpected(marked.error());
  }
  if (outcome == RefreshOutcome::reused) {
    auto revoke = prepare("UPDATE token_families SET revoked_at = ?1 WHERE family_id = ?2", "revoke token family");
    if (!revoke) return std::unexpected(revoke.error());
    auto revoked = revoke->bind(1, to_unix_seconds(now)).bind(2, state.token.family_id).run();
    if (!revoked) return std::unexpected(revoked.error());
  }

  auto committed = transaction->commit();
  if (!committed) return std::unexpected(committed.error());
  return RefreshResult{outcome, state.token};
}

Result<void, StoreError> SqliteStore::revoke_family(std::string_view family_id, TimePoint now) {
  std::lock_guard lock(mutex_);
  auto revoke = prepare("UPDATE token_families SET revoked_at = coalesce(revoked_at, ?1) WHERE family_id = ?2",
                        "revoke token family");
  if (!revoke) return std::unexpected(revoke.error());
  auto revoked = revoke->bind(1, to_unix_seconds(now)).bind(2, family_id).run();
  if (!revoked) return revoked;

  if (sqlite3_changes(db_.get()) == 0) return fail(StoreError::not_found, "revoke token family: no such family");
  return {};
}

Result<bool, StoreError> SqliteStore::is_family_revoked(std::string_view family_id) {
  std::lock_guard lock(mutex_);
  auto select = prepare("SELECT revoked_at IS NOT NULL FROM token_families WHERE family_id = ?1", "read token family");
  if (!select) return std::unexpected(select.error());
  auto row = select->bind(1, family_id).step();
  if (!row) return std::unexpected(row.error());
  if (*row == SQLITE_DONE) return fail(StoreError::not_found, "read token family: no such family");
  return select->integer(0) != 0;
}

// --- enclaves ---

Result<Enclave, StoreError> read_enclave(const Statement& row) {
  const auto state = parse_enclave_state(row.text(2));
  if (!state) return fail(StoreError::corrupt, "read enclave: unknown state " + row.text(2).substr(0, 32));
  Enclave enclave{
      .id = row.text(0),
      .owner_id = row.text(1),
      .state = *state,
      .endpoint = row.text(3),
      .port = static_cast<std::uint16_t>(row.integer(4)),
      .instance = row.text(5),
      .failure_reason = row.text(6),
      .idempotency_key = row.text(7),
      .certificate_not_after = std::nullopt,
      .created_at = from_unix_seconds(row.integer(9)),
      .updated_at = from_unix_seconds(row.integer(10)),
  };
  if (!row.is_null(8)) enclave.certificate_not_after = from_unix_seconds(row.integer(8));
  return enclave;
}

Result<std::optional<Enclave>, StoreError> SqliteStore::select_enclave(std::string_view sql, std::string_view value) {
  auto select = prepare(sql, "read enclave");
  if (!select) return std::unexpected(select.error());
  auto row = select->bind(1, value).step();
  if (!row) return std::unexpected(row.error());
  if (*row == SQLITE_DONE) return std::nullopt;
  auto enclave = read_enclave(*select);
  if (!enclave) return std::unexpected(enclave.error());
  return std::move(*enclave);
}

Result<std::vector<Enclave>, StoreError> SqliteStore::select_enclaves(std::string_view sql, std::string_view value) {
  auto select = prepare(sql, "list enclaves");
  if (!select) return std::unexpected(select.error());
  if (!value.empty()) select->bind(1, value);

  std::vector<Enclave> enclaves;
  while (true) {
    auto row = select->step();
    if (!row) return std::unexpected(row.error());
    if (*row == SQLITE_DONE) return enclaves;
    auto enclave = read_enclave(*select);
    if (!enclave) return std::unexpected(enclave.error());
    enclaves.push_back(std::move(*enclave));
  }
}

Result<EnclaveInsertResult, StoreError> SqliteStore::insert_enclave(const Enclave& enclave, std::size_t quota,
                                                                    PortRange ports) {
  std::lock_guard lock(mutex_);
  auto transaction = Transaction::begin(db_.get());
  if (!transaction) return std::unexpected(transaction.error());

  if (!enclave.idempotency_key.empty()) {
    auto select = prepare(fmt::format("SELECT {} FROM enclaves WHERE owner_id = ?1 AND idempotency_key = ?2",
                                      kEnclaveColumns),
                          "read enclave by idempotency key");
    if (!select) return std::unexpected(select.error());
    auto row = select->bind(1, enclave.owner_id).bind(2, enclave.idempotency_key).step();
    if (!row) return std::unexpected(row.error());
    if (*row == SQLITE_ROW) {
      auto existing = read_enclave(*select);
      if (!existing) return std::unexpected(existing.error());
      return EnclaveInsertResult{EnclaveInsertOutcome::existing, std::move(*existing)};
    }
  }

  auto count = prepare("SELECT count(*) FROM enclaves WHERE owner_id = ?1 AND state NOT IN ('deleted', 'failed')",
                       "count live enclaves");
  if (!count) return std::unexpected(count.error());
  auto counted = count->bind(1, enclave.owner_id).step();
  if (!counted) return std::unexpected(counted.error());
  if (static_cast<std::size_t>(count->integer(0)) >= quota) {
    return EnclaveInsertResult{EnclaveInsertOutcome::quota_exceeded, std::nullopt};
  }

  auto taken_ports = prepare("SELECT port FROM enclaves WHERE state NOT IN ('deleted', 'failed')", "read used ports");
  if (!taken_ports) return std::unexpected(taken_ports.error());
  std::set<std::int64_t> taken;
  while (true) {
    auto row = taken_ports->step();
    if (!row) return std::unexpected(row.error());
    if (*row == SQLITE_DONE) break;
    taken.insert(taken_ports->integer(0));
  }
  const auto port = lowest_free_port(taken, ports);
  if (!port) return EnclaveInsertResult{EnclaveInsertOutcome::no_free_port, std::nullopt};

  auto insert = prepare(
      "INSERT INTO enclaves (id, owner_id, state, endpoint, port, instance, failure_reason, idempotency_key, "
      "created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, nullif(?8, ''), ?9, ?10)",
      "insert enclave");
  if (!insert) return std::unexpected(insert.error());
  auto inserted = insert->bind(1, enclave.id)
                      .bind(2, enclave.owner_id)
                      .bind(3, to_string(enclave.state))
                      .bind(4, enclave.endpoint)
                      .bind(5, std::int64_t{*port})
                      .bind(6, enclave.instance)
                      .bind(7, enclave.failure_reason)
                      .bind(8, enclave.idempotency_key)
                      .bind(9, to_unix_seconds(enclave.created_at))
                      .bind(10, to_unix_seconds(enclave.updated_at))
                      .run();
  if (!inserted) return std::unexpected(inserted.error());

  auto committed = transaction->commit();
  if (!committed) return std::unexpected(committed.error());
  Enclave created = enclave;
  created.port = *port;
  created.created_at = from_unix_seconds(to_unix_seconds(enclave.created_at));
  created.updated_at = from_unix_seconds(to_unix_seconds(enclave.updated_at));
  return EnclaveInsertResult{EnclaveInsertOutcome::created, std::move(created)};
}

Result<std::optional<Enclave>, StoreError> SqliteStore::find_enclave(std::string_view id) {
  std::lock_guard lock(mutex_);
  return select_enclave(fmt::format("SELECT {} FROM enclaves WHERE id = ?1", kEnclaveColumns), id);
}

Result<std::vector<Enclave>, StoreError> SqliteStore::list_enclaves(std::string_view owner_id) {
  if (owner_id.empty()) return std::vector<Enclave>{};
  std::lock_guard lock(mutex_);
  return select_enclaves(
      fmt::format("SELECT {} FROM enclaves WHERE owner_id = ?1 ORDER BY created_at, id", kEnclaveColumns), owner_id);
}

Result<std::vector<Enclave>, StoreError> SqliteStore::list_all_enclaves() {
  std::lock_guard lock(mutex_);
  return select_enclaves(fmt::format("SELECT {} FROM enclaves ORDER BY created_at, id", kEnclaveColumns), {});
}

Result<Enclave, StoreError> SqliteStore::transition_enclave(std::string_view id, EnclaveState from, EnclaveState to,
                                                            const EnclaveChange& change, TimePoint now) {
  if (!is_allowed_transition(from, to)) {
    return fail(StoreError::illegal_transition,
                fmt::format("enclave state cannot change from {} to {}", to_string(from), to_string(to)));
  }

  std::lock_guard lock(mutex_);
  auto transaction = Transaction::begin(db_.get());
  if (!transaction) return std::unexpected(transaction.error());

  auto current = select_enclave(fmt::format("SELECT {} FROM enclaves WHERE id = ?1", kEnclaveColumns), id);
  if (!current) return std::unexpected(current.error());
  if (!*current) return fail(StoreError::not_found, "change enclave state: no such enclave");
  Enclave enclave = std::move(**current);
  if (enclave.state != from) {
    return fail(StoreError::conflict, fmt::format("change enclave state: expected {}, found {}", to_string(from),
                                                  to_string(enclave.state)));
  }

  enclave.state = to;
  if (change.endpoint) enclave.endpoint = *change.endpoint;
  if (change.instance) enclave.instance = *change.instance;
  if (change.failure_reason) enclave.failure_reason = *change.failure_reason;
  enclave.updated_at = from_unix_seconds(to_unix_seconds(now));

  auto update = prepare(
      "UPDATE enclaves SET state = ?1, endpoint = ?2, instance = ?3, failure_reason = ?4, updated_at = ?5 "
      "WHERE id = ?6",
      "change enclave state");
  if (!update) return std::unexpected(update.error());
  auto updated = update->bind(1, to_string(enclave.state))
                     .bind(2, enclave.endpoint)
                     .bind(3, enclave.instance)
                     .bind(4, enclave.failure_reason)
                     .bind(5, to_unix_seconds(now))
                     .bind(6, id)
                     .run();
  if (!updated) return std::unexpected(updated.error());

  auto committed = transaction->commit();
  if (!committed) return std::unexpected(committed.error());
  return enclave;
}

Result<void, StoreError> SqliteStore::set_enclave_certificate(std::string_view id, TimePoint not_after,
                                                              TimePoint now) {
  std::lock_guard lock(mutex_);
  auto update = prepare("UPDATE enclaves SET certificate_not_after = ?1, updated_at = ?2 WHERE id = ?3",
                        "record enclave certificate");
  if (!update) return std::unexpected(update.error());
  auto updated = update->bind(1, to_unix_seconds(not_after)).bind(2, to_unix_seconds(now)).bind(3, id).run();
  if (!updated) return updated;
  if (sqlite3_changes(db_.get()) == 0) return fail(StoreError::not_found, "record enclave certificate: no such enclave");
  return {};
}

Result<void, StoreError> SqliteStore::insert_enclave_credential(const EnclaveCredential& credential) {
  std::lock_guard lock(mutex_);
  auto transaction = Transaction::begin(db_.get());
  if (!transaction) return std::unexpected(transaction.error());

  // A new bootstrap credential replaces older bootstrap ones only, so a restarted instance
  // keeps its renewal credential. A new renewal credential follows a successful CSR and
  // replaces every outstanding credential of the enclave.
  auto revoke = prepare(
      "UPDATE enclave_credentials SET used_at = ?1 WHERE enclave_id = ?2 AND used_at IS NULL "
      "AND (kind = ?3 OR ?3 = 'renewal')",
      "replace enclave credentials");
  if (!revoke) return std::unexpected(revoke.error());
  auto revoked = revoke->bind(1, to_unix_seconds(credential.issued_at))
                     .bind(2, credential.enclave_id)
                     .bind(3, to_column(credential.kind))
                     .run();
  if (!revoked) return revoked;

  auto insert = prepare(
      "INSERT INTO enclave_credentials (credential_hash, enclave_id, kind, issued_at, expires_at) "
      "VALUES (?1, ?2, ?3, ?4, ?5)",
      "insert enclave credential");
  if (!insert) return std::unexpected(insert.error());
  auto inserted = insert->bind(1, credential.credential_hash)
                      .bind(2, credential.enclave_id)
                      .bind(3, to_column(credential.kind))
                      .bind(4, to_unix_seconds(credential.issued_at))
                      .bind(5, to_unix_seconds(credential.expires_at))
                      .run();
  if (!inserted) return inserted;
  return transaction->commit();
}

Result<CredentialResult, StoreError> SqliteStore::consume_enclave_credential(std::string_view credential_hash,
                                                                             std::string_view enclave_id,
                                                                             TimePoint now) {
  std::lock_guard lock(mutex_);
  auto transaction = Transaction::begin(db_.get());
  if (!transaction) return std::unexpected(transaction.error());

  auto select = prepare(
      "SELECT enclave_id, kind, expires_at, used_at IS NOT NULL FROM enclave_credentials WHERE credential_hash = ?1",
      "read enclave credential");
  if (!select) return std::unexpected(select.error());
  auto row = select->bind(1, credential_hash).step();
  if (!row) return std::unexpected(row.error());
  if (*row == SQLITE_DONE) return CredentialResult{CredentialOutcome::unknown, std::nullopt};

  const CredentialState state{select->text(0), select->text(1), select->integer(2), select->integer(3) != 0};
  const CredentialOutcome outcome = decide_credential_outcome(state, enclave_id, now);
  if (outcome == CredentialOutcome::unknown) return CredentialResult{outcome, std::nullopt};
  const auto kind = credential_kind_from_column(state.kind);
  if (!kind) return fail(StoreError::corrupt, "read enclave credential: unknown kind");

  if (outcome == CredentialOutcome::consumed) {
    auto mark = prepare("UPDATE enclave_credentials SET used_at = ?1 WHERE credential_hash = ?2",
                        "mark enclave credential used");
    if (!mark) return std::unexpected(mark.error());
    auto marked = mark->bind(1, to_unix_seconds(now)).bind(2, credential_hash).run();
    if (!marked) return std::unexpected(marked.error());
  }

  auto committed = transaction->commit();
  if (!committed) return std::unexpected(committed.error());
  return CredentialResult{outcome, kind};
}

bool SqliteStore::ping() {
  std::lock_guard lock(mutex_);
  auto select = prepare("SELECT 1", "ping");
  return select && select->step().has_value();
}

// Creates the file with mode 0600 before SQLite opens it, because SQLite would create it
// with 0644 less the umask. SQLite gives the -wal and -shm files the main file's mode
// (SQLite 3.40, checked by SqliteFile.CreatedPrivateInWalMode).
Result<void, StoreError> create_private_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    return fail(StoreError::unavailable, fmt::format("cannot open database file {}: {}", path, std::strerror(errno)));
  }
  // NOTE: an existing file keeps its mode, even when group or others can read it.
  ::close(fd);
  return {};
}

Result<void, StoreError> configure(sqlite3* db, std::chrono::milliseconds busy_timeout) {
  sqlite3_extended_result_codes(db, 1);
  sqlite3_busy_timeout(db, static_cast<int>(busy_timeout.count()));

  // journal_mode returns the mode now in effect, which stays "delete" when SQLite cannot
  // switch to WAL.
  sqlite3_stmt* raw = nullptr;
  if (sqlite3_prepare_v2(db, "PRAGMA journal_mode = WAL", -1, &raw, nullptr) != SQLITE_OK) {
    return std::unexpected(sqlite_error(db, sqlite3_extended_errcode(db), "enable WAL mode"));
  }
  Statement journal{db, std::unique_ptr<sqlite3_stmt, StatementFinalizer>{raw}, "enable WAL mode"};
  auto row = journal.step();
  if (!row) return std::unexpected(row.error());
  if (*row != SQLITE_ROW || journal.text(0) != "wal") {
    return fail(StoreError::unavailable, fmt::format("enable WAL mode: journal mode is \"{}\"", journal.text(0)));
  }

  auto foreign_keys = execute(db, "PRAGMA foreign_keys = ON", "enable foreign keys");
  if (!foreign_keys) return foreign_keys;
  return execute(db, "PRAGMA synchronous = NORMAL", "set synchronous mode");
}

}  // namespace

Result<std::unique_ptr<Store>, StoreError> open_sqlite_store(const std::string& path, const StoreOptions& options) {
  auto created = create_private_file(path);
  if (!created) return std::unexpected(created.error());

  sqlite3* raw = nullptr;
  const int code = sqlite3_open_v2(path.c_str(), &raw, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, nullptr);
  Database db{raw};
  if (code != SQLITE_OK) {
    return fail(StoreError::unavailable, fmt::format("cannot open SQLite database {}: {}", path, sqlite3_errstr(code)));
  }

  auto configured = configure(db.get(), options.busy_timeout);
  if (!configured) return std::unexpected(configured.error());
  return std::make_unique<SqliteStore>(std::move(db), options.migrations);
}

}  // namespace licensing::store::detail
