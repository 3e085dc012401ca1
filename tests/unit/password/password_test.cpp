#include "crypto/password.hpp"

#include <gtest/gtest.h>

#include <string>
#include <thread>
#include <vector>

namespace licensing::crypto {
namespace {

// Made by make_bcrypt_fixtures.py with python3-bcrypt 3.2.2 at cost 10, as README.md records.
constexpr std::string_view kBcrypt2b = "$2b$10$sW.nQtvj9fgxfAdQkNObT.8GSfPOyd/kjNi4neINrsW1NdmxcDkXS";
constexpr std::string_view kBcrypt2bPassword = "correct horse battery staple";
constexpr std::string_view kBcrypt2a = "$2a$10$trv.7UfKFRy3DIAj9oBb9eE9Z2HOUBZ4wgic9ZO7n4UECXFgvzWnK";
constexpr std::string_view kBcrypt2aPassword = "Tr0ub4dor&3";
constexpr std::string_view kBcryptUtf8 = "$2b$10$cS0P0MMECAHu90/1.vGrXe9NTCFHtL0d4IaZamYFenmmVaSfEDZgO";
constexpr std::string_view kBcryptUtf8Password = "pässwörd-ключ";
constexpr std::string_view kBcrypt72 = "$2b$10$s5pxGrBInPv6MPP3qrN5GuE/gdV0UB.WUeyNS39C9G7q9BSBTwPP.";
// Seven times "0123456789", then "ab": 72 bytes.
constexpr std::string_view kBcrypt72Password = "0123456789012345678901234567890123456789012345678901234567890123456789ab";
constexpr std::string_view kBcrypt2y = "$2y$10$nINqujJsGciZVNeX73pHpun/w1KrKllJvwCBkpSFeCsb4zmFqUj1.";
constexpr std::string_view kBcrypt2yPassword = "hunter2-hunter2";

// Small enough for fast tests; production uses the Argon2Params defaults.
constexpr Argon2Params kFastParams{.ops_limit = 2, .mem_limit_bytes = 1024 * 1024};

PasswordCheck verify_ok(std::string_view password, std::string_view hash) {
  auto result = verify_password(password, hash, kFastParams);
  EXPECT_TRUE(result.has_value()) << (result ? "" : result.error().detail);
  return result.value_or(PasswordCheck{});
}

PasswordError verify_error(std::string_view password, std::string_view hash) {
  auto result = verify_password(password, hash, kFastParams);
  EXPECT_FALSE(result.has_value());
  return result ? PasswordError::hashing_failed : result.error().code;
}

TEST(PasswordHash, Argon2idRoundTripMatches) {
  const auto hash = hash_password("correct horse", kFastParams);
  ASSERT_TRUE(hash.has_value());
  EXPECT_TRUE(hash->starts_with("$argon2id$v=19$m=1024,t=2,p=1$")) << *hash;

  const auto check = verify_ok("correct horse", *hash);
  EXPECT_TRUE(check.matches);
  EXPECT_FALSE(check.needs_rehash);
}

TEST(PasswordHash, Argon2idWrongPasswordDoesNotMatch) {
  const auto hash = hash_password("correct horse", kFastParams);
  ASSERT_TRUE(hash.has_value());

  EXPECT_FALSE(verify_ok("correct horsf", *hash).matches);
  EXPECT_FALSE(verify_ok("correct horse ", *hash).matches);
  EXPECT_FALSE(verify_ok("", *hash).matches);
}

TEST(PasswordHash, Argon2idDefaultParamsRoundTrip) {
  const auto hash = hash_password("correct horse", Argon2Params{});
  ASSERT_TRUE(hash.has_value());
  EXPECT_TRUE(hash->starts_with("$argon2id$v=19$m=65536,t=2,p=1$")) << *hash;

  const auto check = verify_password("correct horse", *hash, Argon2Params{});
  ASSERT_TRUE(check.has_value());
  EXPECT_TRUE(check->matches);
  EXPECT_FALSE(check->needs_rehash);
}

TEST(PasswordHash, SaltDiffersBetweenHashes) {
  const auto first = hash_password("same password", kFastParams);
  const auto second = hash_password("same password", kFastParams);
  ASSERT_TRUE(first.has_value());
  ASSERT_TRUE(second.has_value());
  EXPECT_NE(*first, *second);
}

TEST(PasswordHash, Argon2idOtherParamsNeedRehash) {
  const auto hash = hash_password("correct horse", Argon2Params{.ops_limit = 1, .mem_limit_bytes = 1024 * 1024});
  ASSERT_TRUE(hash.has_value());

  const auto check = verify_ok("correct horse", *hash);
  EXPECT_TRUE(check.matches);
  EXPECT_TRUE(check.needs_rehash);
}

TEST(PasswordHash, ParamsBelowLibsodiumMinimumFail) {
  const auto hash = hash_password("correct horse", Argon2Params{.ops_limit = 0, .mem_limit_bytes = 1024 * 1024});
  ASSERT_FALSE(hash.has_value());
  EXPECT_EQ(hash.error().code, PasswordError::hashing_failed);
}

TEST(PasswordHash, Argon2idTamperedHashDoesNotMatch) {
  auto hash = hash_password("correct horse", kFastParams);
  ASSERT_TRUE(hash.has_value());
  // A character inside the digest, because the last one carries unused bits that a
  // decoder may ignore, so changing it does not always change the hash.
  char& inner = (*hash)[hash->size() - 5];
  inner = inner == 'A' ? 'g' : 'A';

  EXPECT_FALSE(verify_ok("correct horse", *hash).matches);
}

TEST(PasswordHash, MalformedArgon2idIsUnsupported) {
  EXPECT_EQ(verify_error("pw", "$argon2id$"), PasswordError::unsupported_hash);
  EXPECT_EQ(verify_error("pw", "$argon2id$v=19$m=1024,t=2,p=1$not-base64!$x"), PasswordError::unsupported_hash);
  EXPECT_EQ(verify_error("pw", std::string("$argon2id$v=19$m=1024,t=2,p=1$\0", 32)),
            PasswordError::unsupported_hash);
  EXPECT_EQ(verify_error("pw", "$argon2id$" + std::string(200, 'a')), PasswordError::unsupported_hash);
}

TEST(PasswordHash, OtherSchemesAreUnsupported) {
  EXPECT_EQ(verify_error("pw", ""), PasswordError::unsupported_hash);
  EXPECT_EQ(verify_error("pw", "plaintext"), PasswordError::unsupported_hash);
  EXPECT_EQ(verify_error("pw", "$argon2i$v=19$m=4096,t=3,p=1$c29tZXNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"),
            PasswordError::unsupported_hash);
  EXPECT_EQ(verify_error("pw", "$6$saltsalt$" + std::string(86, 'a')), PasswordError::unsupported_hash);
  // $2x$ marks hashes made by a broken bcrypt, and $2$ is the original variant.
  std::string broken(kBcrypt2b);
  broken[2] = 'x';
  EXPECT_EQ(verify_error(kBcrypt2bPassword, broken), PasswordError::unsupported_hash);
  EXPECT_EQ(verify_error(kBcrypt2bPassword, "$2$10$" + std::string(kBcrypt2b.substr(7))),
            PasswordError::unsupported_hash);
}

TEST(PasswordHash, MalformedBcryptIsUnsupported) {
  const std::string good(kBcrypt2b);
  EXPECT_EQ(verify_error(kBcrypt2bPassword, good.substr(0, 59)), PasswordError::unsupported_hash);
  EXPECT_EQ(verify_error(kBcrypt2bPassword, good + "a"), PasswordError::unsupported_hash);

  std::string bad_alphabet = good;
  bad_alphabet[20] = '!';
  EXPECT_EQ(verify_error(kBcrypt2bPassword, bad_alphabet), PasswordError::unsupported_hash);

  // The format is right but libxcrypt accepts only costs 04 to 31.
  std::string bad_cost = good;
  bad_cost.replace(4, 2, "03");
  EXPECT_EQ(verify_error(kBcrypt2bPassword, bad_cost), PasswordError::unsupported_hash);
  bad_cost.replace(4, 2, "99");
  EXPECT_EQ(verify_error(kBcrypt2bPassword, bad_cost), PasswordError::unsupported_hash);
}

TEST(PasswordBcrypt, Bcrypt2bMatchesAndNeedsRehash) {
  const auto check = verify_ok(kBcrypt2bPassword, kBcrypt2b);
  EXPECT_TRUE(check.matches);
  EXPECT_TRUE(check.needs_rehash);
}

TEST(PasswordBcrypt, Bcrypt2aMatchesAndNeedsRehash) {
  const auto check = verify_ok(kBcrypt2aPassword, kBcrypt2a);
  EXPECT_TRUE(check.matches);
  EXPECT_TRUE(check.needs_rehash);
}

TEST(PasswordBcrypt, Bcrypt2yMatchesAndNeedsRehash) {
  const auto check = verify_ok(kBcrypt2yPassword, kBcrypt2y);
  EXPECT_TRUE(check.matches);
  EXPECT_TRUE(check.needs_rehash);
}

TEST(PasswordBcrypt, Utf8PasswordMatches) { EXPECT_TRUE(verify_ok(kBcryptUtf8Password, kBcryptUtf8).matches); }

TEST(PasswordBcrypt, WrongPasswordDoesNotMatch) {
  const auto check = verify_ok("correct horse battery stapler", kBcrypt2b);
  EXPECT_FALSE(check.matches);
  EXPECT_TRUE(check.needs_rehash);
  EXPECT_FALSE(verify_ok(kBcrypt2bPassword, kBcrypt2a).matches);
  EXPECT_FALSE(verify_ok("", kBcrypt2b).matches);
}

TEST(PasswordBcrypt, TamperedHashDoesNotMatch) {
  std::string tampered(kBcrypt2b);
  tampered.back() = tampered.back() == 'S' ? 'T' : 'S';
  EXPECT_FALSE(verify_ok(kBcrypt2bPassword, tampered).matches);
}

TEST(PasswordBcrypt, Exactly72BytesMatches) {
  ASSERT_EQ(kBcrypt72Password.size(), 72U);
  EXPECT_TRUE(verify_ok(kBcrypt72Password, kBcrypt72).matches);
}

TEST(PasswordBcrypt, Over72BytesNeverMatches) {
  // bcrypt itself would accept this password, because it reads only the first 72 bytes.
  const std::string longer = std::string(kBcrypt72Password) + "X";
  ASSERT_EQ(longer.size(), 73U);

  const auto check = verify_ok(longer, kBcrypt72);
  EXPECT_FALSE(check.matches);
  EXPECT_TRUE(check.needs_rehash);
}

TEST(PasswordBcrypt, EmbeddedNulNeverMatches) {
  // A C string would end at the NUL and compare only "correct horse battery staple".
  const std::string with_nul = std::string(kBcrypt2bPassword) + std::string("\0tail", 5);
  EXPECT_FALSE(verify_ok(with_nul, kBcrypt2b).matches);
}

struct PolicyCase {
  std::string password;
  std::optional<PasswordError> expected;  // nullopt: accepted
};

TEST(PasswordPolicy, TableGivesExactCodes) {
  const PasswordPolicy policy{.min_bytes = 8, .max_bytes = 64};
  const std::vector<PolicyCase> cases = {
      {"", PasswordError::empty},
      {"seven77", PasswordError::too_short},
      {"eight888", std::nullopt},
      {std::string(64, 'a'), std::nullopt},
      {std::string(65, 'a'), PasswordError::too_long},
      {std::string("abcd\0efgh", 9), PasswordError::contains_nul},
      {std::string("\0", 1), PasswordError::contains_nul},
      {"pässwörd", std::nullopt},
      {"ключ-ключ", std::nullopt},
      {"emoji \xF0\x9F\x94\x91 key", std::nullopt},
      {"abcdefg\xC3\x28", PasswordError::invalid_utf8},             // bad continuation byte
      {"abcdefg\xC0\xAF", PasswordError::invalid_utf8},             // overlong '/'
      {"abcdefg\xE0\x80\xAF", PasswordError::invalid_utf8},         // overlong three-byte form
      {"abcdefg\xED\xA0\x80", PasswordError::invalid_utf8},         // UTF-16 surrogate
      {"abcdefg\xF4\x90\x80\x80", PasswordError::invalid_utf8},     // above U+10FFFF
      {"abcdefg\xF5\x80\x80\x80", PasswordError::invalid_utf8},     // invalid lead byte
      {"abcdefg\xE2\x82", PasswordError::invalid_utf8},             // truncated sequence
      {"abcdefg\x80", PasswordError::invalid_utf8},                 // lone continuation byte
      {"abc\xF0\x9F\x94", PasswordError::invalid_utf8},             // short and truncated
  };

  for (const auto& test_case : cases) {
    const auto result = check_password_policy(test_case.password, policy);
    if (!test_case.expected) {
      EXPECT_TRUE(result.has_value()) << "password of " << test_case.password.size() << " bytes";
      continue;
    }
    ASSERT_FALSE(result.has_value()) << "password of " << test_case.password.size() << " bytes";
    EXPECT_EQ(result.error().code, *test_case.expected) << "password of " << test_case.password.size() << " bytes";
  }
}

TEST(PasswordPolicy, DefaultPolicyAllowsLongPasswords) {
  EXPECT_TRUE(check_password_policy(std::string(1024, 'a'), PasswordPolicy{}).has_value());
  const auto result = check_password_policy(std::string(1025, 'a'), PasswordPolicy{});
  ASSERT_FALSE(result.has_value());
  EXPECT_EQ(result.error().code, PasswordError::too_long);
}

TEST(PasswordPolicy, DetailOmitsPassword) {
  const auto result = check_password_policy("secretpw\xC3\x28", PasswordPolicy{});
  ASSERT_FALSE(result.has_value());
  EXPECT_EQ(result.error().detail.find("secretpw"), std::string::npos);
}

TEST(PasswordDummyHash, HasArgon2idForm) {
  const std::string& hash = dummy_hash(kFastParams);
  EXPECT_TRUE(hash.starts_with("$argon2id$v=19$m=1024,t=2,p=1$")) << hash;

  const auto check = verify_ok("any password", hash);
  EXPECT_FALSE(check.matches);
  EXPECT_FALSE(check.needs_rehash);
}

TEST(PasswordDummyHash, ComputedOncePerParams) {
  const std::string& first = dummy_hash(kFastParams);
  const std::string& again = dummy_hash(kFastParams);
  EXPECT_EQ(&first, &again);

  const std::string& other = dummy_hash(Argon2Params{.ops_limit = 1, .mem_limit_bytes = 1024 * 1024});
  EXPECT_NE(&first, &other);
  EXPECT_TRUE(other.starts_with("$argon2id$v=19$m=1024,t=1,p=1$")) << other;
}

TEST(PasswordDummyHash, ConcurrentCallersShareOneHash) {
  const Argon2Params params{.ops_limit = 3, .mem_limit_bytes = 1024 * 1024};
  std::vector<const std::string*> seen(8, nullptr);
  std::vector<std::thread> threads;
  for (std::size_t i = 0; i < seen.size(); ++i) {
    threads.emplace_back([&seen, &params, i] { seen[i] = &dummy_hash(params); });
  }
  for (auto& thread : threads) thread.join();

  for (const auto* hash : seen) EXPECT_EQ(hash, seen.front());
}

TEST(PasswordDummyHash, InvalidParamsThrow) {
  EXPECT_THROW(dummy_hash(Argon2Params{.ops_limit = 0, .mem_limit_bytes = 1024 * 1024}), std::runtime_error);
}

}  // namespace
}  // namespace licensing::crypto
