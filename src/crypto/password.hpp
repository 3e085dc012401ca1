// Password hashing: Argon2id (libsodium) for new hashes; bcrypt ($2a$, $2b$, $2y$ through
// libxcrypt) verified so existing user tables can be imported, and reported as needing a
// re-hash. Passwords are never truncated: a password longer than bcrypt's 72-byte input
// never matches a bcrypt hash.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "common/error.hpp"

namespace licensing::crypto {

enum class PasswordError {
  empty,             // zero-length password
  too_long,          // more than PasswordPolicy::max_bytes
  contains_nul,      // a NUL byte
  invalid_utf8,      // not well-formed UTF-8
  unsupported_hash,  // a stored hash in no scheme we verify
  hashing_failed,    // libsodium or libxcrypt failed (out of memory, say)
};

struct PasswordPolicy {
  std::size_t min_bytes = 8;
  std::size_t max_bytes = 1024;
};

// Argon2id cost. The defaults are libsodium's "interactive" limits.
struct Argon2Params {
  std::uint64_t ops_limit = 2;
  std::size_t mem_limit_bytes = 64 * 1024 * 1024;
};

struct PasswordCheck {
  bool matches = false;
  bool needs_rehash = false;  // bcrypt, or Argon2id with parameters other than the current ones
};

// Checks the policy only: length in bytes, NUL, UTF-8.
Result<void, PasswordError> check_password_policy(std::string_view password, const PasswordPolicy& policy);

// Returns an encoded "$argon2id$v=19$m=...,t=...,p=1$salt$hash" string.
Result<std::string, PasswordError> hash_password(std::string_view password, const Argon2Params& params);

// Verifies `password` against a stored Argon2id or bcrypt hash, in constant time for the
// comparison itself.
Result<PasswordCheck, PasswordError> verify_password(std::string_view password, std::string_view stored_hash,
                                                     const Argon2Params& current);

// An Argon2id hash of a random password with `params`, made once, so that a login for an
// unknown user costs the same as one with a wrong password.
const std::string& dummy_hash(const Argon2Params& params);

}  // namespace licensing::crypto
