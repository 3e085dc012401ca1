// Password hashing: Argon2id (libsodium) for new hashes; bcrypt ($2a$, $2b$, $2y$ through
// libxcrypt) verified so existing user tables can be imported, and reported as needing a
// re-hash. Passwords are never truncated: a password longer than bcrypt's 72-byte input
// never matches a bcrypt hash.
//
// All functions are thread-safe. Buffers that held a copy of a password are wiped.
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
  unsupported_hash,  // a stored hash in no scheme we verify, or a malformed one
  hashing_failed,    // libsodium or libxcrypt failed (out of memory, say)
  too_short,         // fewer than PasswordPolicy::min_bytes
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

// bcrypt hashes only the first 72 bytes of a password.
inline constexpr std::size_t kBcryptMaxPasswordBytes = 72;

struct PasswordCheck {
  bool matches = false;
  // True for every bcrypt hash, and for an Argon2id hash whose parameters differ from the
  // current ones. Set whether or not the password matches.
  bool needs_rehash = false;
};

// Checks the policy only, in this order: empty, longer than max_bytes, a NUL byte,
// ill-formed UTF-8 (overlong forms, surrogates and code points above U+10FFFF included),
// shorter than min_bytes. Lengths are in bytes. It does not check strength or breach lists.
Result<void, PasswordError> check_password_policy(std::string_view password, const PasswordPolicy& policy);

// Returns an encoded "$argon2id$v=19$m=...,t=...,p=1$salt$hash" string with a fresh random
// salt. It does not apply the policy. Fails with hashing_failed when libsodium rejects
// `params` (outside its limits) or cannot allocate the memory.
Result<std::string, PasswordError> hash_password(std::string_view password, const Argon2Params& params);

// Verifies `password` against a stored Argon2id or bcrypt ($2a$, $2b$, $2y$) hash. The
// final comparison is constant-time. A wrong password is a success with matches=false.
// For a bcrypt hash, a password over kBcryptMaxPasswordBytes bytes or with a NUL byte
// returns matches=false without hashing, because bcrypt would truncate it. Any other
// scheme ($argon2i$, $2x$, $6$, ...) or a malformed hash fails with unsupported_hash.
// It does not apply the policy.
Result<PasswordCheck, PasswordError> verify_password(std::string_view password, std::string_view stored_hash,
                                                     const Argon2Params& current);

// An Argon2id hash of a random password with `params`, made once per distinct `params`,
// so that a login for an unknown user costs the same as one with a wrong password.
// Throws std::runtime_error when hashing fails, so call it once at start-up.
const std::string& dummy_hash(const Argon2Params& params);

}  // namespace licensing::crypto
