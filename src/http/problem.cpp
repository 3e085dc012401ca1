#include "http/server.hpp"

#include <nlohmann/json.hpp>

namespace licensing::http {

Response problem(unsigned status, std::string_view type, std::string_view title, std::string_view detail) {
  // RFC 9457 section 3.1: the members type, title, status and detail.
  const nlohmann::json body = {
      {"type", type},
      {"title", title},
      {"status", status},
      {"detail", detail},
  };

  Response response;
  response.status = status;
  response.content_type = "application/problem+json";
  response.body = body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return response;
}

}  // namespace licensing::http
