// A small synchronous HTTP/1.1 client for licensectl and tests: HTTPS that verifies the
// server against a CA bundle and the URL's host name, or plain HTTP to a loopback address.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "common/error.hpp"

namespace licensing::client {

enum class HttpError {
  invalid_url,   // not http(s)://host:port/..., or plain HTTP to a non-loopback host
  connect,       // DNS, TCP or TLS handshake failed (including certificate verification)
  io,            // the connection failed mid-request, or timed out
  certificate_mismatch,  // the server's leaf certificate is not the pinned one
};

struct HttpResponse {
  unsigned status = 0;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
};

struct HttpRequest {
  std::string method = "GET";
  std::string url;  // https://host:port/path
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  std::string content_type = "application/json";
};

struct HttpOptions {
  std::string ca_bundle_file;  // trusted roots for HTTPS; empty: the system store
  std::chrono::seconds timeout{30};
  // A client certificate chain and its key (PEM files) for mutual TLS; empty: none.
  std::string client_certificate_file;
  std::string client_key_file;
  // When set, the server's leaf certificate (DER) must equal these bytes, checked after
  // the handshake and before the request is sent.
  std::vector<std::uint8_t> pinned_certificate_der;
};

Result<HttpResponse, HttpError> send(const HttpRequest& request, const HttpOptions& options);

}  // namespace licensing::client
