// Username rules. A username is 3 to 32 Unicode code points after NFC normalization,
// drawn from letters, combining marks that belong to them, decimal digits, and the
// separators '.', '_' and '-' (not first or last, not two in a row), in a single script
// (plus the Common script for digits and separators). Comparison is case-insensitive and
// confusable-insensitive: two usernames that look alike share one key.
#pragma once

#include <string>
#include <string_view>

#include "common/error.hpp"

namespace licensing {

enum class UsernameError {
  invalid_utf8,           // bytes that are not well-formed UTF-8, or a NUL
  too_short,              // fewer than kMinUsernameLength code points
  too_long,               // more than kMaxUsernameLength code points, or input bytes over kMaxUsernameBytes
  disallowed_character,   // a character outside the allowed set (control, space, invisible, symbol, ...)
  misplaced_separator,    // a separator first, last, or next to another separator
  mixed_script,           // letters from more than one script
};

inline constexpr std::size_t kMinUsernameLength = 3;
inline constexpr std::size_t kMaxUsernameLength = 32;
inline constexpr std::size_t kMaxUsernameBytes = 256;

struct NormalizedUsername {
  std::string display;  // NFC form, as the user typed it apart from normalization; shown back
  std::string key;      // case-folded confusable skeleton (UTS #39); unique in the user table
};

// Validates and normalizes. Idempotent: normalizing `display` again gives the same result.
Result<NormalizedUsername, UsernameError> normalize_username(std::string_view raw);

}  // namespace licensing
