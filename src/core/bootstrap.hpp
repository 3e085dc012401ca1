// Enclave credentials and ids: 256-bit random credentials that the store keeps only as
// SHA-256 digests, and random UUIDs for enclave ids.
#pragma once

#include <string>
#include <string_view>

#include "common/secret.hpp"

namespace licensing::core {

struct NewCredential {
  SecretBytes credential;  // base64url text of 32 random bytes, handed to the enclave
  std::string hash_hex;    // SHA-256 of the text, lowercase hex; what the store keeps
};

// Makes a fresh credential; the credential is empty when the random number generator
// failed.
NewCredential make_credential();

// Lowercase hex SHA-256 of a credential's text.
std::string credential_hash(std::string_view credential);

// True for 43 characters of the base64url alphabet: the length make_credential produces.
bool is_credential_shaped(std::string_view credential);

// A random (version 4) UUID in lowercase; empty when the random number generator failed.
std::string random_uuid();

// True for the canonical lowercase form 8-4-4-4-12 of hex digits.
bool is_uuid(std::string_view text);

// True for 1 to 64 characters of [A-Za-z0-9._-]: the user ids the gateway passes.
bool is_user_id(std::string_view text);

}  // namespace licensing::core
