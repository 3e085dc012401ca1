#include "core/bootstrap.hpp"

#include <algorithm>
#include <array>
#include <cstdint>

#include "common/base64url.hpp"
#include "crypto/openssl.hpp"

namespace licensing::core {

NewCredential make_credential() {
  std::array<std::uint8_t, 32> bytes{};
  if (!crypto::ossl::random_bytes(bytes)) return {};
  std::string text = base64url::encode(bytes);
  OPENSSL_cleanse(bytes.data(), bytes.size());
  NewCredential result{SecretBytes(std::string_view(text)), credential_hash(text)};
  wipe_string(text);
  return result;
}

std::string credential_hash(std::string_view credential) {
  return crypto::ossl::to_hex(crypto::ossl::sha256(credential));
}

bool is_credential_shaped(std::string_view credential) {
  return credential.size() == 43 && std::all_of(credential.begin(), credential.end(), [](char c) {
           return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
         });
}

std::string random_uuid() {
  std::array<std::uint8_t, 16> bytes{};
  if (!crypto::ossl::random_bytes(bytes)) return {};
  bytes[6] = static_cast<std::uint8_t>((bytes[6] & 0x0f) | 0x40);  // version 4
  bytes[8] = static_cast<std::uint8_t>((bytes[8] & 0x3f) | 0x80);  // RFC 4122 variant
  const std::string hex = crypto::ossl::to_hex(bytes);
  return hex.substr(0, 8) + "-" + hex.substr(8, 4) + "-" + hex.substr(12, 4) + "-" + hex.substr(16, 4) + "-" +
         hex.substr(20);
}

bool is_uuid(std::string_view text) {
  if (text.size() != 36) return false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    const bool hyphen_position = i == 8 || i == 13 || i == 18 || i == 23;
    if (hyphen_position ? c != '-' : !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

bool is_user_id(std::string_view text) {
  return !text.empty() && text.size() <= 64 && std::all_of(text.begin(), text.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
           c == '-';
  });
}

}  // namespace licensing::core
