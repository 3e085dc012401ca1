#include "enclave/secret_store.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include "test_pki.hpp"

namespace licensing::enclave {
namespace {

namespace fs = std::filesystem;

std::span<const std::uint8_t> bytes(std::string_view text) {
  return {reinterpret_cast<const std::uint8_t*>(text.data()), text.size()};
}

class SecretStoreTest : public ::testing::Test {
 protected:
  std::unique_ptr<SecretStore> open() {
    auto store = SecretStore::open(directory_);
    if (!store) {
      ADD_FAILURE() << store.error().detail;
      return nullptr;
    }
    return std::move(*store);
  }

  test::TempDir temp_;
  fs::path directory_ = temp_.path() / "secrets";
};

TEST_F(SecretStoreTest, ValueRoundTrips) {
  auto store = open();
  const std::string value("binary\0value\xff", 13);
  const auto created = store->put("api-key_1.txt", bytes(value));
  ASSERT_TRUE(created.has_value());
  EXPECT_TRUE(*created);

  const auto read = store->get("api-key_1.txt");
  ASSERT_TRUE(read.has_value());
  EXPECT_EQ(read->text(), value);
}

TEST_F(SecretStoreTest, ReplacementReportsExisting) {
  auto store = open();
  ASSERT_TRUE(store->put("name", bytes("one")).has_value());
  const auto replaced = store->put("name", bytes("two"));
  ASSERT_TRUE(replaced.has_value());
  EXPECT_FALSE(*replaced);
  EXPECT_EQ(store->get("name")->text(), "two");
  EXPECT_EQ(store->size(), 1U);
}

TEST_F(SecretStoreTest, InvalidNamesAreRejected) {
  auto store = open();
  const std::vector<std::string> names{"", ".", "..", "a/b", "../x", "a b", "caf\xc3\xa9", std::string(129, 'a'), std::string("a\0b", 3)};
  for (const auto& name : names) {
    SCOPED_TRACE(name);
    const auto put = store->put(name, bytes("x"));
    ASSERT_FALSE(put.has_value());
    EXPECT_EQ(put.error().code, StoreError::invalid_name);
    EXPECT_EQ(store->get(name).error().code, StoreError::invalid_name);
    EXPECT_EQ(store->remove(name).error().code, StoreError::invalid_name);
  }
}

TEST_F(SecretStoreTest, BoundaryNamesAreAccepted) {
  auto store = open();
  const std::vector<std::string> names{std::string(128, 'z'), "...", ".hidden", "A-Z_0.9"};
  for (const auto& name : names) {
    SCOPED_TRACE(name);
    EXPECT_TRUE(store->put(name, bytes("x")).has_value());
  }
}

TEST_F(SecretStoreTest, ValueOverLimitIsRejected) {
  auto store = open();
  const std::string largest(SecretStore::max_value_bytes, 'v');
  EXPECT_TRUE(store->put("largest", bytes(largest)).has_value());

  const std::string too_large(SecretStore::max_value_bytes + 1, 'v');
  const auto put = store->put("too-large", bytes(too_large));
  ASSERT_FALSE(put.has_value());
  EXPECT_EQ(put.error().code, StoreError::too_large);
  EXPECT_EQ(store->get("too-large").error().code, StoreError::not_found);
}

TEST_F(SecretStoreTest, CountLimitAllowsReplacementOnly) {
  auto store = open();
  for (std::size_t i = 0; i < SecretStore::max_secrets; ++i) {
    ASSERT_TRUE(store->put("s" + std::to_string(i), bytes("x")).has_value()) << i;
  }

  const auto extra = store->put("one-more", bytes("x"));
  ASSERT_FALSE(extra.has_value());
  EXPECT_EQ(extra.error().code, StoreError::limit_reached);
  EXPECT_TRUE(store->put("s0", bytes("replaced")).has_value());

  ASSERT_TRUE(store->remove("s1").has_value());
  EXPECT_TRUE(store->put("one-more", bytes("x")).has_value());
  EXPECT_EQ(store->size(), SecretStore::max_secrets);
}

TEST_F(SecretStoreTest, UnknownNameIsNotFound) {
  auto store = open();
  EXPECT_EQ(store->get("absent").error().code, StoreError::not_found);
  EXPECT_EQ(store->remove("absent").error().code, StoreError::not_found);

  ASSERT_TRUE(store->put("gone", bytes("x")).has_value());
  ASSERT_TRUE(store->remove("gone").has_value());
  EXPECT_EQ(store->get("gone").error().code, StoreError::not_found);
}

TEST_F(SecretStoreTest, SecretsSurviveReopen) {
  {
    auto store = open();
    ASSERT_TRUE(store->put("kept", bytes("value")).has_value());
    ASSERT_TRUE(store->put("removed", bytes("value")).has_value());
    ASSERT_TRUE(store->remove("removed").has_value());
  }
  auto reopened = open();
  EXPECT_EQ(reopened->size(), 1U);
  EXPECT_EQ(reopened->get("kept")->text(), "value");
  EXPECT_EQ(reopened->get("removed").error().code, StoreError::not_found);
}

TEST_F(SecretStoreTest, FilesArePrivate) {
  auto store = open();
  ASSERT_TRUE(store->put("private", bytes("value")).has_value());

  struct stat status {};
  ASSERT_EQ(::stat(directory_.c_str(), &status), 0);
  EXPECT_EQ(status.st_mode & 07777, 0700U);
  ASSERT_EQ(::stat((directory_ / "private.secret").c_str(), &status), 0);
  EXPECT_EQ(status.st_mode & 07777, 0600U);
}

TEST_F(SecretStoreTest, InterruptedWriteLeavesOldValue) {
  {
    auto store = open();
    ASSERT_TRUE(store->put("name", bytes("old")).has_value());
  }
  // What a crash between writing the temporary file and renaming it leaves behind.
  test::write_file(directory_ / "name.secret.tmp-0123abcd", "new, partly writ", fs::perms::owner_read | fs::perms::owner_write);

  auto reopened = open();
  EXPECT_EQ(reopened->get("name")->text(), "old");
  EXPECT_EQ(reopened->size(), 1U);
  EXPECT_FALSE(fs::exists(directory_ / "name.secret.tmp-0123abcd"));
}

TEST_F(SecretStoreTest, NameResemblingTemporaryFileIsKept) {
  {
    auto store = open();
    ASSERT_TRUE(store->put("x.secret.tmp-1", bytes("value")).has_value());
  }
  auto reopened = open();
  EXPECT_EQ(reopened->get("x.secret.tmp-1")->text(), "value");
}

TEST_F(SecretStoreTest, GroupWritableDirectoryIsRejected) {
  fs::create_directory(directory_);
  fs::permissions(directory_, fs::perms::owner_all | fs::perms::group_write, fs::perm_options::replace);
  const auto store = SecretStore::open(directory_);
  ASSERT_FALSE(store.has_value());
  EXPECT_EQ(store.error().code, StoreError::io);
}

}  // namespace
}  // namespace licensing::enclave
