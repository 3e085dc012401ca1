// Strict JSON parsing for untrusted input (request bodies, JOSE headers and claims).
#pragma once

#include <nlohmann/json.hpp>

#include <cstddef>
#include <string_view>

#include "common/error.hpp"

namespace licensing::json {

enum class JsonError {
  syntax,            // not JSON, trailing bytes, or invalid UTF-8 in a string
  too_deep,          // nesting beyond the caller's limit
  duplicate_member,  // the same member name twice in one object (RFC 8259 leaves it undefined)
};

// Parses the whole of `text` as one JSON value. Nesting is counted while parsing, so an
// input that is too deep is rejected before it is built.
Result<nlohmann::json, JsonError> parse_strict(std::string_view text, std::size_t max_depth);

}  // namespace licensing::json
