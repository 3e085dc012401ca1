#include "enclave/identity.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include "common/json.hpp"
#include "test_pki.hpp"

namespace licensing::enclave {
namespace {

using namespace std::chrono_literals;
using SystemClock = std::chrono::system_clock;
namespace fs = std::filesystem;

constexpr auto private_file = fs::perms::owner_read | fs::perms::owner_write;
const SystemClock::time_point fixed_now = SystemClock::from_time_t(1'900'000'000);

unsigned mode_of(const fs::path& path) {
  struct stat status {};
  EXPECT_EQ(::stat(path.c_str(), &status), 0) << path;
  return status.st_mode & 07777;
}

std::string read_text(const fs::path& path) {
  auto text = crypto::ossl::read_public_file(path, 1 << 20);
  EXPECT_TRUE(text.has_value()) << path;
  return text.value_or("");
}

class IdentityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fs::create_directory(temp_.path() / "enclave");
    fs::permissions(temp_.path() / "enclave", fs::perms::owner_all, fs::perm_options::replace);
    test::write_file(temp_.path() / "bootstrap", "bootstrap-credential\n", private_file);

    config_.enclave_id = "0f8fad5b-d9cb-469f-a165-70867728950e";
    config_.owner = "7c9e6679-7425-40de-944b-e07fc1f90ae7";
    config_.directory = temp_.path() / "enclave";
    config_.csr_url = "https://127.0.0.1:9443/v1/enclave-certificates";
    config_.ca_bundle_file = ca_.bundle_file();
    config_.bootstrap_file = temp_.path() / "bootstrap";
    responder_ = [this](const client::HttpRequest& request) { return sign(request, ca_, config_.enclave_id); };
  }

  IdentityManager manager() {
    Transport transport = [this](const client::HttpRequest& request) -> Result<client::HttpResponse, client::HttpError> {
      requests_.push_back(request);
      return responder_(request);
    };
    return IdentityManager(config_, transport, [this] { return now_; });
  }

  // Signs the request's CSR the way licensing-core does, naming `enclave_id`.
  Result<client::HttpResponse, client::HttpError> sign(const client::HttpRequest& request, test::TestCa& ca, const std::string& enclave_id) {
    auto body = json::parse_strict(request.body, 4);
    EXPECT_TRUE(body.has_value());
    return issue((*body)["csr_pem"].get<std::string>(), ca, enclave_id);
  }

  Result<client::HttpResponse, client::HttpError> issue(const std::string& csr_pem, test::TestCa& ca, const std::string& enclave_id) {
    auto issued = ca.authority().issue_server_certificate({csr_pem, {enclave_dns_name(enclave_id)}, {"127.0.0.1"}, 24h});
    EXPECT_TRUE(issued.has_value()) << issued.error().detail;
    ++issued_;
    const nlohmann::json answer = {{"certificate_chain_pem", issued->chain_pem},
                                   {"renewal_credential", "renewal-" + std::to_string(issued_)},
                                   {"not_after", 0}};
    return client::HttpResponse{200, {}, answer.dump()};
  }

  std::string authorization(std::size_t index) const {
    for (const auto& [name, value] : requests_.at(index).headers) {
      if (name == "Authorization") return value;
    }
    return "";
  }

  test::TempDir temp_;
  SystemClock::time_point now_ = fixed_now;
  test::TestCa ca_{temp_.path() / "ca", [] { return fixed_now; }};
  Config config_;
  IdentityPaths paths_{temp_.path() / "enclave"};
  std::function<Result<client::HttpResponse, client::HttpError>(const client::HttpRequest&)> responder_;
  std::vector<client::HttpRequest> requests_;
  int issued_ = 0;
};

TEST_F(IdentityTest, EnrollmentStoresIdentity) {
  auto identities = manager();
  const auto identity = identities.enroll();
  ASSERT_TRUE(identity.has_value()) << identity.error().detail;

  ASSERT_EQ(requests_.size(), 1U);
  EXPECT_EQ(requests_[0].method, "POST");
  EXPECT_EQ(requests_[0].url, config_.csr_url);
  EXPECT_EQ(authorization(0), "Bootstrap bootstrap-credential");
  const auto body = json::parse_strict(requests_[0].body, 4);
  ASSERT_TRUE(body.has_value());
  EXPECT_EQ((*body)["enclave_id"], config_.enclave_id);
  EXPECT_TRUE((*body)["csr_pem"].get<std::string>().starts_with("-----BEGIN CERTIFICATE REQUEST-----"));

  EXPECT_EQ(mode_of(paths_.key), 0600U);
  EXPECT_EQ(mode_of(paths_.chain), 0600U);
  EXPECT_EQ(mode_of(paths_.renewal_credential), 0600U);
  EXPECT_EQ(read_text(paths_.renewal_credential), "renewal-1");
  EXPECT_FALSE(fs::exists(config_.bootstrap_file));
  EXPECT_FALSE(fs::exists(paths_.next_key));
  EXPECT_FALSE(fs::exists(paths_.next_chain));
}

TEST_F(IdentityTest, StoredIdentityIsReused) {
  auto identities = manager();
  const auto enrolled = identities.enroll();
  ASSERT_TRUE(enrolled.has_value());

  auto restarted = manager();
  const auto stored = restarted.load_stored();
  ASSERT_TRUE(stored.has_value()) << stored.error().detail;
  ASSERT_TRUE(stored->has_value());
  EXPECT_EQ(X509_cmp((*stored)->leaf.get(), enrolled->leaf.get()), 0);
  EXPECT_EQ(requests_.size(), 1U);
}

TEST_F(IdentityTest, NothingStoredLoadsEmpty) {
  auto identities = manager();
  const auto stored = identities.load_stored();
  ASSERT_TRUE(stored.has_value());
  EXPECT_FALSE(stored->has_value());
}

TEST_F(IdentityTest, RenewalUsesCredentialAndNewKey) {
  auto identities = manager();
  const auto enrolled = identities.enroll();
  ASSERT_TRUE(enrolled.has_value());

  const auto renewed = identities.renew();
  ASSERT_TRUE(renewed.has_value()) << renewed.error().detail;
  ASSERT_EQ(requests_.size(), 2U);
  EXPECT_EQ(authorization(1), "Renewal renewal-1");
  EXPECT_NE(EVP_PKEY_eq(renewed->key.get(), enrolled->key.get()), 1);
  EXPECT_EQ(read_text(paths_.renewal_credential), "renewal-2");

  const auto stored = identities.load_stored();
  ASSERT_TRUE(stored.has_value());
  ASSERT_TRUE(stored->has_value());
  EXPECT_EQ(X509_cmp((*stored)->leaf.get(), renewed->leaf.get()), 0);
  EXPECT_EQ(EVP_PKEY_eq((*stored)->key.get(), renewed->key.get()), 1);
}

TEST_F(IdentityTest, ChainForAnotherKeyIsUntrusted) {
  responder_ = [this](const client::HttpRequest&) {
    auto other = crypto::generate_key_and_csr("other");
    return issue(other->csr_pem, ca_, config_.enclave_id);
  };
  auto identities = manager();
  const auto identity = identities.enroll();
  ASSERT_FALSE(identity.has_value());
  EXPECT_EQ(identity.error().code, IdentityError::untrusted);
  EXPECT_NE(identity.error().detail.find("public key"), std::string::npos) << identity.error().detail;
  EXPECT_FALSE(fs::exists(paths_.chain));
}

TEST_F(IdentityTest, ChainFromAnotherCaIsUntrusted) {
  responder_ = [this](const client::HttpRequest& request) {
    static test::TestCa other(temp_.path() / "other-ca", [] { return fixed_now; });
    return sign(request, other, config_.enclave_id);
  };
  auto identities = manager();
  const auto identity = identities.enroll();
  ASSERT_FALSE(identity.has_value());
  EXPECT_EQ(identity.error().code, IdentityError::untrusted);
  EXPECT_NE(identity.error().detail.find("CA bundle"), std::string::npos) << identity.error().detail;
}

TEST_F(IdentityTest, ChainNamingAnotherEnclaveIsUntrusted) {
  responder_ = [this](const client::HttpRequest& request) { return sign(request, ca_, "11111111-2222-4333-8444-555555555555"); };
  auto identities = manager();
  const auto identity = identities.enroll();
  ASSERT_FALSE(identity.has_value());
  EXPECT_EQ(identity.error().code, IdentityError::untrusted);
  EXPECT_NE(identity.error().detail.find("does not name"), std::string::npos) << identity.error().detail;
}

TEST_F(IdentityTest, UnreachableEndpointKeepsBootstrap) {
  responder_ = [](const client::HttpRequest&) -> Result<client::HttpResponse, client::HttpError> {
    return fail(client::HttpError::connect, "connection refused");
  };
  auto identities = manager();
  const auto identity = identities.enroll();
  ASSERT_FALSE(identity.has_value());
  EXPECT_EQ(identity.error().code, IdentityError::unreachable);
  EXPECT_TRUE(fs::exists(config_.bootstrap_file));
}

TEST_F(IdentityTest, StatusCodesMapToErrors) {
  for (const auto& [status, expected] : std::vector<std::pair<unsigned, IdentityError>>{
           {401, IdentityError::rejected}, {400, IdentityError::rejected}, {429, IdentityError::unreachable},
           {503, IdentityError::unreachable}}) {
    SCOPED_TRACE(status);
    responder_ = [status](const client::HttpRequest&) -> Result<client::HttpResponse, client::HttpError> {
      return client::HttpResponse{status, {}, R"({"title": "Refused"})"};
    };
    auto identities = manager();
    const auto identity = identities.enroll();
    ASSERT_FALSE(identity.has_value());
    EXPECT_EQ(identity.error().code, expected);
    EXPECT_NE(identity.error().detail.find("(Refused)"), std::string::npos) << identity.error().detail;
  }
}

TEST_F(IdentityTest, MalformedAnswerIsInvalid) {
  for (const std::string body : {"{}", "[]", "not json", R"({"certificate_chain_pem": "x"})",
                                 R"({"certificate_chain_pem": 1, "renewal_credential": "r"})"}) {
    SCOPED_TRACE(body);
    responder_ = [body](const client::HttpRequest&) -> Result<client::HttpResponse, client::HttpError> {
      return client::HttpResponse{200, {}, body};
    };
    auto identities = manager();
    const auto identity = identities.enroll();
    ASSERT_FALSE(identity.has_value());
    EXPECT_EQ(identity.error().code, IdentityError::invalid_response);
  }
}

TEST_F(IdentityTest, MissingBootstrapIsNoCredential) {
  fs::remove(config_.bootstrap_file);
  auto identities = manager();
  const auto identity = identities.enroll();
  ASSERT_FALSE(identity.has_value());
  EXPECT_EQ(identity.error().code, IdentityError::no_credential);
  EXPECT_TRUE(requests_.empty());
}

TEST_F(IdentityTest, ReadableBootstrapIsRejected) {
  fs::permissions(config_.bootstrap_file, private_file | fs::perms::group_read, fs::perm_options::replace);
  auto identities = manager();
  const auto identity = identities.enroll();
  ASSERT_FALSE(identity.has_value());
  EXPECT_EQ(identity.error().code, IdentityError::io);
  EXPECT_TRUE(requests_.empty());
}

TEST_F(IdentityTest, InterruptedCsrKeyIsDiscarded) {
  test::write_file(paths_.next_key, "key of a CSR that never completed", private_file);
  auto identities = manager();
  const auto stored = identities.load_stored();
  ASSERT_TRUE(stored.has_value());
  EXPECT_FALSE(stored->has_value());
  EXPECT_FALSE(fs::exists(paths_.next_key));
}

TEST_F(IdentityTest, StoredNextChainIsPromoted) {
  auto identities = manager();
  const auto enrolled = identities.enroll();
  ASSERT_TRUE(enrolled.has_value());

  // A crash after the chain was stored but before either rename.
  fs::rename(paths_.key, paths_.next_key);
  fs::rename(paths_.chain, paths_.next_chain);
  auto stored = identities.load_stored();
  ASSERT_TRUE(stored.has_value());
  ASSERT_TRUE(stored->has_value());
  EXPECT_EQ(X509_cmp((*stored)->leaf.get(), enrolled->leaf.get()), 0);

  // A crash between the two renames.
  fs::rename(paths_.chain, paths_.next_chain);
  stored = identities.load_stored();
  ASSERT_TRUE(stored.has_value());
  ASSERT_TRUE(stored->has_value());
  EXPECT_EQ(X509_cmp((*stored)->leaf.get(), enrolled->leaf.get()), 0);
  EXPECT_FALSE(fs::exists(paths_.next_key));
  EXPECT_FALSE(fs::exists(paths_.next_chain));
}

TEST_F(IdentityTest, ExpiredStoredChainIsUntrusted) {
  auto identities = manager();
  ASSERT_TRUE(identities.enroll().has_value());

  now_ = fixed_now + 25h;
  const auto stored = identities.load_stored();
  ASSERT_FALSE(stored.has_value());
  EXPECT_EQ(stored.error().code, IdentityError::untrusted);
  EXPECT_NE(stored.error().detail.find("expired"), std::string::npos) << stored.error().detail;
}

TEST_F(IdentityTest, RenewalTimeIsFractionOfLifetime) {
  auto identities = manager();
  const auto identity = identities.enroll();
  ASSERT_TRUE(identity.has_value());

  // The CA backdates notBefore by 5 minutes and issues for 24 hours from now.
  EXPECT_EQ(identity->not_before, fixed_now - 5min);
  EXPECT_EQ(identity->not_after, fixed_now + 24h);
  const auto lifetime = identity->not_after - identity->not_before;
  EXPECT_EQ(std::chrono::duration_cast<std::chrono::seconds>(identities.renewal_time(*identity) - identity->not_before),
            std::chrono::duration_cast<std::chrono::seconds>(lifetime * 2 / 3));

  config_.renewal_fraction = 0.5;
  EXPECT_EQ(manager().renewal_time(*identity), identity->not_before + lifetime / 2);
}

class RetryTest : public ::testing::Test {
 protected:
  Result<Identity, IdentityError> run(IdentityError code) {
    return with_retries(
        [&]() -> Result<Identity, IdentityError> {
          ++attempts_;
          return fail(code, "attempt failed");
        },
        60s, [&](std::chrono::seconds delay) { delays_.push_back(delay); now_ += delay; }, [&] { return now_; });
  }

  SystemClock::time_point now_ = fixed_now;
  int attempts_ = 0;
  std::vector<std::chrono::seconds> delays_;
};

TEST_F(RetryTest, UnreachableRetriesUntilBudget) {
  const auto result = run(IdentityError::unreachable);
  ASSERT_FALSE(result.has_value());
  EXPECT_EQ(result.error().code, IdentityError::unreachable);
  const std::vector<std::chrono::seconds> expected{1s, 2s, 4s, 8s, 10s, 10s, 10s, 10s, 5s};
  EXPECT_EQ(delays_, expected);
  EXPECT_EQ(attempts_, 10);
  EXPECT_EQ(now_, fixed_now + 60s);
}

TEST_F(RetryTest, RejectionStopsAtOnce) {
  const auto result = run(IdentityError::rejected);
  ASSERT_FALSE(result.has_value());
  EXPECT_EQ(result.error().code, IdentityError::rejected);
  EXPECT_EQ(attempts_, 1);
  EXPECT_TRUE(delays_.empty());
}

}  // namespace
}  // namespace licensing::enclave
