#include "common/username.hpp"

#include <unicode/normalizer2.h>
#include <unicode/uchar.h>
#include <unicode/unistr.h>
#include <unicode/uniset.h>
#include <unicode/uspoof.h>
#include <unicode/utf8.h>

#include <cstdint>
#include <string>

namespace licensing {
namespace {

// ICU objects that are configured once and then used read-only, which ICU documents as
// thread-safe for the normalizers and for the check and skeleton functions of a checker.
struct UnicodeTools {
  const icu::Normalizer2* nfc = nullptr;
  const icu::Normalizer2* nfkc_casefold = nullptr;
  const icu::UnicodeSet* recommended = nullptr;
  icu::LocalUSpoofCheckerPointer checker;
  bool ready = false;
};

const UnicodeTools& unicode_tools() {
  static const UnicodeTools tools = [] {
    UnicodeTools loaded;
    UErrorCode status = U_ZERO_ERROR;
    loaded.nfc = icu::Normalizer2::getNFCInstance(status);
    loaded.nfkc_casefold = icu::Normalizer2::getNFKCCasefoldInstance(status);
    loaded.recommended = uspoof_getRecommendedUnicodeSet(&status);
    loaded.checker.adoptInstead(uspoof_open(&status));
    if (U_SUCCESS(status)) {
      uspoof_setChecks(loaded.checker.getAlias(), USPOOF_RESTRICTION_LEVEL | USPOOF_MIXED_NUMBERS | USPOOF_INVISIBLE,
                       &status);
      uspoof_setRestrictionLevel(loaded.checker.getAlias(), USPOOF_SINGLE_SCRIPT_RESTRICTIVE);
    }
    loaded.ready = U_SUCCESS(status);
    return loaded;
  }();
  return tools;
}

bool is_separator(UChar32 c) { return c == u'.' || c == u'_' || c == u'-'; }

bool is_letter(UChar32 c) { return (U_GET_GC_MASK(c) & U_GC_L_MASK) != 0; }

bool is_combining_mark(UChar32 c) { return (U_GET_GC_MASK(c) & (U_GC_MN_MASK | U_GC_MC_MASK)) != 0; }

bool is_decimal_digit(UChar32 c) { return u_charType(c) == U_DECIMAL_DIGIT_NUMBER; }

// Checks well-formed UTF-8 with ICU's U8_NEXT, which rejects overlong forms, surrogates and
// code points above U+10FFFF, and rejects NUL as well.
bool is_well_formed_utf8_without_nul(std::string_view raw) {
  const auto* bytes = reinterpret_cast<const std::uint8_t*>(raw.data());
  const auto length = static_cast<std::int32_t>(raw.size());
  std::int32_t i = 0;
  while (i < length) {
    UChar32 c = 0;
    U8_NEXT(bytes, i, length, c);
    if (c <= 0) return false;
  }
  return true;
}

// Accepts letters, decimal digits, the separators, and combining marks that follow a letter
// or another such mark. Default-ignorable code points (ZWJ, ZWNJ, U+200B, soft hyphen, bidi
// controls, variation selectors, U+3164 HANGUL FILLER, ...) are rejected first, because
// some of them are letters or marks.
bool has_only_allowed_characters(const icu::UnicodeString& text) {
  bool mark_may_follow = false;
  for (std::int32_t i = 0; i < text.length(); i = text.moveIndex32(i, 1)) {
    const UChar32 c = text.char32At(i);
    if (u_hasBinaryProperty(c, UCHAR_DEFAULT_IGNORABLE_CODE_POINT)) return false;

    if (is_letter(c)) {
      mark_may_follow = true;
    } else if (is_combining_mark(c)) {
      if (!mark_may_follow) return false;
    } else if (is_decimal_digit(c) || is_separator(c)) {
      mark_may_follow = false;
    } else {
      return false;
    }
  }
  return true;
}

bool has_well_placed_separators(const icu::UnicodeString& text) {
  const std::int32_t length = text.length();
  if (length == 0) return true;
  if (is_separator(text.char32At(0)) || is_separator(text.char32At(length - 1))) return false;

  bool previous_was_separator = false;
  for (std::int32_t i = 0; i < length; i = text.moveIndex32(i, 1)) {
    const bool separator = is_separator(text.char32At(i));
    if (separator && previous_was_separator) return false;
    previous_was_separator = separator;
  }
  return true;
}

// Checks every character except the separators against the UTS #39 recommended identifier
// set (Identifier_Status=Allowed), which leaves out obsolete scripts, technical letters and
// compatibility forms. `folded` is NFKC_Casefold output, so full-width letters have already
// become their ASCII forms.
bool is_recommended(const icu::UnicodeString& folded, const icu::UnicodeSet& recommended) {
  for (std::int32_t i = 0; i < folded.length(); i = folded.moveIndex32(i, 1)) {
    const UChar32 c = folded.char32At(i);
    if (!is_separator(c) && !recommended.contains(c)) return false;
  }
  return true;
}

}  // namespace

Result<NormalizedUsername, UsernameError> normalize_username(std::string_view raw) {
  if (raw.size() > kMaxUsernameBytes) {
    return fail(UsernameError::too_long, "username is longer than " + std::to_string(kMaxUsernameBytes) + " bytes");
  }
  if (!is_well_formed_utf8_without_nul(raw)) {
    return fail(UsernameError::invalid_utf8, "username is not valid UTF-8 or contains a NUL byte");
  }

  const UnicodeTools& tools = unicode_tools();
  if (!tools.ready) return fail(UsernameError::normalization_failed, "ICU normalization or spoof data is missing");

  UErrorCode status = U_ZERO_ERROR;
  const icu::UnicodeString display =
      tools.nfc->normalize(icu::UnicodeString::fromUTF8(icu::StringPiece(raw.data(), raw.size())), status);
  if (U_FAILURE(status)) return fail(UsernameError::normalization_failed, "NFC normalization failed");

  if (!has_only_allowed_characters(display)) {
    return fail(UsernameError::disallowed_character,
                "username contains a character other than a letter, digit, combining mark, '.', '_' or '-'");
  }
  if (!has_well_placed_separators(display)) {
    return fail(UsernameError::misplaced_separator, "username starts or ends with a separator, or has two in a row");
  }

  const std::int32_t code_points = display.countChar32();
  if (code_points < static_cast<std::int32_t>(kMinUsernameLength)) {
    return fail(UsernameError::too_short,
                "username is shorter than " + std::to_string(kMinUsernameLength) + " code points");
  }
  if (code_points > static_cast<std::int32_t>(kMaxUsernameLength)) {
    return fail(UsernameError::too_long,
                "username is longer than " + std::to_string(kMaxUsernameLength) + " code points");
  }

  const icu::UnicodeString folded = tools.nfkc_casefold->normalize(display, status);
  if (U_FAILURE(status)) return fail(UsernameError::normalization_failed, "NFKC case folding failed");
  if (!is_recommended(folded, *tools.recommended)) {
    return fail(UsernameError::disallowed_character,
                "username contains a character outside the UTS #39 recommended identifier set");
  }

  const std::int32_t failed_checks = uspoof_check2UnicodeString(tools.checker.getAlias(), display, nullptr, &status);
  if (U_FAILURE(status)) return fail(UsernameError::normalization_failed, "uspoof_check2 failed");
  if ((failed_checks & USPOOF_INVISIBLE) != 0) {
    return fail(UsernameError::disallowed_character, "username repeats a combining mark on one letter");
  }
  if ((failed_checks & (USPOOF_RESTRICTION_LEVEL | USPOOF_MIXED_NUMBERS)) != 0) {
    return fail(UsernameError::mixed_script, "username mixes letters or digits from more than one script");
  }

  icu::UnicodeString skeleton;
  uspoof_getSkeletonUnicodeString(tools.checker.getAlias(), 0, folded, skeleton, &status);
  if (U_FAILURE(status)) return fail(UsernameError::normalization_failed, "uspoof_getSkeleton failed");
  // Skeleton prototypes can be capitals (0 becomes O), so fold once more to keep the key
  // case-insensitive.
  icu::UnicodeString key = tools.nfkc_casefold->normalize(skeleton, status);
  if (U_FAILURE(status)) return fail(UsernameError::normalization_failed, "NFKC case folding failed");
  // Case folding runs before the skeleton, so a capital I arrives here as "i" although it
  // looks like "l" ("aIice" and "alice"). The key treats "i" as "l", so both are one name;
  // the price is that names differing only in i and l ("bill", "bili") collide too.
  key.findAndReplace(icu::UnicodeString(u'i'), icu::UnicodeString(u'l'));

  NormalizedUsername result;
  display.toUTF8String(result.display);
  key.toUTF8String(result.key);
  return result;
}

}  // namespace licensing
