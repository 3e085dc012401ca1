// Error values for fallible paths: each domain (token, certificate, store, ...) declares
// one closed `enum class` of codes and returns `Result<T, Code>`.
#pragma once

#include <expected>
#include <string>
#include <utility>

namespace licensing {

// A failure: a stable code for callers, and a detail for operators (what was checked,
// what was expected, what was seen). A detail never contains a secret.
template <typename Code>
struct Error {
  Code code;
  std::string detail;
};

template <typename T, typename Code>
using Result = std::expected<T, Error<Code>>;

template <typename Code>
std::unexpected<Error<Code>> fail(Code code, std::string detail = {}) {
  return std::unexpected(Error<Code>{code, std::move(detail)});
}

}  // namespace licensing
