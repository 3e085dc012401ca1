#include "gateway/responses.hpp"

#include <openssl/evp.h>
#include <openssl/rand.h>

#include <fmt/chrono.h>
#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <stdexcept>

#include "common/json.hpp"

namespace licensing::gateway {

using http::Request;
using http::Response;
namespace beast_http = boost::beast::http;

Response problem(unsigned status, std::string_view slug, std::string_view title, std::string_view detail) {
  return http::problem(status, fmt::format("urn:licensing:problem:{}", slug), title, detail);
}

Response with_retry_after(Response response, std::chrono::seconds delay) {
  response.headers.emplace_back("Retry-After", std::to_string(std::max<std::int64_t>(1, delay.count())));
  return response;
}

Response json_response(unsigned status, const nlohmann::json& body) {
  Response response;
  response.status = status;
  response.body = body.dump();
  return response;
}

Response unavailable(std::string_view what) {
  return with_retry_after(problem(503, "unavailable", "Service unavailable",
                                  fmt::format("{} is unavailable; retry later", what)),
                          std::chrono::seconds(2));
}

Response invalid_token() {
  auto response = problem(401, "invalid-token", "Invalid access token", "the access token is missing, invalid or expired");
  response.headers.emplace_back("WWW-Authenticate", "Bearer error=\"invalid_token\"");
  return response;
}

std::string lowercase(std::string_view text) {
  std::string out(text);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return std::tolower(c); });
  return out;
}

std::string_view trim(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
  return text;
}

// Accepts "application/json" with an optional charset=utf-8 parameter (RFC 8259, section 8.1).
static bool is_json_media_type(std::string_view content_type) {
  const auto separator = content_type.find(';');
  if (lowercase(trim(content_type.substr(0, separator))) != "application/json") return false;
  if (separator == std::string_view::npos) return true;
  const auto parameter = lowercase(trim(content_type.substr(separator + 1)));
  return parameter.empty() || parameter == "charset=utf-8" || parameter == "charset=\"utf-8\"";
}

std::expected<nlohmann::json, Response> read_json_object(const Request& request, std::size_t max_depth) {
  const auto content_type = request.headers[beast_http::field::content_type];
  if (!is_json_media_type(std::string_view(content_type.data(), content_type.size()))) {
    return std::unexpected(problem(415, "unsupported-media-type", "Unsupported media type",
                                   "the request body must be application/json"));
  }
  auto parsed = json::parse_strict(request.body, max_depth);
  if (!parsed) {
    const char* reason = parsed.error().code == json::JsonError::too_deep           ? "JSON nested too deeply"
                         : parsed.error().code == json::JsonError::duplicate_member ? "a JSON member appears twice"
                                                                                    : "the body is not valid UTF-8 JSON";
    return std::unexpected(problem(400, "invalid-json", "Invalid JSON", reason));
  }
  if (!parsed->is_object()) {
    return std::unexpected(problem(400, "invalid-json", "Invalid JSON", "the body must be a JSON object"));
  }
  return std::move(*parsed);
}

// Takes exactly the string members `names` from `body`; any other member is rejected.
std::expected<std::vector<std::string>, Response> read_string_members(const nlohmann::json& body,
                                                                      const std::vector<std::string>& names) {
  for (const auto& [key, value] : body.items()) {
    if (std::find(names.begin(), names.end(), key) == names.end()) {
      return std::unexpected(problem(400, "invalid-request", "Invalid request", fmt::format("unknown member \"{}\"", key)));
    }
  }
  std::vector<std::string> values;
  for (const auto& name : names) {
    const auto member = body.find(name);
    if (member == body.end()) {
      return std::unexpected(problem(400, "invalid-request", "Invalid request", fmt::format("missing member \"{}\"", name)));
    }
    if (!member->is_string()) {
      return std::unexpected(problem(400, "invalid-request", "Invalid request", fmt::format("\"{}\" must be a string", name)));
    }
    values.push_back(member->get<std::string>());
  }
  return values;
}

std::string sha256_hex(std::string_view data) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
  unsigned int length = 0;
  EVP_Digest(data.data(), data.size(), digest.data(), &length, EVP_sha256(), nullptr);
  std::string hex;
  for (unsigned int i = 0; i < length; ++i) hex += fmt::format("{:02x}", digest[i]);
  return hex;
}

// A random (version 4) UUID from OpenSSL's CSPRNG.
std::string new_uuid() {
  std::array<std::uint8_t, 16> bytes{};
  if (RAND_bytes(bytes.data(), static_cast<int>(bytes.size())) != 1) throw std::runtime_error("RAND_bytes failed");
  bytes[6] = static_cast<std::uint8_t>((bytes[6] & 0x0f) | 0x40);
  bytes[8] = static_cast<std::uint8_t>((bytes[8] & 0x3f) | 0x80);
  std::string text;
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) text += '-';
    text += fmt::format("{:02x}", bytes[i]);
  }
  return text;
}

std::string rfc3339(std::chrono::system_clock::time_point at) {
  return fmt::format("{:%FT%T}Z", std::chrono::floor<std::chrono::seconds>(at));
}

// The original prototype's clients read `success` and `message`; problem+json allows
// extension members (RFC 9457, section 3.2), so errors carry both.
Response prototype_error(Response response) {
  auto body = nlohmann::json::parse(response.body, nullptr, false);
  if (body.is_object()) {
    body["success"] = false;
    body["message"] = body.value("detail", body.value("title", "request failed"));
    response.body = body.dump();
  }
  return response;
}

bool is_uuid(std::string_view text) {
  if (text.size() != 36) return false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash != (text[i] == '-')) return false;
    if (!dash && !std::isxdigit(static_cast<unsigned char>(text[i]))) return false;
    if (!dash && std::isupper(static_cast<unsigned char>(text[i]))) return false;
  }
  return true;
}

}  // namespace licensing::gateway
