#include "crypto/password.hpp"

#include <crypt.h>
#include <sodium.h>

#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <utility>

#include "common/secret.hpp"

namespace licensing::crypto {
namespace {

constexpr std::string_view kArgon2idPrefix = "$argon2id$";
// "$2b$" + two-digit cost + "$" + 22 characters of salt + 31 characters of hash.
constexpr std::size_t kBcryptHashLength = 60;

bool sodium_ready() {
  // The function-local static runs sodium_init once, even when threads race to the first call.
  static const bool ready = sodium_init() >= 0;
  return ready;
}

// Checks well-formed UTF-8 as the Unicode Standard defines it (Table 3-7): no overlong
// forms, no surrogates, nothing above U+10FFFF.
bool is_well_formed_utf8(std::string_view text) {
  std::size_t i = 0;
  while (i < text.size()) {
    const auto lead = static_cast<unsigned char>(text[i]);
    if (lead < 0x80) {
      ++i;
      continue;
    }

    std::size_t length = 0;
    unsigned char second_min = 0x80;
    unsigned char second_max = 0xBF;
    if (lead >= 0xC2 && lead <= 0xDF) {
      length = 2;
    } else if (lead >= 0xE0 && lead <= 0xEF) {
      length = 3;
      if (lead == 0xE0) second_min = 0xA0;  // overlong
      if (lead == 0xED) second_max = 0x9F;  // surrogates
    } else if (lead >= 0xF0 && lead <= 0xF4) {
      length = 4;
      if (lead == 0xF0) second_min = 0x90;  // overlong
      if (lead == 0xF4) second_max = 0x8F;  // above U+10FFFF
    } else {
      return false;
    }
    if (text.size() - i < length) return false;

    const auto second = static_cast<unsigned char>(text[i + 1]);
    if (second < second_min || second > second_max) return false;
    for (std::size_t k = 2; k < length; ++k) {
      const auto next = static_cast<unsigned char>(text[i + k]);
      if (next < 0x80 || next > 0xBF) return false;
    }
    i += length;
  }
  return true;
}

bool is_bcrypt_alphabet(char c) {
  return c == '.' || c == '/' || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

// Accepts "$2a$", "$2b$" or "$2y$", a two-digit cost, "$", then 53 characters of bcrypt's
// base64 alphabet. The cost range itself is left to libxcrypt.
bool is_bcrypt_hash(std::string_view hash) {
  if (hash.size() != kBcryptHashLength) return false;
  if (!hash.starts_with("$2a$") && !hash.starts_with("$2b$") && !hash.starts_with("$2y$")) return false;
  if (hash[4] < '0' || hash[4] > '9' || hash[5] < '0' || hash[5] > '9' || hash[6] != '$') return false;
  for (const char c : hash.substr(7)) {
    if (!is_bcrypt_alphabet(c)) return false;
  }
  return true;
}

Result<PasswordCheck, PasswordError> verify_argon2id(std::string_view password, std::string_view stored_hash,
                                                     const Argon2Params& current) {
  if (!sodium_ready()) return fail(PasswordError::hashing_failed, "sodium_init failed");
  if (stored_hash.size() >= crypto_pwhash_STRBYTES) {
    return fail(PasswordError::unsupported_hash, "argon2id hash longer than crypto_pwhash_STRBYTES");
  }
  // libsodium reads the hash as a C string, so an embedded NUL would end it early.
  if (stored_hash.find('\0') != std::string_view::npos) {
    return fail(PasswordError::unsupported_hash, "argon2id hash contains a NUL byte");
  }
  const std::string hash(stored_hash);

  // needs_rehash parses the whole encoding and returns -1 when it is malformed, which
  // crypto_pwhash_str_verify would report the same way as a wrong password.
  const int rehash = crypto_pwhash_str_needs_rehash(hash.c_str(), current.ops_limit, current.mem_limit_bytes);
  if (rehash < 0) return fail(PasswordError::unsupported_hash, "malformed argon2id hash");

  PasswordCheck check;
  check.needs_rehash = rehash != 0;
  check.matches = crypto_pwhash_str_verify(hash.c_str(), password.data(), password.size()) == 0;
  return check;
}

Result<PasswordCheck, PasswordError> verify_bcrypt(std::string_view password, std::string_view stored_hash) {
  PasswordCheck check;
  check.needs_rehash = true;

  // bcrypt reads at most 72 bytes and stops at a NUL, so either password would be compared
  // by a prefix only: such a password never matches. It still costs one bcrypt run with
  // the stored cost, so its timing does not set bcrypt accounts apart from others.
  const bool comparable = password.size() <= kBcryptMaxPasswordBytes && password.find('\0') == std::string_view::npos;
  const std::string_view input = comparable ? password : std::string_view("never-matches");

  // crypt_data is 32 KiB, too large for the stack of a worker thread that may be small.
  // Value-initialization zeroes it, as crypt.h requests before first use.
  auto data = std::make_unique<crypt_data>();
  std::memcpy(data->input, input.data(), input.size());
  data->input[input.size()] = '\0';
  std::memcpy(data->setting, stored_hash.data(), stored_hash.size());
  data->setting[stored_hash.size()] = '\0';

  const char* output = crypt_rn(data->input, data->setting, data.get(), sizeof(crypt_data));
  const bool computed = output != nullptr;
  if (computed) check.matches = comparable && constant_time_equal(std::string_view(output), stored_hash);
  sodium_memzero(data.get(), sizeof(crypt_data));

  // A null result means libxcrypt rejected the setting (a cost outside 4..31, say).
  if (!computed) return fail(PasswordError::unsupported_hash, "libxcrypt rejected the bcrypt hash");
  return check;
}

}  // namespace

Result<void, PasswordError> check_password_policy(std::string_view password, const PasswordPolicy& policy) {
  if (password.empty()) return fail(PasswordError::empty, "password is empty");
  if (password.size() > policy.max_bytes) {
    return fail(PasswordError::too_long, "password is longer than " + std::to_string(policy.max_bytes) + " bytes");
  }
  if (password.find('\0') != std::string_view::npos) {
    return fail(PasswordError::contains_nul, "password contains a NUL byte");
  }
  if (!is_well_formed_utf8(password)) return fail(PasswordError::invalid_utf8, "password is not valid UTF-8");
  if (password.size() < policy.min_bytes) {
    return fail(PasswordError::too_short, "password is shorter than " + std::to_string(policy.min_bytes) + " bytes");
  }
  return {};
}

Result<std::string, PasswordError> hash_password(std::string_view password, const Argon2Params& params) {
  if (!sodium_ready()) return fail(PasswordError::hashing_failed, "sodium_init failed");

  char encoded[crypto_pwhash_STRBYTES] = {};
  const int rc = crypto_pwhash_str_alg(encoded, password.data(), password.size(), params.ops_limit,
                                       params.mem_limit_bytes, crypto_pwhash_ALG_ARGON2ID13);
  if (rc != 0) {
    return fail(PasswordError::hashing_failed, "crypto_pwhash_str_alg failed with ops_limit " +
                                                   std::to_string(params.ops_limit) + " and mem_limit_bytes " +
                                                   std::to_string(params.mem_limit_bytes));
  }
  return std::string(encoded);
}

Result<PasswordCheck, PasswordError> verify_password(std::string_view password, std::string_view stored_hash,
                                                     const Argon2Params& current) {
  if (stored_hash.starts_with(kArgon2idPrefix)) return verify_argon2id(password, stored_hash, current);
  if (is_bcrypt_hash(stored_hash)) return verify_bcrypt(password, stored_hash);
  return fail(PasswordError::unsupported_hash, "stored hash is neither argon2id nor bcrypt $2a$, $2b$ or $2y$");
}

const std::string& dummy_hash(const Argon2Params& params) {
  static std::mutex mutex;
  // std::map never moves its values, so returned references stay valid.
  static std::map<std::pair<std::uint64_t, std::size_t>, std::string> hashes;

  const std::lock_guard lock(mutex);
  const auto key = std::make_pair(params.ops_limit, params.mem_limit_bytes);
  if (const auto found = hashes.find(key); found != hashes.end()) return found->second;

  if (!sodium_ready()) throw std::runtime_error("sodium_init failed");
  SecretBytes random_password(32);
  randombytes_buf(random_password.data(), random_password.size());
  auto hashed = hash_password(random_password.text(), params);
  if (!hashed) throw std::runtime_error("failed to make the dummy password hash: " + hashed.error().detail);
  return hashes.emplace(key, std::move(*hashed)).first->second;
}

}  // namespace licensing::crypto
