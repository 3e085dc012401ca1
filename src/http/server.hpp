// An HTTP/1.1 server on Boost.Beast with C++20 coroutines, over TLS or (loopback only)
// plain TCP. It enforces the limits that protect every handler: header size and count,
// body size, a header read timeout, an idle timeout, a connection cap, and rejection of
// ambiguous framing (Content-Length with Transfer-Encoding).
#pragma once

#include <utility>  // Boost 1.74's awaitable.hpp needs it first with GCC 12.

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/beast/http.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace licensing::http {

namespace beast_http = boost::beast::http;

struct Request {
  beast_http::verb method;
  std::string target;  // as received, with the query
  std::string path;    // percent-decoding is not applied
  std::map<std::string, std::string> query;
  std::map<std::string, std::string> path_params;  // from "{name}" segments of the route
  beast_http::fields headers;
  std::string body;
  std::string client_address;  // the peer's IP address
};

struct Response {
  unsigned status = 200;
  std::string content_type = "application/json";
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  bool close = false;  // close the connection after sending
};

using Handler = std::function<boost::asio::awaitable<Response>(Request&)>;

// RFC 9457 problem details. `type` is a stable URI-reference such as
// "urn:licensing:problem:invalid-json"; `detail` is safe for clients.
Response problem(unsigned status, std::string_view type, std::string_view title, std::string_view detail);

// Problem types that the server itself sends, before or around a handler.
namespace problem_type {
inline constexpr std::string_view bad_request = "urn:licensing:problem:bad-request";                    // 400
inline constexpr std::string_view not_found = "urn:licensing:problem:not-found";                        // 404
inline constexpr std::string_view method_not_allowed = "urn:licensing:problem:method-not-allowed";      // 405
inline constexpr std::string_view body_too_large = "urn:licensing:problem:body-too-large";              // 413
inline constexpr std::string_view header_too_large = "urn:licensing:problem:header-too-large";          // 431
inline constexpr std::string_view internal = "urn:licensing:problem:internal";                          // 500
inline constexpr std::string_view unavailable = "urn:licensing:problem:unavailable";                    // 503
inline constexpr std::string_view http_version_not_supported = "urn:licensing:problem:http-version-not-supported";  // 505
}  // namespace problem_type

// Routes are added before the server starts; `match` may then run on several threads.
class Router {
 public:
  // `pattern` is a path such as "/v1/enclaves/{id}"; a segment in braces matches one
  // non-empty path segment. Segments are compared byte for byte, without percent-decoding.
  // Throws std::invalid_argument for a pattern that does not start with '/', a malformed or
  // repeated "{name}", an empty handler, or a method and pattern added twice.
  void add(beast_http::verb method, std::string pattern, Handler handler);

  struct Match {
    const Handler* handler = nullptr;
    std::map<std::string, std::string> params;
    bool path_known = false;  // some route has this path (for 405 against 404)
    std::string pattern;      // the matched route, for metrics labels
    std::vector<beast_http::verb> allowed;  // methods of the routes with this path, for Allow
  };
  // When several patterns match, the route added first wins.
  Match match(beast_http::verb method, std::string_view path) const;

 private:
  struct Route {
    beast_http::verb method;
    std::string pattern;
    std::vector<std::string> segments;
    Handler handler;
  };
  std::vector<Route> routes_;
};

struct ServerLimits {
  std::size_t header_bytes = 8 * 1024;   // 431 past it
  std::size_t header_count = 64;         // 431 past it
  std::size_t body_bytes = 16 * 1024;    // 413 past it, before the body is read
  std::chrono::seconds header_timeout{10};
  std::chrono::seconds body_timeout{10};
  std::chrono::seconds idle_timeout{60};
  std::chrono::seconds handshake_timeout{10};  // TLS handshake
  std::chrono::seconds write_timeout{10};      // writing one response
  std::size_t max_connections = 1024;
  std::size_t max_requests_per_connection = 1000;
};

struct ServerConfig {
  std::string address = "127.0.0.1";
  std::uint16_t port = 0;  // 0 picks a free port
  // TLS when set. Without it the server refuses to bind a non-loopback address.
  std::shared_ptr<boost::asio::ssl::context> tls;
  ServerLimits limits;
};

// Called once per response, for metrics and access logs.
struct RequestRecord {
  std::string method;
  std::string route;  // the matched pattern, or "unmatched"
  unsigned status;
  std::chrono::microseconds duration;
};
using Observer = std::function<void(const RequestRecord&)>;

// The io_context must outlive the Server, because the destructor calls stop(), which posts
// to it.
class Server {
 public:
  Server(boost::asio::io_context& io, ServerConfig config, std::shared_ptr<const Router> router, Observer observer = {});
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds and starts accepting. Throws std::system_error on a bind failure, and
  // std::invalid_argument for an address that is not an IP literal or for plain HTTP on a
  // non-loopback address. A server starts once.
  //
  // Past limits.max_connections a plain-TCP connection gets 503 with Retry-After and is
  // closed without its request being read. A TLS connection is closed at once, because
  // sending a 503 over TLS would cost a handshake while the server is saturated.
  void start();
  // Stops accepting and closes open connections: those waiting for a request at once, the
  // others after their current response. Safe from any thread; the io_context runs out
  // when the last connection has closed.
  void stop();
  std::uint16_t port() const;
  std::size_t open_connections() const;

 private:
  struct State;
  std::shared_ptr<State> state_;
};

// A TLS server context (TLS 1.2 and 1.3, ECDHE AEAD suites only) from PEM files.
std::shared_ptr<boost::asio::ssl::context> make_server_tls_context(const std::string& certificate_chain_file,
                                                                   const std::string& private_key_file);

}  // namespace licensing::http
