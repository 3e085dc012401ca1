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

class Router {
 public:
  // `pattern` is a path such as "/v1/enclaves/{id}"; a segment in braces matches one
  // non-empty path segment.
  void add(beast_http::verb method, std::string pattern, Handler handler);

  struct Match {
    const Handler* handler = nullptr;
    std::map<std::string, std::string> params;
    bool path_known = false;  // some route has this path (for 405 against 404)
    std::string pattern;      // the matched route, for metrics labels
  };
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

class Server {
 public:
  Server(boost::asio::io_context& io, ServerConfig config, std::shared_ptr<const Router> router, Observer observer = {});
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds and starts accepting; throws std::system_error on a bind failure and
  // std::invalid_argument for plain HTTP on a non-loopback address.
  void start();
  // Stops accepting and closes open connections.
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
