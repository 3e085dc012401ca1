#include "http/server.hpp"

#include "common/logging.hpp"
#include "http/target.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/ssl.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <exception>
#include <limits>
#include <mutex>
#include <stdexcept>
#include <system_error>
#include <type_traits>
#include <unordered_map>

namespace licensing::http {
namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
using tcp = net::ip::tcp;
using Clock = std::chrono::steady_clock;
using ErrorCode = boost::system::error_code;
using ConnectionStrand = net::strand<net::io_context::executor_type>;
using Parser = beast_http::request_parser<beast_http::string_body>;
using WireResponse = beast_http::response<beast_http::string_body>;
using TlsStream = beast::ssl_stream<beast::tcp_stream>;

// After sending an error response the server still reads (and discards) what the client
// sends, up to these bounds, so that closing with unread input does not reset the
// connection before the client has read the response.
constexpr auto linger_timeout = std::chrono::seconds(2);
constexpr std::size_t linger_bytes = 64 * 1024;
constexpr std::size_t read_chunk_bytes = 4096;
constexpr auto accept_retry_delay = std::chrono::milliseconds(100);
constexpr std::string_view retry_after_seconds = "1";

// Labels for the observer when no method or no route applies.
constexpr std::string_view other_method = "other";
constexpr std::string_view unmatched_route = "unmatched";

auto redirect(ErrorCode& ec) { return net::redirect_error(net::use_awaitable, ec); }

// Beast 1.74 uses boost::string_view.
std::string_view to_std(beast::string_view text) { return {text.data(), text.size()}; }

// Shared between a connection's coroutine and Server::stop(). Its fields are read and
// written only on the connection's strand.
struct Connection {
  explicit Connection(ConnectionStrand executor) : strand(std::move(executor)) {}

  ConnectionStrand strand;
  std::uint64_t id = 0;
  beast::tcp_stream* transport = nullptr;  // set while the session owns a stream
  bool cancel_on_stop = false;             // handshake, wait for a request, linger
  bool stopping = false;
};

class ServerCore {
 public:
  ServerCore(net::io_context& io, ServerConfig config, std::shared_ptr<const Router> router, Observer observer)
      : io(io),
        config(std::move(config)),
        router(std::move(router)),
        observer(std::move(observer)),
        acceptor(net::make_strand(io)) {}

  // Returns nullptr once stop() has begun.
  std::shared_ptr<Connection> add_connection(ConnectionStrand strand) {
    const std::lock_guard lock(mutex);
    if (stopping) return nullptr;

    auto connection = std::make_shared<Connection>(std::move(strand));
    connection->id = next_id++;
    connections.emplace(connection->id, connection);
    open_connections.fetch_add(1);
    return connection;
  }

  void remove_connection(std::uint64_t id) {
    const std::lock_guard lock(mutex);
    connections.erase(id);
    open_connections.fetch_sub(1);
  }

  net::io_context& io;
  const ServerConfig config;
  const std::shared_ptr<const Router> router;
  const Observer observer;
  tcp::acceptor acceptor;  // used on its own strand once started
  std::atomic<std::uint16_t> port{0};
  std::atomic<std::size_t> open_connections{0};

  std::mutex mutex;
  bool started = false;   // guarded by mutex
  bool stopping = false;  // guarded by mutex
  std::uint64_t next_id = 0;  // guarded by mutex
  std::unordered_map<std::uint64_t, std::shared_ptr<Connection>> connections;  // guarded by mutex
};

// The step after one request and response.
enum class Next {
  keep_alive,       // read the next request
  close,            // close gracefully
  close_lingering,  // close gracefully, reading and discarding unread input first
  drop,             // the peer is gone, timed out, or the server is stopping: close at once
};

std::string method_label(beast_http::verb method) {
  if (method == beast_http::verb::unknown) return std::string(other_method);
  return std::string(beast_http::to_string(method));
}

bool is_http_error(const ErrorCode& ec) {
  return ec.category() == beast_http::make_error_code(beast_http::error::end_of_stream).category();
}

Response bad_request(std::string_view detail) {
  return problem(400, problem_type::bad_request, "Bad Request", detail);
}

Response header_too_large(std::string_view detail) {
  return problem(431, problem_type::header_too_large, "Request Header Fields Too Large", detail);
}

Response body_too_large(const ServerLimits& limits) {
  return problem(413, problem_type::body_too_large, "Content Too Large",
                 "The request body exceeds " + std::to_string(limits.body_bytes) + " bytes.");
}

// Maps a failed read of the request to the problem to send, or to nullopt when nothing can
// be sent: the peer closed, the read timed out, or stop() cancelled it.
std::optional<Response> problem_for_read_error(const ErrorCode& ec, const ServerLimits& limits) {
  if (!is_http_error(ec)) return std::nullopt;

  switch (static_cast<beast_http::error>(ec.value())) {
    case beast_http::error::end_of_stream:
    case beast_http::error::partial_message:
      return std::nullopt;
    case beast_http::error::header_limit:
      return header_too_large("The request header exceeds " + std::to_string(limits.header_bytes) + " bytes.");
    case beast_http::error::body_limit:
      return body_too_large(limits);
    case beast_http::error::bad_transfer_encoding:
    case beast_http::error::bad_content_length:
      // Beast rejects Content-Length next to chunked Transfer-Encoding itself, depending on
      // the order of the two fields. check_head() covers the other orders.
      return bad_request("The request framing is invalid: check Content-Length and Transfer-Encoding.");
    default:
      return bad_request("The request is not valid HTTP/1.1.");
  }
}

// Checks a request head that Beast parsed: field count, Host, and body framing.
std::optional<Response> check_head(const Parser& parser, const ServerLimits& limits) {
  const auto& head = parser.get();

  const auto field_count = static_cast<std::size_t>(std::distance(head.begin(), head.end()));
  if (field_count > limits.header_count) {
    return header_too_large("The request has more than " + std::to_string(limits.header_count) + " header fields.");
  }

  if (head.version() != 10 && head.version() != 11) {
    return problem(505, problem_type::http_version_not_supported, "HTTP Version Not Supported",
                   "The server supports HTTP/1.0 and HTTP/1.1.");
  }

  // RFC 9112 section 3.2: an HTTP/1.1 request has exactly one Host field.
  const auto host_count = head.count(beast_http::field::host);
  if (host_count > 1 || (head.version() == 11 && host_count == 0)) {
    return bad_request("An HTTP/1.1 request needs exactly one Host header field.");
  }

  // RFC 9112 section 6.1: Content-Length with Transfer-Encoding can be a request smuggling
  // attempt, so the request is rejected and the connection closed.
  const auto transfer_encoding_count = head.count(beast_http::field::transfer_encoding);
  if (transfer_encoding_count > 0 && head.count(beast_http::field::content_length) > 0) {
    return bad_request("The request has both Content-Length and Transfer-Encoding.");
  }

  // RFC 9112 section 6.3: a request whose final transfer coding is not chunked cannot be
  // framed. No other transfer coding is supported, so only a lone "chunked" is accepted.
  if (transfer_encoding_count > 1 ||
      (transfer_encoding_count == 1 && !beast::iequals(head[beast_http::field::transfer_encoding], "chunked"))) {
    return bad_request("The only supported Transfer-Encoding is chunked.");
  }

  // Beast already fails with body_limit in this case; the check does not depend on it.
  if (const auto length = parser.content_length(); length && *length > limits.body_bytes) {
    return body_too_large(limits);
  }
  return std::nullopt;
}

// A token as RFC 9110 section 5.6.2 defines it, for response field names.
bool is_token(std::string_view text) {
  constexpr std::string_view extra = "!#$%&'*+-.^_`|~";
  return !text.empty() && std::all_of(text.begin(), text.end(), [&](char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || extra.find(c) != std::string_view::npos;
  });
}

bool is_field_value(std::string_view text) { return text.find_first_of(std::string_view("\r\n\0", 3)) == std::string_view::npos; }

bool is_bodiless_status(unsigned status) { return status == 204 || status == 304; }

// Returns why a handler's response cannot be sent, or nullopt when it can.
std::optional<std::string> invalid_response_reason(const Response& response) {
  if (response.status < 200 || response.status > 599) return "status " + std::to_string(response.status) + " is outside 200-599";
  if (is_bodiless_status(response.status) && !response.body.empty()) return "a 204 or 304 response has a body";
  if (!is_bodiless_status(response.status) && (response.content_type.empty() || !is_field_value(response.content_type))) {
    return "the content type is empty or contains CR, LF or NUL";
  }

  for (const auto& [name, value] : response.headers) {
    if (!is_token(name)) return "a header name is not an RFC 9110 token";
    if (!is_field_value(value)) return "header " + name + " contains CR, LF or NUL";
    for (const char* reserved : {"Content-Length", "Content-Type", "Transfer-Encoding", "Connection"}) {
      if (beast::iequals(name, reserved)) return "header " + name + " is set by the server";
    }
  }
  return std::nullopt;
}

// Builds the wire response with the fields that every response carries.
WireResponse to_wire(Response response, unsigned version, bool keep_alive) {
  WireResponse message;
  message.version(version);
  message.result(response.status);

  // RFC 9110 sections 8.6 and 15.3.5: no Content-Length in a 204 response.
  if (!is_bodiless_status(response.status)) {
    message.set(beast_http::field::content_type, response.content_type);
    message.content_length(response.body.size());
  }

  bool has_cache_control = false;
  for (const auto& [name, value] : response.headers) {
    has_cache_control = has_cache_control || beast::iequals(name, "Cache-Control");
    message.insert(name, value);
  }
  if (!has_cache_control) message.set(beast_http::field::cache_control, "no-store");
  message.set("X-Content-Type-Options", "nosniff");

  message.keep_alive(keep_alive);
  message.body() = std::move(response.body);
  return message;
}

// Serves one connection over `Stream`: a beast::tcp_stream, or a TLS stream over one.
template <typename Stream>
class Session {
 public:
  static constexpr bool is_tls = std::is_same_v<Stream, TlsStream>;

  Session(ServerCore& core, Stream& stream, Connection& connection)
      : core_(core), limits_(core.config.limits), stream_(stream), connection_(connection) {
    ErrorCode ec;
    const auto peer = transport().socket().remote_endpoint(ec);
    if (!ec) client_address_ = peer.address().to_string();
  }

  net::awaitable<void> run() {
    if constexpr (is_tls) {
      ErrorCode ec;
      connection_.cancel_on_stop = true;
      transport().expires_after(limits_.handshake_timeout);
      co_await stream_.async_handshake(net::ssl::stream_base::server, redirect(ec));
      connection_.cancel_on_stop = false;
      if (ec) {
        logging::debug("tls_handshake_failed", {{"client", client_address_}, {"error", ec.message()}});
        transport().close();
        co_return;
      }
    }

    // GCC 12 has known bugs with temporaries inside co_await expressions (a double free
    // showed up here), so the coroutines in this file await calls on named values.
    for (std::size_t served = 0;; ++served) {
      Next next = Next::close;
      if (!connection_.stopping) next = co_await exchange(served);
      if (next == Next::keep_alive) continue;

      co_await close(next);
      co_return;
    }
  }

  // Sends 503 without reading the request, then closes.
  net::awaitable<void> reject_over_capacity() {
    Response response = problem(503, problem_type::unavailable, "Service Unavailable",
                                "The server is at its connection limit. Retry later.");
    response.headers.emplace_back("Retry-After", retry_after_seconds);
    Observed observed{std::string(other_method), std::string(unmatched_route), Clock::now()};
    co_await send(std::move(response), 11, false, std::move(observed));
    co_await close(Next::close_lingering);
  }

 private:
  struct Observed {
    std::string method;
    std::string route;
    Clock::time_point started;
  };

  beast::tcp_stream& transport() { return beast::get_lowest_layer(stream_); }

  // Reads one request and sends its response.
  net::awaitable<Next> exchange(std::size_t served) {
    Parser parser;
    parser.header_limit(static_cast<std::uint32_t>(std::min<std::size_t>(limits_.header_bytes, std::numeric_limits<std::uint32_t>::max())));
    parser.body_limit(static_cast<std::uint64_t>(limits_.body_bytes));

    // Wait for the next request under the idle timeout, then read its head under the
    // header timeout. Each timeout is one deadline for all reads, so a client that trickles
    // its head is closed when it passes.
    ErrorCode ec;
    connection_.cancel_on_stop = true;
    if (served > 0 && buffer_.size() == 0) {
      transport().expires_after(limits_.idle_timeout);
      const std::size_t received = co_await stream_.async_read_some(buffer_.prepare(read_chunk_bytes), redirect(ec));
      buffer_.commit(received);
    }
    if (!ec) {
      transport().expires_after(limits_.header_timeout);
      co_await beast_http::async_read_header(stream_, buffer_, parser, redirect(ec));
    }
    connection_.cancel_on_stop = false;

    Observed observed{method_label(parser.get().method()), std::string(unmatched_route), Clock::now()};
    if (ec) co_return co_await reject_read(ec, std::move(observed));

    if (auto rejection = check_head(parser, limits_)) {
      co_await send(std::move(*rejection), 11, false, std::move(observed));
      co_return Next::close_lingering;
    }

    // Read the body under the body timeout, after "100 Continue" when the client waits
    // for it (RFC 9110 section 10.1.1).
    if (!parser.is_done()) {
      if (parser.get().version() == 11 && beast::iequals(parser.get()[beast_http::field::expect], "100-continue")) {
        beast_http::response<beast_http::empty_body> proceed{beast_http::status::continue_, 11};
        transport().expires_after(limits_.write_timeout);
        co_await beast_http::async_write(stream_, proceed, redirect(ec));
        if (ec) co_return Next::drop;
      }
      transport().expires_after(limits_.body_timeout);
      co_await beast_http::async_read(stream_, buffer_, parser, redirect(ec));
      if (ec) co_return co_await reject_read(ec, std::move(observed));
    }

    auto request = parser.release();
    co_return co_await respond(std::move(request), served, std::move(observed));
  }

  net::awaitable<Next> reject_read(const ErrorCode& ec, Observed observed) {
    auto rejection = problem_for_read_error(ec, limits_);
    if (!rejection) co_return Next::drop;

    co_await send(std::move(*rejection), 11, false, std::move(observed));
    co_return Next::close_lingering;
  }

  // Routes a complete request, runs its handler and sends the response.
  net::awaitable<Next> respond(beast_http::request<beast_http::string_body> message, std::size_t served, Observed observed) {
    const unsigned version = message.version();
    bool keep_alive = message.keep_alive() && served + 1 < limits_.max_requests_per_connection;

    auto target = parse_target(to_std(message.target()));
    if (!target) {
      Response rejection = bad_request("The request target or its query is malformed.");
      const bool sent = co_await send(std::move(rejection), version, keep_alive, std::move(observed));
      co_return sent && keep_alive ? Next::keep_alive : Next::close;
    }

    const auto match = core_.router->match(message.method(), target->path);
    Response response;
    if (!match.path_known) {
      response = problem(404, problem_type::not_found, "Not Found", "No resource matches the request path.");
    } else if (match.handler == nullptr) {
      observed.route = match.pattern;
      response = method_not_allowed(match.allowed);
    } else {
      observed.route = match.pattern;
      Request request{
          .method = message.method(),
          .target = std::string(message.target()),
          .path = std::move(target->path),
          .query = std::move(target->query),
          .path_params = match.params,
          .headers = static_cast<const beast_http::fields&>(message),
          .body = std::move(message.body()),
          .client_address = client_address_,
      };
      response = co_await call_handler(*match.handler, request, observed);
    }

    // stop() may have begun while the handler ran.
    keep_alive = keep_alive && !response.close && !connection_.stopping;
    const bool sent = co_await send(std::move(response), version, keep_alive, std::move(observed));
    co_return sent && keep_alive ? Next::keep_alive : Next::close;
  }

  static Response method_not_allowed(const std::vector<beast_http::verb>& allowed) {
    Response response = problem(405, problem_type::method_not_allowed, "Method Not Allowed",
                                "The resource does not support the request method.");
    // RFC 9110 section 15.5.6: a 405 response carries Allow.
    std::string allow;
    for (const auto method : allowed) {
      if (!allow.empty()) allow += ", ";
      allow += std::string(beast_http::to_string(method));
    }
    response.headers.emplace_back("Allow", std::move(allow));
    return response;
  }

  // Runs a handler. An exception or an unsendable response becomes a 500 without details.
  net::awaitable<Response> call_handler(const Handler& handler, Request& request, const Observed& observed) {
    std::optional<std::string> failure;
    Response response;
    try {
      response = co_await handler(request);
    } catch (const std::exception& error) {
      failure = error.what();
    } catch (...) {
      failure = "an exception not derived from std::exception";
    }
    if (!failure) failure = invalid_response_reason(response);
    if (!failure) co_return response;

    logging::error("handler_failed", {{"method", observed.method}, {"route", observed.route}, {"error", *failure}});
    co_return problem(500, problem_type::internal, "Internal Server Error", "The server failed to process the request.");
  }

  // Writes a response under the write timeout and reports it to the observer. Returns
  // whether the write succeeded.
  net::awaitable<bool> send(Response response, unsigned version, bool keep_alive, Observed observed) {
    const unsigned status = response.status;
    auto message = to_wire(std::move(response), version, keep_alive);

    ErrorCode ec;
    transport().expires_after(limits_.write_timeout);
    co_await beast_http::async_write(stream_, message, redirect(ec));

    if (core_.observer) {
      const auto duration = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - observed.started);
      try {
        core_.observer(RequestRecord{std::move(observed.method), std::move(observed.route), status, duration});
      } catch (const std::exception& error) {
        logging::error("observer_failed", {{"error", error.what()}});
      }
    }
    co_return !ec;
  }

  net::awaitable<void> close(Next next) {
    ErrorCode ec;
    if (next == Next::drop) {
      transport().close();
      co_return;
    }

    connection_.cancel_on_stop = true;
    if constexpr (is_tls) {
      // A client may still be sending a rejected body: read and discard it first, so the
      // error response is not lost to a reset. Then send close_notify and wait briefly
      // for the client's.
      if (next == Next::close_lingering) co_await drain();
      transport().expires_after(linger_timeout);
      co_await stream_.async_shutdown(redirect(ec));
    } else {
      transport().socket().shutdown(tcp::socket::shutdown_send, ec);
      if (next == Next::close_lingering || buffer_.size() > 0) co_await drain();
    }
    transport().close();
  }

  // Reads and discards input (decrypted, over TLS) until the client closes or a linger
  // bound is reached.
  net::awaitable<void> drain() {
    ErrorCode ec;
    std::array<char, read_chunk_bytes> discard{};
    std::size_t total = buffer_.size();
    buffer_.consume(buffer_.size());
    transport().expires_after(linger_timeout);
    while (!ec && total < linger_bytes && !connection_.stopping) {
      if constexpr (is_tls) {
        total += co_await stream_.async_read_some(net::buffer(discard), redirect(ec));
      } else {
        total += co_await transport().async_read_some(net::buffer(discard), redirect(ec));
      }
    }
  }

  ServerCore& core_;
  const ServerLimits& limits_;
  Stream& stream_;
  Connection& connection_;
  beast::flat_buffer buffer_;
  std::string client_address_;
};

// Clears Connection::transport when the stream it points to goes away.
class TransportRegistration {
 public:
  TransportRegistration(Connection& connection, beast::tcp_stream& transport) : connection_(connection) {
    connection_.transport = &transport;
  }
  ~TransportRegistration() { connection_.transport = nullptr; }
  TransportRegistration(const TransportRegistration&) = delete;
  TransportRegistration& operator=(const TransportRegistration&) = delete;

 private:
  Connection& connection_;
};

net::awaitable<void> run_connection(std::shared_ptr<ServerCore> core, tcp::socket socket, std::shared_ptr<Connection> connection) {
  struct Removal {
    ServerCore& core;
    std::uint64_t id;
    ~Removal() { core.remove_connection(id); }
  } removal{*core, connection->id};

  beast::tcp_stream transport(std::move(socket));
  if (core->config.tls) {
    TlsStream stream(std::move(transport), *core->config.tls);
    const TransportRegistration registration(*connection, beast::get_lowest_layer(stream));
    Session<TlsStream> session(*core, stream, *connection);
    co_await session.run();
  } else {
    const TransportRegistration registration(*connection, transport);
    Session<beast::tcp_stream> session(*core, transport, *connection);
    co_await session.run();
  }
}

net::awaitable<void> reject_connection(std::shared_ptr<ServerCore> core, tcp::socket socket, ConnectionStrand strand) {
  beast::tcp_stream transport(std::move(socket));
  // It is not registered, so stop() does not reach it, but its linger and write timeouts bound it.
  Connection connection(std::move(strand));
  Session<beast::tcp_stream> session(*core, transport, connection);
  co_await session.reject_over_capacity();
}

void log_coroutine_failure(std::string_view event, std::exception_ptr failure) {
  if (!failure) return;
  try {
    std::rethrow_exception(failure);
  } catch (const std::exception& error) {
    logging::error(event, {{"error", error.what()}});
  } catch (...) {
    logging::error(event, {{"error", "an exception not derived from std::exception"}});
  }
}

// Starts a coroutine for an accepted socket, on the socket's own strand.
void dispatch(const std::shared_ptr<ServerCore>& core, tcp::socket socket, ConnectionStrand strand) {
  const auto on_exit = [](std::exception_ptr failure) { log_coroutine_failure("connection_failed", failure); };

  if (core->open_connections.load() >= core->config.limits.max_connections) {
    logging::warn("connection_rejected", {{"reason", "max_connections reached"}, {"max_connections", core->config.limits.max_connections}});
    if (core->config.tls) {
      ErrorCode ec;
      socket.close(ec);
      return;
    }
    net::co_spawn(strand, reject_connection(core, std::move(socket), strand), on_exit);
    return;
  }

  auto connection = core->add_connection(strand);
  if (!connection) {
    ErrorCode ec;
    socket.close(ec);
    return;
  }
  net::co_spawn(strand, run_connection(core, std::move(socket), std::move(connection)), on_exit);
}

net::awaitable<void> accept_loop(std::shared_ptr<ServerCore> core) {
  for (;;) {
    ErrorCode ec;
    auto socket = co_await core->acceptor.async_accept(net::make_strand(core->io), redirect(ec));
    if (ec == net::error::operation_aborted || !core->acceptor.is_open()) co_return;

    if (ec) {
      // A full file descriptor table fails every accept at once; wait instead of spinning.
      logging::warn("accept_failed", {{"error", ec.message()}});
      net::steady_timer pause(co_await net::this_coro::executor, accept_retry_delay);
      co_await pause.async_wait(redirect(ec));
      continue;
    }

    ConnectionStrand strand = socket.get_executor();
    dispatch(core, tcp::socket(std::move(socket)), std::move(strand));
  }
}

}  // namespace

struct Server::State : ServerCore {
  using ServerCore::ServerCore;
};

Server::Server(boost::asio::io_context& io, ServerConfig config, std::shared_ptr<const Router> router, Observer observer) {
  if (!router) throw std::invalid_argument("the server needs a router");
  state_ = std::make_shared<State>(io, std::move(config), std::move(router), std::move(observer));
}

Server::~Server() { stop(); }

void Server::start() {
  std::shared_ptr<ServerCore> core = state_;
  {
    const std::lock_guard lock(core->mutex);
    if (core->started || core->stopping) throw std::logic_error("a server starts once");
    core->started = true;
  }

  ErrorCode ec;
  const auto address = net::ip::make_address(core->config.address, ec);
  if (ec) throw std::invalid_argument("server address '" + core->config.address + "' is not an IP address");
  if (!core->config.tls && !address.is_loopback()) {
    throw std::invalid_argument("plain HTTP requires a loopback address, not " + core->config.address + ". Configure TLS to listen on it");
  }

  const tcp::endpoint endpoint(address, core->config.port);
  const auto where = core->config.address + ":" + std::to_string(core->config.port);
  core->acceptor.open(endpoint.protocol(), ec);
  if (ec) throw std::system_error(ec, "opening a socket for " + where + " failed");
  core->acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
  if (ec) throw std::system_error(ec, "setting SO_REUSEADDR for " + where + " failed");
  core->acceptor.bind(endpoint, ec);
  if (ec) throw std::system_error(ec, "binding " + where + " failed");
  core->acceptor.listen(net::socket_base::max_listen_connections, ec);
  if (ec) throw std::system_error(ec, "listening on " + where + " failed");

  core->port = core->acceptor.local_endpoint().port();
  logging::info("server_started", {{"address", core->config.address}, {"port", core->port.load()}, {"tls", core->config.tls != nullptr}});
  net::co_spawn(core->acceptor.get_executor(), accept_loop(core),
                [](std::exception_ptr failure) { log_coroutine_failure("accept_loop_failed", failure); });
}

void Server::stop() {
  std::shared_ptr<ServerCore> core = state_;
  std::vector<std::shared_ptr<Connection>> connections;
  bool started = false;
  {
    const std::lock_guard lock(core->mutex);
    if (core->stopping) return;
    core->stopping = true;
    started = core->started;
    for (const auto& entry : core->connections) connections.push_back(entry.second);
  }

  net::post(core->acceptor.get_executor(), [core] {
    ErrorCode ec;
    core->acceptor.close(ec);
  });
  for (const auto& connection : connections) {
    net::post(connection->strand, [connection] {
      connection->stopping = true;
      if (connection->cancel_on_stop && connection->transport != nullptr) connection->transport->cancel();
    });
  }
  if (started) logging::info("server_stopping", {{"open_connections", core->open_connections.load()}});
}

std::uint16_t Server::port() const { return state_->port.load(); }

std::size_t Server::open_connections() const { return state_->open_connections.load(); }

}  // namespace licensing::http
