// base64url without padding (RFC 4648, section 5), as JOSE uses it (RFC 7515, section 2).
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace licensing::base64url {

std::string encode(std::span<const std::uint8_t> bytes);
std::string encode(std::string_view bytes);

// Decodes strictly: rejects padding, characters outside the URL-safe alphabet, a length
// of 1 modulo 4, and non-zero unused bits in the last character, so every byte string
// has exactly one accepted encoding.
std::optional<std::vector<std::uint8_t>> decode(std::string_view text);

}  // namespace licensing::base64url
