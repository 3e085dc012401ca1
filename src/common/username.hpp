// Username rules. A username is 3 to 32 Unicode code points after NFC normalization,
// drawn from letters, combining marks that belong to them, decimal digits, and the
// separators '.', '_' and '-' (not first or last, not two in a row), in a single script
// (plus the Common script for digits and separators). Comparison is case-insensitive and
// confusable-insensitive: two usernames that look alike share one key.
//
// In detail, normalize_username checks in this order:
//   1. at most kMaxUsernameBytes bytes of input (too_long);
//   2. well-formed UTF-8 without NUL (invalid_utf8);
//   3. after NFC: every code point is a letter (category L), a decimal digit (Nd), '.', '_',
//      '-', or a combining mark (Mn, Mc) after a letter or another such mark, and none is
//      default-ignorable, so ZWJ, ZWNJ, U+200B, soft hyphen, bidi controls, variation
//      selectors, spaces, controls, symbols and punctuation are rejected (disallowed_character);
//   4. separator placement (misplaced_separator);
//   5. kMinUsernameLength to kMaxUsernameLength code points of the NFC form (too_short, too_long);
//   6. after NFKC case folding, every character except the separators is in the UTS #39
//      recommended identifier set, which leaves out obsolete scripts and technical
//      letters (disallowed_character);
//   7. ICU's spoof checker: one script under UTS #39 "single script" restriction, where
//      Han with Hiragana and Katakana, or Han with Hangul, counts as one (mixed_script);
//      digits from one numbering system (mixed_script); no combining mark repeated on one
//      letter (disallowed_character).
// Full-width letters pass and share the key of their ASCII forms. A name written wholly in
// Cyrillic or Greek letters that look like Latin ones passes and shares the Latin name's key.
#pragma once

#include <cstddef>
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
  normalization_failed,   // ICU failed or its data is missing: a server fault, not the user's
};

inline constexpr std::size_t kMinUsernameLength = 3;
inline constexpr std::size_t kMaxUsernameLength = 32;
inline constexpr std::size_t kMaxUsernameBytes = 256;

struct NormalizedUsername {
  std::string display;  // NFC form, as the user typed it apart from normalization; shown back
  // NFKC_Casefold of the UTS #39 skeleton of the NFKC_Casefold form of `display`; unique
  // in the user table. The second fold merges skeleton prototypes that differ only in case,
  // so "bob0" (skeleton "bobO") and "bobo" share a key.
  // NOTE: the skeleton comes from the confusables data of the linked ICU (72 on Debian 12),
  // so after an ICU upgrade stored keys should be recomputed from `display`.
  // Because case folding runs before the skeleton, "I" arrives as "i"; the key then maps
  // every "i" to "l", so "aIice", "alice" and "ALICE" share a key, and so do "bill" and "bili".
  std::string key;

  bool operator==(const NormalizedUsername&) const = default;
};

// Validates and normalizes. Idempotent: normalizing `display` again gives the same result.
// Thread-safe.
Result<NormalizedUsername, UsernameError> normalize_username(std::string_view raw);

}  // namespace licensing
