// Building blocks shared by the REST handlers: problem+json responses (RFC 9457), strict
// JSON request bodies, identifiers and timestamps.
#pragma once

#include <nlohmann/json.hpp>

#include <chrono>
#include <expected>
#include <string>
#include <string_view>
#include <vector>

#include "http/server.hpp"

namespace licensing::gateway {

// A problem whose type is "urn:licensing:problem:<slug>".
http::Response problem(unsigned status, std::string_view slug, std::string_view title, std::string_view detail);
http::Response with_retry_after(http::Response response, std::chrono::seconds delay);
http::Response json_response(unsigned status, const nlohmann::json& body);
// 503 with Retry-After, naming the dependency that failed.
http::Response unavailable(std::string_view what);
// 401 with WWW-Authenticate: Bearer error="invalid_token" (RFC 6750, section 3).
http::Response invalid_token();
// Adds the members `success: false` and `message` that the original prototype's clients read.
http::Response prototype_error(http::Response response);

std::string lowercase(std::string_view text);
std::string_view trim(std::string_view text);

// The body as a JSON object: 415 unless the media type is application/json (charset
// utf-8 at most), 400 for invalid or too deeply nested JSON and for non-objects.
std::expected<nlohmann::json, http::Response> read_json_object(const http::Request& request, std::size_t max_depth);
// Exactly the string members `names`, in that order; any other member is a 400.
std::expected<std::vector<std::string>, http::Response> read_string_members(const nlohmann::json& body,
                                                                           const std::vector<std::string>& names);

std::string sha256_hex(std::string_view data);
// A random (version 4) UUID from OpenSSL's CSPRNG.
std::string new_uuid();
// True for the lower-case 8-4-4-4-12 hex form that new_uuid returns.
bool is_uuid(std::string_view text);
std::string rfc3339(std::chrono::system_clock::time_point at);

}  // namespace licensing::gateway
