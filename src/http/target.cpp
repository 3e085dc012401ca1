#include "http/target.hpp"

#include <optional>

namespace licensing::http {
namespace {

std::optional<int> hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return std::nullopt;
}

}  // namespace

Result<std::string, TargetError> percent_decode(std::string_view text, bool plus_is_space) {
  std::string decoded;
  decoded.reserve(text.size());

  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '+' && plus_is_space) {
      decoded.push_back(' ');
      continue;
    }
    if (c != '%') {
      decoded.push_back(c);
      continue;
    }

    // RFC 3986 section 2.1: a percent-encoded octet is '%' followed by two hex digits.
    if (i + 2 >= text.size()) {
      return fail(TargetError::malformed_escape, "'%' at offset " + std::to_string(i) + " is not followed by two characters");
    }
    const auto high = hex_value(text[i + 1]);
    const auto low = hex_value(text[i + 2]);
    if (!high || !low) {
      return fail(TargetError::malformed_escape, "'%' at offset " + std::to_string(i) + " is not followed by two hex digits");
    }
    const auto byte = static_cast<char>(*high * 16 + *low);
    if (byte == '\0') {
      return fail(TargetError::malformed_escape, "escaped NUL byte at offset " + std::to_string(i));
    }
    decoded.push_back(byte);
    i += 2;
  }
  return decoded;
}

Result<ParsedTarget, TargetError> parse_target(std::string_view target) {
  // Only origin-form is accepted. NOTE: RFC 9112 section 3.2.2 requires servers to accept
  // the absolute-form too. It is rejected here because no client of this server sends it.
  if (target.empty() || target.front() != '/') {
    return fail(TargetError::not_origin_form, "the request target does not start with '/'");
  }

  ParsedTarget parsed;
  const auto question = target.find('?');
  parsed.path = std::string(target.substr(0, question));
  if (question == std::string_view::npos) return parsed;

  std::string_view rest = target.substr(question + 1);
  while (!rest.empty()) {
    const auto ampersand = rest.find('&');
    const std::string_view pair = rest.substr(0, ampersand);
    rest = ampersand == std::string_view::npos ? std::string_view{} : rest.substr(ampersand + 1);
    if (pair.empty()) continue;

    const auto equals = pair.find('=');
    auto name = percent_decode(pair.substr(0, equals), true);
    if (!name) return std::unexpected(std::move(name.error()));
    auto value = percent_decode(equals == std::string_view::npos ? std::string_view{} : pair.substr(equals + 1), true);
    if (!value) return std::unexpected(std::move(value.error()));

    const bool inserted = parsed.query.emplace(std::move(*name), std::move(*value)).second;
    if (!inserted) {
      return fail(TargetError::duplicate_parameter, "a query parameter appears more than once");
    }
  }
  return parsed;
}

}  // namespace licensing::http
