// One suite for both store back ends. SQLite cases use a file in a fresh temporary
// directory; PostgreSQL cases create a fresh database in the cluster whose URL is in
// the file named by LICENSING_TEST_PG_URL_FILE (set by the postgres ctest fixture).
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <sys/stat.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <latch>
#include <pqxx/pqxx>
#include <random>
#include <thread>
#include <vector>

#include "store/backends.hpp"
#include "store/store.hpp"

namespace licensing::store {
namespace {

using detail::from_unix_seconds;
using std::chrono::seconds;

const TimePoint kNow = from_unix_seconds(1'700'000'000);

enum class Backend { sqlite, postgres };

std::string random_hex(std::size_t bytes) {
  static thread_local std::mt19937_64 generator{std::random_device{}()};
  std::string text;
  for (std::size_t i = 0; i < bytes; ++i) {
    static constexpr char kDigits[] = "0123456789abcdef";
    const auto byte = generator() & 0xff;
    text += kDigits[byte >> 4];
    text += kDigits[byte & 0xf];
  }
  return text;
}

// The URL of the fixture's cluster. Fails the test, rather than skipping it, when the
// fixture did not provide one.
std::string postgres_base_url() {
  const char* url_file = std::getenv("LICENSING_TEST_PG_URL_FILE");
  if (url_file == nullptr) {
    ADD_FAILURE() << "LICENSING_TEST_PG_URL_FILE is not set; run through ctest, which starts PostgreSQL, "
                     "or pass --gtest_filter=-Postgres*";
    return {};
  }
  std::ifstream file{url_file};
  std::string url;
  std::getline(file, url);
  if (url.empty()) ADD_FAILURE() << "no PostgreSQL URL in " << url_file;
  return url;
}

// Replaces the database name, the part after the last '/', of a URL without a query.
std::string with_database(const std::string& url, const std::string& database) {
  return url.substr(0, url.rfind('/') + 1) + database;
}

User make_user(std::string_view name) {
  return User{
      .id = "id-" + std::string{name},
      .username = std::string{name},
      .username_key = "key-" + std::string{name},
      .password_hash = "$argon2id$v=19$m=65536,t=2,p=1$c2FsdA$aGFzaA-" + std::string{name},
      .created_at = kNow,
  };
}

RefreshToken make_token(std::string_view hash, std::string_view family, std::string_view user_id) {
  return RefreshToken{
      .token_hash = std::string{hash},
      .family_id = std::string{family},
      .user_id = std::string{user_id},
      .issued_at = kNow,
      .expires_at = kNow + seconds{3600},
  };
}

std::string backend_name(const testing::TestParamInfo<Backend>& info) {
  return info.param == Backend::sqlite ? "sqlite" : "postgres";
}

class StoreTest : public testing::TestWithParam<Backend> {
 protected:
  void SetUp() override {
    if (GetParam() == Backend::sqlite) {
      directory_ = std::filesystem::temp_directory_path() / ("store_test_" + random_hex(8));
      std::filesystem::create_directory(directory_);
      url_ = "sqlite://" + (directory_ / "licensing.db").string();
      return;
    }

    base_url_ = postgres_base_url();
    ASSERT_FALSE(base_url_.empty());
    ASSERT_EQ(base_url_.find('?'), std::string::npos) << "the fixture URL must not carry a query";
    database_ = "store_test_" + random_hex(8);
    pqxx::connection admin{base_url_};
    pqxx::nontransaction transaction{admin};
    transaction.exec0("CREATE DATABASE " + database_);
    url_ = with_database(base_url_, database_);
  }

  void TearDown() override {
    if (!directory_.empty()) std::filesystem::remove_all(directory_);
    if (!database_.empty()) {
      pqxx::connection admin{base_url_};
      pqxx::nontransaction transaction{admin};
      transaction.exec0("DROP DATABASE IF EXISTS " + database_ + " WITH (FORCE)");
    }
  }

  // Opens a store on this test's database; nullptr (and a test failure) on error.
  std::unique_ptr<Store> open(const StoreOptions& options = {}) {
    auto store = open_store(url_, options);
    if (!store) {
      ADD_FAILURE() << "open_store failed: " << store.error().detail;
      return nullptr;
    }
    return std::move(*store);
  }

  std::unique_ptr<Store> open_migrated() {
    auto store = open();
    if (!store) return nullptr;
    auto migrated = store->migrate();
    if (!migrated) {
      ADD_FAILURE() << "migrate failed: " << migrated.error().detail;
      return nullptr;
    }
    return store;
  }

  // Counts the rows of `table` over a connection of its own. `table` is a constant of
  // this file, never input.
  std::int64_t count_rows(const std::string& table) {
    const std::string sql = "SELECT count(*) FROM " + table;
    if (GetParam() == Backend::postgres) {
      pqxx::connection connection{url_};
      pqxx::nontransaction transaction{connection};
      return transaction.exec1(sql)[0].as<std::int64_t>();
    }

    sqlite3* db = nullptr;
    std::int64_t count = -1;
    if (sqlite3_open((directory_ / "licensing.db").c_str(), &db) == SQLITE_OK) {
      sqlite3_stmt* statement = nullptr;
      if (sqlite3_prepare_v2(db, sql.c_str(), -1, &statement, nullptr) == SQLITE_OK &&
          sqlite3_step(statement) == SQLITE_ROW) {
        count = sqlite3_column_int64(statement, 0);
      }
      sqlite3_finalize(statement);
    }
    sqlite3_close(db);
    return count;
  }

  std::filesystem::path directory_;
  std::string base_url_;
  std::string database_;
  std::string url_;
};

INSTANTIATE_TEST_SUITE_P(Sqlite, StoreTest, testing::Values(Backend::sqlite), backend_name);
INSTANTIATE_TEST_SUITE_P(Postgres, StoreTest, testing::Values(Backend::postgres), backend_name);

// --- users ---

TEST_P(StoreTest, CreatedUserFoundByKeyAndId) {
  auto store = open_migrated();
  ASSERT_NE(store, nullptr);
  const User alice = make_user("alice");
  ASSERT_TRUE(store->create_user(alice));

  auto by_key = store->find_user_by_key(alice.username_key);
  ASSERT_TRUE(by_key);
  ASSERT_TRUE(by_key->has_value());
  EXPECT_EQ((*by_key)->id, alice.id);
  EXPECT_EQ((*by_key)->username, alice.username);
  EXPECT_EQ((*by_key)->username_key, alice.username_key);
  EXPECT_EQ((*by_key)->password_hash, alice.password_hash);
  EXPECT_EQ((*by_key)->created_at, alice.created_at);

  auto by_id = store->find_user_by_id(alice.id);
  ASSERT_TRUE(by_id);
  ASSERT_TRUE(by_id->has_value());
  EXPECT_EQ((*by_id)->username_key, alice.username_key);
}

TEST_P(StoreTest, DuplicateUsernameKeyConflictsAndKeepsFirst) {
  auto store = open_migrated();
  ASSERT_NE(store, nullptr);
  const User first = make_user("alice");
  ASSERT_TRUE(store->create_user(first));

  User second = make_user("mallory");
  second.username_key = first.username_key;
  auto created = store->create_user(second);
  ASSERT_FALSE(created);
  EXPECT_EQ(created.error().code, StoreError::conflict);
  EXPECT_EQ(created.error().detail.find(second.password_hash), std::string::npos);
  EXPECT_EQ(created.error().detail.find("INSERT"), std::string::npos);

  auto found = store->find_user_by_key(first.username_key);
  ASSERT_TRUE(found);
  ASSERT_TRUE(found->has_value());
  EXPECT_EQ((*found)->id, first.id);
  EXPECT_EQ((*found)->password_hash, first.password_hash);
  auto intruder = store->find_user_by_id(second.id);
  ASSERT_TRUE(intruder);
  EXPECT_FALSE(intruder->has_value());
}

TEST_P(StoreTest, DuplicateUserIdConflicts) {
  auto store = open_migrated();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->create_user(make_user("alice")));
  User clash = make_user("bob");
  clash.id = make_user("alice").id;

  auto created = store->create_user(clash);
  ASSERT_FALSE(created);
  EXPECT_EQ(created.error().code, StoreError::conflict);
}

TEST_P(StoreTest, UnknownUserNotFound) {
  auto store = open_migrated();
  ASSERT_NE(store, nullptr);

  auto by_key = store->find_user_by_key("nobody");
  ASSERT_TRUE(by_key);
  EXPECT_FALSE(by_key->has_value());
  auto by_id = store->find_user_by_id("00000000-0000-4000-8000-000000000000");
  ASSERT_TRUE(by_id);
  EXPECT_FALSE(by_id->has_value());
}

TEST_P(StoreTest, InjectionLookingUsernamesStoredVerbatim) {
  auto store = open_migrated();
  ASSERT_NE(store, nullptr);
  const std::vector<std::string> names = {
      "robert'); DROP TABLE users;--",
      "x' OR '1'='1",
      "50%_\\\"$1?",
      "ünïcödé-名前",
  };
  for (std::size_t i = 0; i < names.size(); ++i) {
    User user = make_user("user" + std::to_string(i));
    user.username = names[i];
    user.username_key = names[i];
    ASSERT_TRUE(store->create_user(user)) << names[i];
  }

  for (const auto& name : names) {
    auto found = store->find_user_by_key(name);
    ASSERT_TRUE(found) << name;
    ASSERT_TRUE(found->has_value()) << name;
    EXPECT_EQ((*found)->username, name);
    EXPECT_EQ((*found)->username_key, name);
  }
  auto wildcard = store->find_user_by_key("%");
  ASSERT_TRUE(wildcard);
  EXPECT_FALSE(wildcard->has_value());
  EXPECT_EQ(count_rows("users"), static_cast<std::int64_t>(names.size()));
}

TEST_P(StoreTest, PasswordHashSwapsOnlyFromExpected) {
  auto store = open_migrated();
  ASSERT_NE(store, nullptr);
  const User alice = make_user("alice");
  ASSERT_TRUE(store->create_user(alice));

  ASSERT_TRUE(store->update_password_hash(alice.id, alice.password_hash, "$argon2id$new"));
  auto stale = store->update_password_hash(alice.id, alice.password_hash, "$argon2id$lost");
  ASSERT_FALSE(stale);
  EXPECT_EQ(stale.error().code, StoreError::not_found);
  EXPECT_EQ(stale.error().detail.find("$argon2id$"), std::string::npos);

  auto found = store->find_user_by_id(alice.id);
  ASSERT_TRUE(found);
  ASSERT_TRUE(found->has_value());
  EXPECT_EQ((*found)->password_hash, "$argon2id$new");
}

TEST_P(StoreTest, PasswordHashOfUnknownUserNotFound) {
  auto store = open_migrated();
  ASSERT_NE(store, nullptr);

  auto updated = store->update_password_hash("missing", "$argon2id$old", "$argon2id$new");
  ASSERT_FALSE(updated);
  EXPECT_EQ(updated.error().code, StoreError::not_found);
}

// --- refresh tokens ---

class RefreshTokenTest : public StoreTest {
 protected:
  void SetUp() override {
    StoreTest::SetUp();
    if (HasFatalFailure()) return;
    store_ = open_migrated();
    ASSERT_NE(store_, nullptr);
    ASSERT_TRUE(store_->create_user(make_user("alice")));
    ASSERT_TRUE(store_->create_user(make_user("bob")));
  }

  void TearDown() override {
    store_.reset();
    StoreTest::TearDown();
  }

  RefreshOutcome use(std::string_view hash, TimePoint now = kNow) {
    auto result = store_->use_refresh_token(hash, now);
    if (!result) {
      ADD_FAILURE() << "use_refresh_token failed: " << result.error().detail;
      return RefreshOutcome::unknown;
    }
    return result->outcome;
  }

  std::unique_ptr<Store> store_;
  const std::string alice_ = make_user("alice").id;
  const std::string bob_ = make_user("bob").id;
};

INSTANTIATE_TEST_SUITE_P(Sqlite, RefreshTokenTest, testing::Values(Backend::sqlite), backend_name);
INSTANTIATE_TEST_SUITE_P(Postgres, RefreshTokenTest, testing::Values(Backend::postgres), backend_name);

TEST_P(RefreshTokenTest, CurrentTokenRotates) {
  const RefreshToken token = make_token("hash-1", "family-1", alice_);
  ASSERT_TRUE(store_->insert_refresh_token(token));

  auto result = store_->use_refresh_token(token.token_hash, kNow + seconds{10});
  ASSERT_TRUE(result);
  EXPECT_EQ(result->outcome, RefreshOutcome::rotated);
  ASSERT_TRUE(result->token.has_value());
  EXPECT_EQ(result->token->token_hash, token.token_hash);
  EXPECT_EQ(result->token->family_id, token.family_id);
  EXPECT_EQ(result->token->user_id, alice_);
  EXPECT_EQ(result->token->issued_at, token.issued_at);
  EXPECT_EQ(result->token->expires_at, token.expires_at);

  auto revoked = store_->is_family_revoked(token.family_id);
  ASSERT_TRUE(revoked);
  EXPECT_FALSE(*revoked);
}

TEST_P(RefreshTokenTest, ReusedTokenRevokesFamily) {
  ASSERT_TRUE(store_->insert_refresh_token(make_token("hash-1", "family-1", alice_)));
  ASSERT_EQ(use("hash-1"), RefreshOutcome::rotated);
  ASSERT_TRUE(store_->insert_refresh_token(make_token("hash-2", "family-1", alice_)));

  auto reused = store_->use_refresh_token("hash-1", kNow + seconds{5});
  ASSERT_TRUE(reused);
  EXPECT_EQ(reused->outcome, RefreshOutcome::reused);
  ASSERT_TRUE(reused->token.has_value());
  EXPECT_EQ(reused->token->family_id, "family-1");

  auto revoked = store_->is_family_revoked("family-1");
  ASSERT_TRUE(revoked);
  EXPECT_TRUE(*revoked);
  EXPECT_EQ(use("hash-2"), RefreshOutcome::revoked);
}

TEST_P(RefreshTokenTest, ReuseLeavesOtherFamiliesAlone) {
  ASSERT_TRUE(store_->insert_refresh_token(make_token("hash-1", "family-1", alice_)));
  ASSERT_TRUE(store_->insert_refresh_token(make_token("hash-2", "family-2", alice_)));
  ASSERT_EQ(use("hash-1"), RefreshOutcome::rotated);
  ASSERT_EQ(use("hash-1"), RefreshOutcome::reused);

  EXPECT_EQ(use("hash-2"), RefreshOutcome::rotated);
}

TEST_P(RefreshTokenTest, TokenAtExpiryIsExpired) {
  const RefreshToken token = make_token("hash-1", "family-1", alice_);
  ASSERT_TRUE(store_->insert_refresh_token(token));

  auto expired = store_->use_refresh_token(token.token_hash, token.expires_at);
  ASSERT_TRUE(expired);
  EXPECT_EQ(expired->outcome, RefreshOutcome::expired);
  ASSERT_TRUE(expired->token.has_value());
  EXPECT_EQ(expired->token->token_hash, token.token_hash);

  // An expired attempt neither uses the token nor revokes the family.
  EXPECT_EQ(use(token.token_hash, token.expires_at - seconds{1}), RefreshOutcome::rotated);
}

TEST_P(RefreshTokenTest, UnknownTokenIsUnknown) {
  auto result = store_->use_refresh_token("no-such-hash", kNow);
  ASSERT_TRUE(result);
  EXPECT_EQ(result->outcome, RefreshOutcome::unknown);
  EXPECT_FALSE(result->token.has_value());
}

TEST_P(RefreshTokenTest, RevokedFamilyTokenIsRevoked) {
  ASSERT_TRUE(store_->insert_refresh_token(make_token("hash-1", "family-1", alice_)));
  ASSERT_TRUE(store_->revoke_family("family-1", kNow));
  ASSERT_TRUE(store_->revoke_family("family-1", kNow + seconds{1}));

  auto result = store_->use_refresh_token("hash-1", kNow + seconds{2});
  ASSERT_TRUE(result);
  EXPECT_EQ(result->outcome, RefreshOutcome::revoked);
  ASSERT_TRUE(result->token.has_value());
  auto revoked = store_->is_family_revoked("family-1");
  ASSERT_TRUE(revoked);
  EXPECT_TRUE(*revoked);
}

TEST_P(RefreshTokenTest, UnknownFamilyNotFound) {
  auto revoked = store_->revoke_family("no-such-family", kNow);
  ASSERT_FALSE(revoked);
  EXPECT_EQ(revoked.error().code, StoreError::not_found);

  auto checked = store_->is_family_revoked("no-such-family");
  ASSERT_FALSE(checked);
  EXPECT_EQ(checked.error().code, StoreError::not_found);
}

TEST_P(RefreshTokenTest, DuplicateTokenHashConflicts) {
  ASSERT_TRUE(store_->insert_refresh_token(make_token("hash-1", "family-1", alice_)));

  auto inserted = store_->insert_refresh_token(make_token("hash-1", "family-2", alice_));
  ASSERT_FALSE(inserted);
  EXPECT_EQ(inserted.error().code, StoreError::conflict);
  EXPECT_EQ(inserted.error().detail.find("hash-1"), std::string::npos);
}

TEST_P(RefreshTokenTest, FamilyOfAnotherUserConflicts) {
  ASSERT_TRUE(store_->insert_refresh_token(make_token("hash-1", "family-1", alice_)));

  auto inserted = store_->insert_refresh_token(make_token("hash-2", "family-1", bob_));
  ASSERT_FALSE(inserted);
  EXPECT_EQ(inserted.error().code, StoreError::conflict);
  EXPECT_EQ(use("hash-2"), RefreshOutcome::unknown);
}

TEST_P(RefreshTokenTest, TokenOfUnknownUserNotFound) {
  auto inserted = store_->insert_refresh_token(make_token("hash-1", "family-1", "no-such-user"));
  ASSERT_FALSE(inserted);
  EXPECT_EQ(inserted.error().code, StoreError::not_found);
}

TEST_P(RefreshTokenTest, ConcurrentUseRotatesExactlyOnce) {
  ASSERT_TRUE(store_->insert_refresh_token(make_token("hash-1", "family-1", alice_)));
  constexpr int kThreads = 8;
  std::latch start{kThreads};
  std::vector<Result<RefreshResult, StoreError>> results(kThreads, fail(StoreError::unavailable, "not run"));

  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      start.arrive_and_wait();
      results[static_cast<std::size_t>(i)] = store_->use_refresh_token("hash-1", kNow);
    });
  }
  for (auto& thread : threads) thread.join();

  int rotated = 0;
  int reused = 0;
  int revoked = 0;
  for (const auto& result : results) {
    ASSERT_TRUE(result) << result.error().detail;
    rotated += result->outcome == RefreshOutcome::rotated;
    reused += result->outcome == RefreshOutcome::reused;
    revoked += result->outcome == RefreshOutcome::revoked;
  }
  // The calls are serialized: one rotates, the next finds it used and revokes the
  // family, and the rest find the family revoked.
  EXPECT_EQ(rotated, 1);
  EXPECT_EQ(reused, 1);
  EXPECT_EQ(revoked, kThreads - 2);
  auto family_revoked = store_->is_family_revoked("family-1");
  ASSERT_TRUE(family_revoked);
  EXPECT_TRUE(*family_revoked);
}

TEST_P(RefreshTokenTest, ConcurrentUseFromTwoStoresRotatesExactlyOnce) {
  ASSERT_TRUE(store_->insert_refresh_token(make_token("hash-1", "family-1", alice_)));
  auto other = open();
  ASSERT_NE(other, nullptr);
  constexpr int kThreads = 8;
  std::latch start{kThreads};
  std::atomic<int> rotated{0};
  std::atomic<int> failed{0};

  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    Store* store = i % 2 == 0 ? store_.get() : other.get();
    threads.emplace_back([&, store] {
      start.arrive_and_wait();
      auto result = store->use_refresh_token("hash-1", kNow);
      if (!result) ++failed;
      if (result && result->outcome == RefreshOutcome::rotated) ++rotated;
    });
  }
  for (auto& thread : threads) thread.join();

  EXPECT_EQ(failed.load(), 0);
  EXPECT_EQ(rotated.load(), 1);
  auto family_revoked = store_->is_family_revoked("family-1");
  ASSERT_TRUE(family_revoked);
  EXPECT_TRUE(*family_revoked);
}

// --- migrations and lifetime ---

TEST_P(StoreTest, FreshDatabaseHasVersionZero) {
  auto store = open();
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->schema_version(), 0);

  auto created = store->create_user(make_user("alice"));
  ASSERT_FALSE(created);
  EXPECT_EQ(created.error().code, StoreError::migration);
}

TEST_P(StoreTest, MigrateTwiceIsNoOp) {
  auto store = open();
  ASSERT_NE(store, nullptr);
  const int latest = static_cast<int>(schema_migrations().size());

  ASSERT_TRUE(store->migrate());
  EXPECT_EQ(store->schema_version(), latest);
  ASSERT_TRUE(store->create_user(make_user("alice")));
  ASSERT_TRUE(store->migrate());

  EXPECT_EQ(store->schema_version(), latest);
  EXPECT_EQ(count_rows("schema_migrations"), latest);
  EXPECT_EQ(count_rows("users"), 1);
}

TEST_P(StoreTest, ConcurrentMigrateFromTwoStoresIsSafe) {
  auto first = open();
  auto second = open();
  ASSERT_NE(first, nullptr);
  ASSERT_NE(second, nullptr);

  std::latch start{2};
  Result<void, StoreError> first_result = fail(StoreError::unavailable, "not run");
  Result<void, StoreError> second_result = fail(StoreError::unavailable, "not run");
  std::thread first_thread{[&] {
    start.arrive_and_wait();
    first_result = first->migrate();
  }};
  std::thread second_thread{[&] {
    start.arrive_and_wait();
    second_result = second->migrate();
  }};
  first_thread.join();
  second_thread.join();

  ASSERT_TRUE(first_result) << first_result.error().detail;
  ASSERT_TRUE(second_result) << second_result.error().detail;
  const int latest = static_cast<int>(schema_migrations().size());
  EXPECT_EQ(first->schema_version(), latest);
  EXPECT_EQ(count_rows("schema_migrations"), latest);
  EXPECT_TRUE(second->create_user(make_user("alice")));
}

TEST_P(StoreTest, NewerSchemaVersionRejected) {
  std::vector<Migration> newer{schema_migrations().begin(), schema_migrations().end()};
  newer.push_back(Migration{static_cast<int>(newer.size()) + 1, "from a newer build",
                            "CREATE TABLE newer_build_table (id BIGINT NOT NULL)"});
  auto newer_store = open(StoreOptions{.migrations = newer});
  ASSERT_NE(newer_store, nullptr);
  ASSERT_TRUE(newer_store->migrate());
  newer_store.reset();

  auto store = open();
  ASSERT_NE(store, nullptr);
  auto migrated = store->migrate();
  ASSERT_FALSE(migrated);
  EXPECT_EQ(migrated.error().code, StoreError::migration);
  EXPECT_NE(migrated.error().detail.find(std::to_string(newer.size())), std::string::npos) << migrated.error().detail;
  EXPECT_EQ(store->schema_version(), static_cast<int>(newer.size()));
}

TEST_P(StoreTest, OutOfOrderMigrationListRejected) {
  const std::vector<Migration> broken{Migration{2, "skips version 1", "CREATE TABLE skipped (id BIGINT)"}};
  auto store = open(StoreOptions{.migrations = broken});
  ASSERT_NE(store, nullptr);

  auto migrated = store->migrate();
  ASSERT_FALSE(migrated);
  EXPECT_EQ(migrated.error().code, StoreError::migration);
  EXPECT_EQ(store->schema_version(), 0);
}

TEST_P(StoreTest, DataSurvivesReopen) {
  {
    auto store = open_migrated();
    ASSERT_NE(store, nullptr);
    ASSERT_TRUE(store->create_user(make_user("alice")));
    ASSERT_TRUE(store->insert_refresh_token(make_token("hash-1", "family-1", make_user("alice").id)));
    ASSERT_TRUE(store->use_refresh_token("hash-1", kNow));
  }

  auto store = open();
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->schema_version(), static_cast<int>(schema_migrations().size()));
  auto found = store->find_user_by_key(make_user("alice").username_key);
  ASSERT_TRUE(found);
  EXPECT_TRUE(found->has_value());
  auto reused = store->use_refresh_token("hash-1", kNow);
  ASSERT_TRUE(reused);
  EXPECT_EQ(reused->outcome, RefreshOutcome::reused);
}

TEST_P(StoreTest, PingSucceeds) {
  auto store = open();
  ASSERT_NE(store, nullptr);
  EXPECT_TRUE(store->ping());
}

// --- back-end specific ---

TEST(OpenStore, UnknownSchemeRejected) {
  auto store = open_store("mysql://admin:hunter2@127.0.0.1/licensing");
  ASSERT_FALSE(store);
  EXPECT_EQ(store.error().code, StoreError::unavailable);
  EXPECT_EQ(store.error().detail.find("hunter2"), std::string::npos);
}

TEST(OpenStore, RelativeSqlitePathRejected) {
  auto store = open_store("sqlite://licensing.db");
  ASSERT_FALSE(store);
  EXPECT_EQ(store.error().code, StoreError::unavailable);
}

TEST(OpenStore, UnreachablePostgresUnavailable) {
  // Nothing normally listens on port 1 of loopback, so the connection is refused at once.
  auto store = open_store("postgresql://licensing:hunter2@127.0.0.1:1/licensing");
  ASSERT_FALSE(store);
  EXPECT_EQ(store.error().code, StoreError::unavailable);
  EXPECT_EQ(store.error().detail.find("hunter2"), std::string::npos);
}

TEST(SqliteFile, CreatedPrivateInWalMode) {
  const auto directory = std::filesystem::temp_directory_path() / ("store_test_" + random_hex(8));
  std::filesystem::create_directory(directory);
  const auto path = directory / "licensing.db";
  {
    auto store = open_store("sqlite://" + path.string());
    ASSERT_TRUE(store) << store.error().detail;
    ASSERT_TRUE((*store)->migrate());

    struct stat status {};
    ASSERT_EQ(::stat(path.c_str(), &status), 0);
    EXPECT_EQ(status.st_mode & 0777, 0600u);
    ASSERT_EQ(::stat((path.string() + "-wal").c_str(), &status), 0);
    EXPECT_EQ(status.st_mode & 0777, 0600u);
  }

  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  sqlite3_stmt* statement = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &statement, nullptr), SQLITE_OK);
  ASSERT_EQ(sqlite3_step(statement), SQLITE_ROW);
  EXPECT_STREQ(reinterpret_cast<const char*>(sqlite3_column_text(statement, 0)), "wal");
  sqlite3_finalize(statement);
  sqlite3_close(db);
  std::filesystem::remove_all(directory);
}

TEST(SqliteFile, HeldWriteLockTimesOutUnavailable) {
  const auto directory = std::filesystem::temp_directory_path() / ("store_test_" + random_hex(8));
  std::filesystem::create_directory(directory);
  const auto path = directory / "licensing.db";
  auto store = open_store("sqlite://" + path.string(), StoreOptions{.busy_timeout = std::chrono::milliseconds{200}});
  ASSERT_TRUE(store) << store.error().detail;
  ASSERT_TRUE((*store)->migrate());

  sqlite3* holder = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &holder), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(holder, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr), SQLITE_OK);

  const auto started = std::chrono::steady_clock::now();
  auto created = (*store)->create_user(make_user("alice"));
  const auto waited = std::chrono::steady_clock::now() - started;
  ASSERT_FALSE(created);
  EXPECT_EQ(created.error().code, StoreError::unavailable);
  EXPECT_GE(waited, std::chrono::milliseconds{150});

  sqlite3_exec(holder, "ROLLBACK", nullptr, nullptr, nullptr);
  sqlite3_close(holder);
  EXPECT_TRUE((*store)->create_user(make_user("alice")));
  store->reset();
  std::filesystem::remove_all(directory);
}

// PostgreSQL pool behaviour, on a fresh database like the shared suite.
class PostgresPool : public StoreTest {};
INSTANTIATE_TEST_SUITE_P(Postgres, PostgresPool, testing::Values(Backend::postgres), backend_name);

// Waits, bounded, until a session of this database waits for a lock.
bool wait_for_lock_waiter(pqxx::connection& admin, const std::string& database) {
  for (int attempt = 0; attempt < 100; ++attempt) {
    pqxx::nontransaction transaction{admin};
    const auto rows = transaction.exec_params(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND wait_event_type = 'Lock'", database);
    if (rows[0][0].as<int>() > 0) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds{50});
  }
  return false;
}

TEST_P(PostgresPool, BusyPoolTimesOutUnavailable) {
  auto store = open(StoreOptions{.pool_size = 1, .pool_wait = std::chrono::milliseconds{200}});
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->migrate());
  ASSERT_TRUE(store->create_user(make_user("alice")));
  ASSERT_TRUE(store->insert_refresh_token(make_token("hash-1", "family-1", make_user("alice").id)));

  // Lock the token row so that a use_refresh_token call holds the only connection.
  pqxx::connection locker{url_};
  pqxx::work lock{locker};
  lock.exec("SELECT token_hash FROM refresh_tokens FOR UPDATE");
  Result<RefreshResult, StoreError> blocked = fail(StoreError::unavailable, "not run");
  std::thread user{[&] { blocked = store->use_refresh_token("hash-1", kNow); }};

  pqxx::connection admin{base_url_};
  const bool waiting = wait_for_lock_waiter(admin, database_);
  auto found = store->find_user_by_key(make_user("alice").username_key);
  lock.commit();
  user.join();

  ASSERT_TRUE(waiting);
  ASSERT_FALSE(found);
  EXPECT_EQ(found.error().code, StoreError::unavailable);
  ASSERT_TRUE(blocked) << blocked.error().detail;
  EXPECT_EQ(blocked->outcome, RefreshOutcome::rotated);
  EXPECT_TRUE(store->ping());
}

TEST_P(PostgresPool, ReconnectsAfterConnectionLoss) {
  auto store = open(StoreOptions{.pool_size = 1});
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->migrate());
  ASSERT_TRUE(store->ping());

  {
    pqxx::connection admin{base_url_};
    pqxx::nontransaction transaction{admin};
    const auto terminated = transaction.exec_params(
        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = $1 AND pid <> pg_backend_pid()) AS t",
        database_);
    ASSERT_EQ(terminated[0][0].as<int>(), 1);
  }

  // The first call may find the dead connection and fail; the pool then reconnects.
  bool answered = store->ping();
  if (!answered) answered = store->ping();
  EXPECT_TRUE(answered);
  EXPECT_TRUE(store->create_user(make_user("alice")));
}

// --- enclaves ---

class EnclaveStoreTest : public StoreTest {
 protected:
  void SetUp() override {
    StoreTest::SetUp();
    if (HasFatalFailure()) return;
    store_ = open_migrated();
    ASSERT_NE(store_, nullptr);
  }

  static Enclave make_enclave(std::string_view id, std::string_view owner, std::string_view key = {}) {
    return Enclave{
        .id = std::string{id},
        .owner_id = std::string{owner},
        .state = EnclaveState::requested,
        .endpoint = {},
        .port = 0,
        .instance = std::string{id},
        .failure_reason = {},
        .idempotency_key = std::string{key},
        .certificate_not_after = std::nullopt,
        .created_at = kNow,
        .updated_at = kNow,
    };
  }

  // Inserts with a quota of 10 and ports 20000-20009; fails the test on a store error.
  EnclaveInsertResult insert(const Enclave& enclave, std::size_t quota = 10, PortRange ports = {20000, 20009}) {
    auto result = store_->insert_enclave(enclave, quota, ports);
    if (!result) {
      ADD_FAILURE() << "insert_enclave failed: " << result.error().detail;
      return {EnclaveInsertOutcome::no_free_port, std::nullopt};
    }
    return *result;
  }

  static EnclaveCredential make_credential(std::string_view hash, std::string_view enclave_id,
                                           CredentialKind kind = CredentialKind::bootstrap) {
    return EnclaveCredential{std::string{hash}, std::string{enclave_id}, kind, kNow, kNow + seconds{600}};
  }

  std::unique_ptr<Store> store_;
};

INSTANTIATE_TEST_SUITE_P(Sqlite, EnclaveStoreTest, testing::Values(Backend::sqlite), backend_name);
INSTANTIATE_TEST_SUITE_P(Postgres, EnclaveStoreTest, testing::Values(Backend::postgres), backend_name);

TEST_P(EnclaveStoreTest, InsertedEnclaveFoundWithLowestPort) {
  const auto first = insert(make_enclave("e1", "alice"));
  const auto second = insert(make_enclave("e2", "alice"));
  ASSERT_EQ(first.outcome, EnclaveInsertOutcome::created);
  ASSERT_EQ(second.outcome, EnclaveInsertOutcome::created);
  EXPECT_EQ(first.enclave->port, 20000);
  EXPECT_EQ(second.enclave->port, 20001);

  auto found = store_->find_enclave("e2");
  ASSERT_TRUE(found);
  ASSERT_TRUE(found->has_value());
  EXPECT_EQ((*found)->owner_id, "alice");
  EXPECT_EQ((*found)->state, EnclaveState::requested);
  EXPECT_EQ((*found)->port, 20001);
  EXPECT_EQ((*found)->instance, "e2");
  EXPECT_EQ((*found)->created_at, kNow);
  EXPECT_FALSE((*found)->certificate_not_after.has_value());

  auto missing = store_->find_enclave("e3");
  ASSERT_TRUE(missing);
  EXPECT_FALSE(missing->has_value());
}

TEST_P(EnclaveStoreTest, SameIdempotencyKeyReturnsExisting) {
  const auto first = insert(make_enclave("e1", "alice", "key-1"));
  const auto again = insert(make_enclave("e2", "alice", "key-1"));
  const auto other_owner = insert(make_enclave("e3", "bob", "key-1"));
  ASSERT_EQ(first.outcome, EnclaveInsertOutcome::created);
  ASSERT_EQ(again.outcome, EnclaveInsertOutcome::existing);
  EXPECT_EQ(again.enclave->id, "e1");
  EXPECT_EQ(other_owner.outcome, EnclaveInsertOutcome::created);
  EXPECT_EQ(count_rows("enclaves"), 2);
}

TEST_P(EnclaveStoreTest, EmptyIdempotencyKeysNeverCollide) {
  EXPECT_EQ(insert(make_enclave("e1", "alice")).outcome, EnclaveInsertOutcome::created);
  EXPECT_EQ(insert(make_enclave("e2", "alice")).outcome, EnclaveInsertOutcome::created);
}

TEST_P(EnclaveStoreTest, QuotaCountsOnlyLiveEnclaves) {
  ASSERT_EQ(insert(make_enclave("e1", "alice"), 1).outcome, EnclaveInsertOutcome::created);
  const auto over = insert(make_enclave("e2", "alice"), 1);
  EXPECT_EQ(over.outcome, EnclaveInsertOutcome::quota_exceeded);
  EXPECT_FALSE(over.enclave.has_value());
  EXPECT_EQ(count_rows("enclaves"), 1);
  EXPECT_EQ(insert(make_enclave("e3", "bob"), 1).outcome, EnclaveInsertOutcome::created);

  ASSERT_TRUE(store_->transition_enclave("e1", EnclaveState::requested, EnclaveState::failed,
                                         {.failure_reason = "test"}, kNow));
  EXPECT_EQ(insert(make_enclave("e4", "alice"), 1).outcome, EnclaveInsertOutcome::created);
}

TEST_P(EnclaveStoreTest, ExhaustedPortRangeWritesNothing) {
  const PortRange two_ports{30000, 30001};
  ASSERT_EQ(insert(make_enclave("e1", "alice"), 10, two_ports).outcome, EnclaveInsertOutcome::created);
  ASSERT_EQ(insert(make_enclave("e2", "bob"), 10, two_ports).outcome, EnclaveInsertOutcome::created);
  EXPECT_EQ(insert(make_enclave("e3", "carol"), 10, two_ports).outcome, EnclaveInsertOutcome::no_free_port);
  EXPECT_EQ(count_rows("enclaves"), 2);

  // A deleted enclave frees its port.
  ASSERT_TRUE(store_->transition_enclave("e1", EnclaveState::requested, EnclaveState::deleting, {}, kNow));
  ASSERT_TRUE(store_->transition_enclave("e1", EnclaveState::deleting, EnclaveState::deleted, {}, kNow));
  const auto reused = insert(make_enclave("e3", "carol"), 10, two_ports);
  ASSERT_EQ(reused.outcome, EnclaveInsertOutcome::created);
  EXPECT_EQ(reused.enclave->port, 30000);
}

TEST_P(EnclaveStoreTest, DuplicateIdConflicts) {
  ASSERT_EQ(insert(make_enclave("e1", "alice")).outcome, EnclaveInsertOutcome::created);
  auto duplicate = store_->insert_enclave(make_enclave("e1", "bob"), 10, {20000, 20009});
  ASSERT_FALSE(duplicate);
  EXPECT_EQ(duplicate.error().code, StoreError::conflict);
}

TEST_P(EnclaveStoreTest, TransitionAppliesChange) {
  ASSERT_EQ(insert(make_enclave("e1", "alice")).outcome, EnclaveInsertOutcome::created);
  auto started = store_->transition_enclave("e1", EnclaveState::requested, EnclaveState::starting,
                                            {.endpoint = "https://127.0.0.1:20000"}, kNow + seconds{5});
  ASSERT_TRUE(started) << started.error().detail;
  EXPECT_EQ(started->state, EnclaveState::starting);
  EXPECT_EQ(started->endpoint, "https://127.0.0.1:20000");

  auto found = store_->find_enclave("e1");
  ASSERT_TRUE(found && found->has_value());
  EXPECT_EQ((*found)->state, EnclaveState::starting);
  EXPECT_EQ((*found)->endpoint, "https://127.0.0.1:20000");
  EXPECT_EQ((*found)->updated_at, kNow + seconds{5});
}

TEST_P(EnclaveStoreTest, IllegalTransitionRejected) {
  ASSERT_EQ(insert(make_enclave("e1", "alice")).outcome, EnclaveInsertOutcome::created);
  auto skipped = store_->transition_enclave("e1", EnclaveState::requested, EnclaveState::ready, {}, kNow);
  ASSERT_FALSE(skipped);
  EXPECT_EQ(skipped.error().code, StoreError::illegal_transition);

  ASSERT_TRUE(store_->transition_enclave("e1", EnclaveState::requested, EnclaveState::deleting, {}, kNow));
  ASSERT_TRUE(store_->transition_enclave("e1", EnclaveState::deleting, EnclaveState::deleted, {}, kNow));
  auto revived = store_->transition_enclave("e1", EnclaveState::deleted, EnclaveState::starting, {}, kNow);
  ASSERT_FALSE(revived);
  EXPECT_EQ(revived.error().code, StoreError::illegal_transition);
}

TEST_P(EnclaveStoreTest, StaleTransitionConflicts) {
  ASSERT_EQ(insert(make_enclave("e1", "alice")).outcome, EnclaveInsertOutcome::created);
  ASSERT_TRUE(store_->transition_enclave("e1", EnclaveState::requested, EnclaveState::starting, {}, kNow));
  auto stale = store_->transition_enclave("e1", EnclaveState::requested, EnclaveState::failed, {}, kNow);
  ASSERT_FALSE(stale);
  EXPECT_EQ(stale.error().code, StoreError::conflict);

  auto unknown = store_->transition_enclave("e9", EnclaveState::requested, EnclaveState::starting, {}, kNow);
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().code, StoreError::not_found);
}

TEST_P(EnclaveStoreTest, ListsOwnEnclavesOnly) {
  ASSERT_EQ(insert(make_enclave("e1", "alice")).outcome, EnclaveInsertOutcome::created);
  ASSERT_EQ(insert(make_enclave("e2", "bob")).outcome, EnclaveInsertOutcome::created);
  ASSERT_EQ(insert(make_enclave("e3", "alice")).outcome, EnclaveInsertOutcome::created);

  auto listed = store_->list_enclaves("alice");
  ASSERT_TRUE(listed);
  ASSERT_EQ(listed->size(), 2u);
  EXPECT_EQ((*listed)[0].id, "e1");
  EXPECT_EQ((*listed)[1].id, "e3");

  auto all = store_->list_all_enclaves();
  ASSERT_TRUE(all);
  EXPECT_EQ(all->size(), 3u);
}

TEST_P(EnclaveStoreTest, CertificateTimeRecorded) {
  ASSERT_EQ(insert(make_enclave("e1", "alice")).outcome, EnclaveInsertOutcome::created);
  ASSERT_TRUE(store_->set_enclave_certificate("e1", kNow + seconds{86400}, kNow));
  auto found = store_->find_enclave("e1");
  ASSERT_TRUE(found && found->has_value());
  ASSERT_TRUE((*found)->certificate_not_after.has_value());
  EXPECT_EQ(*(*found)->certificate_not_after, kNow + seconds{86400});

  auto unknown = store_->set_enclave_certificate("e9", kNow, kNow);
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().code, StoreError::not_found);
}

TEST_P(EnclaveStoreTest, CredentialConsumedOnce) {
  ASSERT_EQ(insert(make_enclave("e1", "alice")).outcome, EnclaveInsertOutcome::created);
  ASSERT_TRUE(store_->insert_enclave_credential(make_credential("hash-1", "e1")));

  auto first = store_->consume_enclave_credential("hash-1", "e1", kNow + seconds{1});
  ASSERT_TRUE(first);
  EXPECT_EQ(first->outcome, CredentialOutcome::consumed);
  EXPECT_EQ(first->kind, CredentialKind::bootstrap);

  auto second = store_->consume_enclave_credential("hash-1", "e1", kNow + seconds{2});
  ASSERT_TRUE(second);
  EXPECT_EQ(second->outcome, CredentialOutcome::used);
}

TEST_P(EnclaveStoreTest, CredentialAtExpiryIsExpired) {
  ASSERT_EQ(insert(make_enclave("e1", "alice")).outcome, EnclaveInsertOutcome::created);
  ASSERT_TRUE(store_->insert_enclave_credential(make_credential("hash-1", "e1")));
  auto expired = store_->consume_enclave_credential("hash-1", "e1", kNow + seconds{600});
  ASSERT_TRUE(expired);
  EXPECT_EQ(expired->outcome, CredentialOutcome::expired);
}

TEST_P(EnclaveStoreTest, OtherEnclavesCredentialIsUnknown) {
  ASSERT_EQ(insert(make_enclave("e1", "alice")).outcome, EnclaveInsertOutcome::created);
  ASSERT_EQ(insert(make_enclave("e2", "bob")).outcome, EnclaveInsertOutcome::created);
  ASSERT_TRUE(store_->insert_enclave_credential(make_credential("hash-1", "e1")));

  auto wrong_enclave = store_->consume_enclave_credential("hash-1", "e2", kNow);
  ASSERT_TRUE(wrong_enclave);
  EXPECT_EQ(wrong_enclave->outcome, CredentialOutcome::unknown);
  auto missing = store_->consume_enclave_credential("hash-9", "e1", kNow);
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->outcome, CredentialOutcome::unknown);

  // The failed attempt from e2 did not use it up.
  auto owner = store_->consume_enclave_credential("hash-1", "e1", kNow);
  ASSERT_TRUE(owner);
  EXPECT_EQ(owner->outcome, CredentialOutcome::consumed);
}

TEST_P(EnclaveStoreTest, NewCredentialReplacesOld) {
  ASSERT_EQ(insert(make_enclave("e1", "alice")).outcome, EnclaveInsertOutcome::created);
  ASSERT_TRUE(store_->insert_enclave_credential(make_credential("hash-1", "e1")));
  ASSERT_TRUE(store_->insert_enclave_credential(make_credential("hash-2", "e1", CredentialKind::renewal)));

  auto old = store_->consume_enclave_credential("hash-1", "e1", kNow);
  ASSERT_TRUE(old);
  EXPECT_EQ(old->outcome, CredentialOutcome::used);
  auto current = store_->consume_enclave_credential("hash-2", "e1", kNow);
  ASSERT_TRUE(current);
  EXPECT_EQ(current->outcome, CredentialOutcome::consumed);
  EXPECT_EQ(current->kind, CredentialKind::renewal);
}

TEST_P(EnclaveStoreTest, BootstrapKeepsRenewalCredential) {
  ASSERT_EQ(insert(make_enclave("e1", "alice")).outcome, EnclaveInsertOutcome::created);
  ASSERT_TRUE(store_->insert_enclave_credential(make_credential("renewal-1", "e1", CredentialKind::renewal)));
  ASSERT_TRUE(store_->insert_enclave_credential(make_credential("bootstrap-1", "e1")));
  ASSERT_TRUE(store_->insert_enclave_credential(make_credential("bootstrap-2", "e1")));

  // A restart's bootstrap credential replaces the earlier bootstrap only.
  auto earlier_bootstrap = store_->consume_enclave_credential("bootstrap-1", "e1", kNow);
  ASSERT_TRUE(earlier_bootstrap);
  EXPECT_EQ(earlier_bootstrap->outcome, CredentialOutcome::used);
  auto renewal = store_->consume_enclave_credential("renewal-1", "e1", kNow);
  ASSERT_TRUE(renewal);
  EXPECT_EQ(renewal->outcome, CredentialOutcome::consumed);
  EXPECT_EQ(renewal->kind, CredentialKind::renewal);
}

TEST_P(EnclaveStoreTest, CredentialOfUnknownEnclaveNotFound) {
  auto orphan = store_->insert_enclave_credential(make_credential("hash-1", "e9"));
  ASSERT_FALSE(orphan);
  EXPECT_EQ(orphan.error().code, StoreError::not_found);
}

TEST_P(EnclaveStoreTest, ConcurrentConsumeSucceedsOnce) {
  ASSERT_EQ(insert(make_enclave("e1", "alice")).outcome, EnclaveInsertOutcome::created);
  ASSERT_TRUE(store_->insert_enclave_credential(make_credential("hash-1", "e1")));
  auto second_store = open();
  ASSERT_NE(second_store, nullptr);

  constexpr int kThreads = 8;
  std::atomic<int> consumed{0};
  std::latch start{kThreads};
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    Store* store = i % 2 == 0 ? store_.get() : second_store.get();
    threads.emplace_back([&, store] {
      start.arrive_and_wait();
      auto result = store->consume_enclave_credential("hash-1", "e1", kNow);
      if (result && result->outcome == CredentialOutcome::consumed) ++consumed;
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(consumed.load(), 1);
}

TEST_P(EnclaveStoreTest, ConcurrentInsertsRespectQuota) {
  auto second_store = open();
  ASSERT_NE(second_store, nullptr);

  constexpr int kThreads = 8;
  std::atomic<int> created{0};
  std::latch start{kThreads};
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    Store* store = i % 2 == 0 ? store_.get() : second_store.get();
    threads.emplace_back([&, store, i] {
      start.arrive_and_wait();
      auto result = store->insert_enclave(make_enclave("e" + std::to_string(i), "alice"), 3, {20000, 20009});
      if (result && result->outcome == EnclaveInsertOutcome::created) ++created;
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(created.load(), 3);
  EXPECT_EQ(count_rows("enclaves"), 3);
}

}  // namespace
}  // namespace licensing::store
