#include "enclave/config.hpp"

#include <gtest/gtest.h>

#include <map>

#include "test_pki.hpp"

namespace licensing::enclave {
namespace {

using test::TempDir;
namespace fs = std::filesystem;

constexpr auto private_mode = fs::perms::owner_all;
constexpr auto file_mode = fs::perms::owner_read | fs::perms::owner_write;

class ConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    directory_ = temp_.path() / "enclave";
    fs::create_directory(directory_);
    fs::permissions(directory_, private_mode, fs::perm_options::replace);
    test::write_file(temp_.path() / "ca.pem", "ca", file_mode);
    test::write_file(temp_.path() / "jwks.json", R"({"keys": []})", file_mode);

    variables_ = {
        {"LICENSING_ENCLAVE_ID", "0f8fad5b-d9cb-469f-a165-70867728950e"},
        {"LICENSING_ENCLAVE_OWNER", "7c9e6679-7425-40de-944b-e07fc1f90ae7"},
        {"LICENSING_ENCLAVE_DIR", directory_.string()},
        {"LICENSING_ENCLAVE_LISTEN", "127.0.0.1:8443"},
        {"LICENSING_ENCLAVE_CSR_URL", "https://127.0.0.1:9443/v1/enclave-certificates"},
        {"LICENSING_ENCLAVE_CA_BUNDLE", (temp_.path() / "ca.pem").string()},
        {"LICENSING_ENCLAVE_BOOTSTRAP_FILE", (temp_.path() / "bootstrap").string()},
        {"LICENSING_ENCLAVE_JWKS_FILE", (temp_.path() / "jwks.json").string()},
        {"LICENSING_ENCLAVE_ISSUER", "https://licensing.test"},
    };
  }

  Result<Config, ConfigError> load() const {
    return load_config([this](std::string_view name) -> std::optional<std::string> {
      const auto found = variables_.find(std::string(name));
      if (found == variables_.end()) return std::nullopt;
      return found->second;
    });
  }

  // Asserts that loading fails with `code` and a detail that names `variable`.
  void expect_failure(ConfigError code, const std::string& variable) const {
    const auto config = load();
    ASSERT_FALSE(config.has_value());
    EXPECT_EQ(config.error().code, code);
    EXPECT_NE(config.error().detail.find(variable), std::string::npos) << config.error().detail;
  }

  TempDir temp_;
  fs::path directory_;
  std::map<std::string, std::string> variables_;
};

TEST_F(ConfigTest, CompleteEnvironmentLoads) {
  const auto config = load();
  ASSERT_TRUE(config.has_value()) << config.error().detail;
  EXPECT_EQ(config->enclave_id, "0f8fad5b-d9cb-469f-a165-70867728950e");
  EXPECT_EQ(config->owner, "7c9e6679-7425-40de-944b-e07fc1f90ae7");
  EXPECT_EQ(config->directory, directory_);
  EXPECT_EQ(config->listen_address, "127.0.0.1");
  EXPECT_EQ(config->listen_port, 8443);
  EXPECT_EQ(config->issuer, "https://licensing.test");
  EXPECT_TRUE(config->require_client_cert);
  EXPECT_DOUBLE_EQ(config->renewal_fraction, 2.0 / 3.0);
}

TEST_F(ConfigTest, EachMissingVariableIsNamed) {
  const auto complete = variables_;
  for (const auto& [name, value] : complete) {
    SCOPED_TRACE(name);
    variables_ = complete;
    variables_.erase(name);
    expect_failure(ConfigError::missing, name);
    variables_[name] = "";
    expect_failure(ConfigError::missing, name);
  }
}

TEST_F(ConfigTest, InvalidIdIsRejected) {
  for (const char* id : {"not-a-uuid", "0F8FAD5B-D9CB-469F-A165-70867728950E", "0f8fad5b-d9cb-469f-a165-70867728950e0"}) {
    SCOPED_TRACE(id);
    variables_["LICENSING_ENCLAVE_ID"] = id;
    expect_failure(ConfigError::invalid, "LICENSING_ENCLAVE_ID");
  }
}

TEST_F(ConfigTest, OwnerWithUnsafeCharactersIsRejected) {
  for (const char* owner : {"alice bob", "a/b", "user:1", "é"}) {
    SCOPED_TRACE(owner);
    variables_["LICENSING_ENCLAVE_OWNER"] = owner;
    expect_failure(ConfigError::invalid, "LICENSING_ENCLAVE_OWNER");
  }
  variables_["LICENSING_ENCLAVE_OWNER"] = std::string(129, 'a');
  expect_failure(ConfigError::invalid, "LICENSING_ENCLAVE_OWNER");
}

TEST_F(ConfigTest, DirectoryOpenToGroupIsRejected) {
  fs::permissions(directory_, fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec, fs::perm_options::replace);
  expect_failure(ConfigError::permissions, "LICENSING_ENCLAVE_DIR");
}

TEST_F(ConfigTest, DirectoryWithoutOwnerWriteIsRejected) {
  fs::permissions(directory_, fs::perms::owner_read | fs::perms::owner_exec, fs::perm_options::replace);
  expect_failure(ConfigError::permissions, "LICENSING_ENCLAVE_DIR");
}

TEST_F(ConfigTest, MissingDirectoryIsCreatedPrivate) {
  const auto missing = directory_ / "private";
  variables_["LICENSING_ENCLAVE_DIR"] = missing.string();
  auto config = load();
  ASSERT_TRUE(config.has_value()) << config.error().detail;
  EXPECT_EQ(fs::status(missing).permissions(), fs::perms::owner_all);
}

TEST_F(ConfigTest, DirectoryWithoutParentIsRejected) {
  variables_["LICENSING_ENCLAVE_DIR"] = (directory_ / "absent" / "private").string();
  expect_failure(ConfigError::not_found, "LICENSING_ENCLAVE_DIR");
}

TEST_F(ConfigTest, RelativeDirectoryIsRejected) {
  variables_["LICENSING_ENCLAVE_DIR"] = "enclave";
  expect_failure(ConfigError::invalid, "LICENSING_ENCLAVE_DIR");
}

TEST_F(ConfigTest, SymlinkedDirectoryIsRejected) {
  fs::create_directory_symlink(directory_, temp_.path() / "link");
  variables_["LICENSING_ENCLAVE_DIR"] = (temp_.path() / "link").string();
  expect_failure(ConfigError::invalid, "LICENSING_ENCLAVE_DIR");
}

TEST_F(ConfigTest, MalformedListenIsRejected) {
  for (const char* listen : {"127.0.0.1", "localhost:8443", "127.0.0.1:0", "127.0.0.1:65536", "127.0.0.1:84x", ":8443", "[::1:8443"}) {
    SCOPED_TRACE(listen);
    variables_["LICENSING_ENCLAVE_LISTEN"] = listen;
    expect_failure(ConfigError::invalid, "LICENSING_ENCLAVE_LISTEN");
  }
}

TEST_F(ConfigTest, Ipv6ListenParses) {
  variables_["LICENSING_ENCLAVE_LISTEN"] = "[::1]:9000";
  const auto config = load();
  ASSERT_TRUE(config.has_value()) << config.error().detail;
  EXPECT_EQ(config->listen_address, "::1");
  EXPECT_EQ(config->listen_port, 9000);
}

TEST_F(ConfigTest, PlainHttpCsrUrlIsRejected) {
  variables_["LICENSING_ENCLAVE_CSR_URL"] = "http://127.0.0.1:9443/v1/enclave-certificates";
  expect_failure(ConfigError::invalid, "LICENSING_ENCLAVE_CSR_URL");
}

TEST_F(ConfigTest, MissingFilesAreNamed) {
  for (const char* variable : {"LICENSING_ENCLAVE_CA_BUNDLE", "LICENSING_ENCLAVE_JWKS_FILE"}) {
    SCOPED_TRACE(variable);
    const auto saved = variables_[variable];
    variables_[variable] = (temp_.path() / "absent").string();
    expect_failure(ConfigError::not_found, variable);
    variables_[variable] = saved;
  }
}

TEST_F(ConfigTest, MissingBootstrapFileIsAccepted) {
  // The file is deleted after the first enrollment, so a restart must not need it.
  ASSERT_FALSE(fs::exists(variables_["LICENSING_ENCLAVE_BOOTSTRAP_FILE"]));
  EXPECT_TRUE(load().has_value());
}

TEST_F(ConfigTest, ClientCertificateFlagParses) {
  variables_["LICENSING_ENCLAVE_REQUIRE_CLIENT_CERT"] = "false";
  auto config = load();
  ASSERT_TRUE(config.has_value());
  EXPECT_FALSE(config->require_client_cert);

  variables_["LICENSING_ENCLAVE_REQUIRE_CLIENT_CERT"] = "true";
  config = load();
  ASSERT_TRUE(config.has_value());
  EXPECT_TRUE(config->require_client_cert);

  for (const char* value : {"yes", "1", "TRUE", "False"}) {
    SCOPED_TRACE(value);
    variables_["LICENSING_ENCLAVE_REQUIRE_CLIENT_CERT"] = value;
    expect_failure(ConfigError::invalid, "LICENSING_ENCLAVE_REQUIRE_CLIENT_CERT");
  }
}

TEST_F(ConfigTest, RenewalFractionOutOfRangeIsRejected) {
  variables_["LICENSING_ENCLAVE_RENEWAL_FRACTION"] = "0.5";
  auto config = load();
  ASSERT_TRUE(config.has_value());
  EXPECT_DOUBLE_EQ(config->renewal_fraction, 0.5);

  for (const char* value : {"0", "1", "1.5", "-0.1", "half", "0.5s"}) {
    SCOPED_TRACE(value);
    variables_["LICENSING_ENCLAVE_RENEWAL_FRACTION"] = value;
    expect_failure(ConfigError::invalid, "LICENSING_ENCLAVE_RENEWAL_FRACTION");
  }
}

TEST_F(ConfigTest, PublicHostIsCheckedAndOptional) {
  auto without = load();
  ASSERT_TRUE(without.has_value());
  EXPECT_TRUE(without->public_host.empty());

  variables_["LICENSING_ENCLAVE_PUBLIC_HOST"] = "enclave-1.enclaves.example.com";
  auto with = load();
  ASSERT_TRUE(with.has_value());
  EXPECT_EQ(with->public_host, "enclave-1.enclaves.example.com");

  for (const char* value : {"Upper.example.com", "-lead.example.com", "a..b", "host name", "a.example.com.", "x/y"}) {
    SCOPED_TRACE(value);
    variables_["LICENSING_ENCLAVE_PUBLIC_HOST"] = value;
    expect_failure(ConfigError::invalid, "LICENSING_ENCLAVE_PUBLIC_HOST");
  }
}

}  // namespace
}  // namespace licensing::enclave
