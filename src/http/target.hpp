// Request-target parsing for the server (internal to src/http): splits an origin-form
// target (RFC 9112 section 3.2.1) into its path and its decoded query parameters.
#pragma once

#include "common/error.hpp"

#include <map>
#include <string>
#include <string_view>

namespace licensing::http {

enum class TargetError {
  not_origin_form,      // the target does not start with '/'
  malformed_escape,     // '%' not followed by two hex digits, or an escaped NUL byte
  duplicate_parameter,  // a query parameter name appears twice
};

struct ParsedTarget {
  std::string path;  // as received, not percent-decoded
  std::map<std::string, std::string> query;
};

// Splits `target` at the first '?'. The query is read as
// application/x-www-form-urlencoded (WHATWG URL standard): pairs separated by '&', names
// and values percent-decoded and '+' read as a space, a pair without '=' has an empty
// value, and empty pairs are skipped. A repeated name is rejected, so that two components
// cannot read different values for one parameter. The path is not checked beyond its
// leading '/'.
Result<ParsedTarget, TargetError> parse_target(std::string_view target);

// Decodes %XX escapes, and '+' as a space when `plus_is_space`.
Result<std::string, TargetError> percent_decode(std::string_view text, bool plus_is_space);

}  // namespace licensing::http
