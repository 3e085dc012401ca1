#include "client/https_client.hpp"

#include <utility>  // Boost 1.74's awaitable.hpp needs it first with GCC 12.

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <openssl/err.h>
#include <openssl/x509.h>

#include <algorithm>
#include <cctype>
#include <regex>

namespace licensing::client {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace beast_http = beast::http;

struct ParsedUrl {
  bool tls = true;
  std::string host;
  std::string port;
  std::string target;
};

Result<ParsedUrl, HttpError> parse_url(const std::string& url) {
  static const std::regex pattern(R"(^(https?)://(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(?::([0-9]{1,5}))?(/[^\s]*)?$)");
  std::smatch match;
  if (!std::regex_match(url, match, pattern)) return fail(HttpError::invalid_url, "not an http(s) URL: " + url);
  ParsedUrl parsed;
  parsed.tls = match[1] == "https";
  parsed.host = match[2];
  if (parsed.host.front() == '[') parsed.host = parsed.host.substr(1, parsed.host.size() - 2);
  parsed.port = match[3].matched ? match[3].str() : (parsed.tls ? "443" : "80");
  parsed.target = match[4].matched ? match[4].str() : "/";
  if (!parsed.tls && parsed.host != "127.0.0.1" && parsed.host != "::1" && parsed.host != "localhost") {
    return fail(HttpError::invalid_url, "plain HTTP is allowed to loopback only: " + url);
  }
  return parsed;
}

template <typename Stream>
Result<HttpResponse, HttpError> exchange(Stream& stream, const ParsedUrl& url, const HttpRequest& request) {
  beast_http::request<beast_http::string_body> message{beast_http::string_to_verb(request.method), url.target, 11};
  message.set(beast_http::field::host, url.host + ":" + url.port);
  message.set(beast_http::field::user_agent, "licensectl");
  message.set(beast_http::field::accept, "application/json, application/problem+json");
  for (const auto& [name, value] : request.headers) message.set(name, value);
  if (!request.body.empty()) {
    message.set(beast_http::field::content_type, request.content_type);
    message.body() = request.body;
  }
  message.prepare_payload();

  beast::error_code error;
  beast_http::write(stream, message, error);
  if (error) return fail(HttpError::io, "sending the request failed: " + error.message());

  beast::flat_buffer buffer;
  beast_http::response_parser<beast_http::string_body> parser;
  parser.body_limit(16 * 1024 * 1024);
  beast_http::read(stream, buffer, parser, error);
  if (error) return fail(HttpError::io, "reading the response failed: " + error.message());

  HttpResponse response;
  response.status = parser.get().result_int();
  for (const auto& field : parser.get()) {
    std::string name(field.name_string());
    std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
    response.headers[name] = std::string(field.value());
  }
  response.body = std::move(parser.get().body());
  return response;
}

}  // namespace

Result<HttpResponse, HttpError> send(const HttpRequest& request, const HttpOptions& options) {
  auto url = parse_url(request.url);
  if (!url) return std::unexpected(url.error());

  asio::io_context io;
  asio::ip::tcp::resolver resolver(io);
  beast::error_code error;
  const auto endpoints = resolver.resolve(url->host, url->port, error);
  if (error) return fail(HttpError::connect, "cannot resolve " + url->host + ": " + error.message());

  if (!url->tls) {
    beast::tcp_stream stream(io);
    stream.expires_after(options.timeout);
    stream.connect(endpoints, error);
    if (error) return fail(HttpError::connect, "cannot connect to " + request.url + ": " + error.message());
    auto result = exchange(stream, *url, request);
    stream.socket().shutdown(asio::ip::tcp::socket::shutdown_both, error);
    return result;
  }

  asio::ssl::context tls(asio::ssl::context::tls_client);
  tls.set_options(asio::ssl::context::no_sslv2 | asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 |
                  asio::ssl::context::no_tlsv1_1);
  tls.set_verify_mode(asio::ssl::verify_peer);
  if (options.ca_bundle_file.empty()) {
    tls.set_default_verify_paths();
  } else {
    tls.load_verify_file(options.ca_bundle_file, error);
    if (error) return fail(HttpError::connect, "cannot read the CA bundle " + options.ca_bundle_file + ": " + error.message());
  }
  tls.set_verify_callback(asio::ssl::host_name_verification(url->host));
  if (!options.client_certificate_file.empty()) {
    tls.use_certificate_chain_file(options.client_certificate_file, error);
    if (!error) tls.use_private_key_file(options.client_key_file, asio::ssl::context::pem, error);
    if (error) {
      ERR_clear_error();
      return fail(HttpError::connect, "cannot load the client certificate " + options.client_certificate_file + ": " +
                                          error.message());
    }
  }

  beast::ssl_stream<beast::tcp_stream> stream(io, tls);
  const bool is_address = url->host.find_first_not_of("0123456789.:") == std::string::npos;
  if (!is_address) SSL_set_tlsext_host_name(stream.native_handle(), url->host.c_str());
  beast::get_lowest_layer(stream).expires_after(options.timeout);
  beast::get_lowest_layer(stream).connect(endpoints, error);
  if (error) return fail(HttpError::connect, "cannot connect to " + request.url + ": " + error.message());
  stream.handshake(asio::ssl::stream_base::client, error);
  if (error) {
    ERR_clear_error();
    return fail(HttpError::connect, "TLS handshake with " + url->host + " failed: " + error.message());
  }
  if (!options.pinned_certificate_der.empty()) {
    // The peer's leaf must be the pinned certificate byte for byte; a chain that merely
    // contains it further up does not count. Nothing is sent before this check.
    X509* peer = SSL_get0_peer_certificate(stream.native_handle());
    std::vector<std::uint8_t> peer_der;
    if (peer != nullptr) {
      const int size = i2d_X509(peer, nullptr);
      if (size > 0) {
        peer_der.resize(static_cast<std::size_t>(size));
        unsigned char* out = peer_der.data();
        i2d_X509(peer, &out);
      }
    }
    if (peer_der != options.pinned_certificate_der) {
      stream.shutdown(error);
      ERR_clear_error();
      return fail(HttpError::certificate_mismatch,
                  url->host + " presented a certificate other than the attested one; nothing was sent");
    }
  }
  auto result = exchange(stream, *url, request);
  stream.shutdown(error);  // A peer that closes without close_notify is not an error here.
  ERR_clear_error();
  return result;
}

}  // namespace licensing::client
