#include "core/kubernetes/client.hpp"

#include <utility>  // Boost 1.74's awaitable.hpp needs it first with GCC 12.

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <fmt/core.h>
#include <openssl/err.h>
#include <yaml-cpp/yaml.h>

#include <cstdlib>
#include <fstream>
#include <random>
#include <regex>
#include <sstream>
#include <thread>

#include "common/logging.hpp"

namespace licensing::core::kubernetes {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace beast_http = beast::http;

// Lists and gets of this namespace stay far below this size, so a larger body is a fault.
constexpr std::uint64_t kMaxResponseBytes = 64 * 1024 * 1024;
// A single watch event line longer than this is a fault, not an object we created.
constexpr std::size_t kMaxWatchLineBytes = 4 * 1024 * 1024;

Result<std::string, ApiError> read_text_file(const std::filesystem::path& file, std::string_view what) {
  std::ifstream input(file, std::ios::binary);
  if (!input) return fail(ApiError::config, fmt::format("cannot read the {} file {}", what, file.string()));
  std::ostringstream text;
  text << input.rdbuf();
  return text.str();
}

// Decodes standard base64 (kubeconfig *-data fields).
Result<std::string, ApiError> decode_base64(std::string_view text, std::string_view field) {
  std::string compact;
  for (char c : text) {
    if (c != '\n' && c != '\r' && c != ' ') compact.push_back(c);
  }
  if (compact.size() % 4 != 0) return fail(ApiError::config, fmt::format("{} is not valid base64", field));
  std::string decoded(compact.size() / 4 * 3, '\0');
  const int length = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(decoded.data()),
                                     reinterpret_cast<const unsigned char*>(compact.data()),
                                     static_cast<int>(compact.size()));
  if (length < 0) return fail(ApiError::config, fmt::format("{} is not valid base64", field));
  std::size_t padding = 0;
  if (!compact.empty() && compact.back() == '=') ++padding;
  if (compact.size() > 1 && compact[compact.size() - 2] == '=') ++padding;
  decoded.resize(static_cast<std::size_t>(length) - padding);
  return decoded;
}

std::filesystem::path resolve_path(const std::filesystem::path& base, const std::string& file) {
  const std::filesystem::path path(file);
  return path.is_absolute() ? path : base / path;
}

// Reads `<field>-data` (base64) or `<field>` (a file path) of a kubeconfig map.
Result<std::string, ApiError> read_data_or_file(const YAML::Node& node, const std::string& field,
                                                const std::filesystem::path& base) {
  if (node[field + "-data"]) return decode_base64(node[field + "-data"].as<std::string>(), field + "-data");
  if (node[field]) return read_text_file(resolve_path(base, node[field].as<std::string>()), field);
  return std::string();
}

// Finds the entry named `name` in a kubeconfig list (clusters, users, contexts).
YAML::Node find_named(const YAML::Node& list, const std::string& name, const std::string& key) {
  if (!list || !list.IsSequence()) return YAML::Node();
  for (const auto& entry : list) {
    if (entry["name"] && entry["name"].as<std::string>() == name) return entry[key];
  }
  return YAML::Node();
}

// Parses https://host[:port] into the connection target.
Result<std::pair<std::string, std::string>, ApiError> parse_server(const std::string& server) {
  static const std::regex pattern(R"(^https://(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(?::([0-9]{1,5}))?/?$)");
  std::smatch match;
  if (!std::regex_match(server, match, pattern)) {
    return fail(ApiError::config, fmt::format("the API server '{}' must be https://host[:port]", server));
  }
  std::string host = match[1];
  if (host.front() == '[') host = host.substr(1, host.size() - 2);
  return std::pair{host, match[2].matched ? match[2].str() : std::string("443")};
}

bool is_retryable(unsigned status) { return status == 429 || (status >= 500 && status <= 504); }

// Runs one asynchronous operation to completion on `io` and returns its error. The
// stream's expiry turns a stalled operation into beast::error::timeout.
template <typename Start>
beast::error_code run_operation(asio::io_context& io, Start&& start) {
  beast::error_code result;
  start([&result](beast::error_code error, auto&&...) { result = error; });
  io.restart();
  io.run();
  return result;
}

using TlsStream = beast::ssl_stream<beast::tcp_stream>;

// An open TLS connection to the API server.
struct Connection {
  asio::io_context io;
  asio::ssl::context tls{asio::ssl::context::tls_client};
  std::unique_ptr<TlsStream> stream;
};

Result<void, ApiError> open_connection(Connection& connection, const ClusterConfig& config, const std::string& host,
                                       const std::string& port, std::chrono::steady_clock::time_point deadline) {
  beast::error_code error;
  auto& tls = connection.tls;
  tls.set_options(asio::ssl::context::no_sslv2 | asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 |
                  asio::ssl::context::no_tlsv1_1);
  tls.set_verify_mode(asio::ssl::verify_peer);
  tls.add_certificate_authority(asio::buffer(config.ca_pem), error);
  if (error) {
    ERR_clear_error();
    return fail(ApiError::config, "the cluster CA is not valid PEM: " + error.message());
  }
  tls.set_verify_callback(asio::ssl::host_name_verification(host));
  if (!config.client_certificate_pem.empty() && config.client_key_pem) {
    tls.use_certificate_chain(asio::buffer(config.client_certificate_pem), error);
    if (!error) {
      tls.use_private_key(asio::buffer(config.client_key_pem->data(), config.client_key_pem->size()),
                          asio::ssl::context::pem, error);
    }
    if (error) {
      ERR_clear_error();
      return fail(ApiError::config, "the client certificate or key is not valid PEM: " + error.message());
    }
  }

  asio::ip::tcp::resolver resolver(connection.io);
  const auto endpoints = resolver.resolve(host, port, error);
  if (error) return fail(ApiError::connect, fmt::format("cannot resolve {}: {}", host, error.message()));

  connection.stream = std::make_unique<TlsStream>(connection.io, tls);
  auto& stream = *connection.stream;
  // SNI carries host names only, never IP addresses (RFC 6066, section 3).
  beast::error_code not_address;
  asio::ip::make_address(host, not_address);
  if (not_address) SSL_set_tlsext_host_name(stream.native_handle(), host.c_str());

  beast::get_lowest_layer(stream).expires_at(deadline);
  error = run_operation(connection.io, [&](auto handler) {
    beast::get_lowest_layer(stream).async_connect(endpoints, std::move(handler));
  });
  if (error) return fail(ApiError::connect, fmt::format("cannot connect to {}:{}: {}", host, port, error.message()));
  error = run_operation(connection.io, [&](auto handler) {
    stream.async_handshake(asio::ssl::stream_base::client, std::move(handler));
  });
  if (error) {
    ERR_clear_error();
    return fail(ApiError::connect, fmt::format("TLS handshake with {} failed: {}", host, error.message()));
  }
  return {};
}

Result<void, ApiError> write_request(Connection& connection, const std::string& host, const std::string& port,
                                     std::string_view method, const std::string& path, const std::string& body,
                                     const std::string& authorization) {
  beast_http::request<beast_http::string_body> message{
      beast_http::string_to_verb(beast::string_view(method.data(), method.size())), path, 11};
  message.set(beast_http::field::host, host + ":" + port);
  message.set(beast_http::field::user_agent, "licensing-core");
  message.set(beast_http::field::accept, "application/json");
  if (!authorization.empty()) message.set(beast_http::field::authorization, authorization);
  if (!body.empty()) {
    message.set(beast_http::field::content_type, "application/json");
    message.body() = body;
  }
  message.prepare_payload();
  const beast::error_code error = run_operation(connection.io, [&](auto handler) {
    beast_http::async_write(*connection.stream, message, std::move(handler));
  });
  if (error) return fail(ApiError::io, fmt::format("sending {} {} failed: {}", method, path, error.message()));
  return {};
}

void close_connection(Connection& connection) {
  if (!connection.stream) return;
  beast::error_code ignored;
  beast::get_lowest_layer(*connection.stream).socket().shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
  beast::get_lowest_layer(*connection.stream).close();
  ERR_clear_error();
}

}  // namespace

std::string_view to_string(ApiError code) {
  switch (code) {
    case ApiError::config: return "config";
    case ApiError::connect: return "connect";
    case ApiError::io: return "io";
    case ApiError::status: return "status";
    case ApiError::invalid: return "invalid";
    case ApiError::timed_out: return "timed_out";
  }
  return "unknown";
}

std::string url_encode(std::string_view value) {
  std::string encoded;
  for (unsigned char c : value) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      encoded.push_back(static_cast<char>(c));
    } else {
      encoded += fmt::format("%{:02X}", c);
    }
  }
  return encoded;
}

Result<ClusterConfig, ApiError> load_kubeconfig(const std::filesystem::path& file) {
  YAML::Node root;
  try {
    root = YAML::LoadFile(file.string());
  } catch (const YAML::Exception& error) {
    return fail(ApiError::config, fmt::format("cannot parse the kubeconfig {}: {}", file.string(), error.what()));
  }
  const std::filesystem::path base = file.parent_path();

  try {
    if (!root["current-context"]) return fail(ApiError::config, "the kubeconfig has no current-context");
    const auto context_name = root["current-context"].as<std::string>();
    const YAML::Node context = find_named(root["contexts"], context_name, "context");
    if (!context) return fail(ApiError::config, fmt::format("the kubeconfig has no context '{}'", context_name));
    const YAML::Node cluster = find_named(root["clusters"], context["cluster"].as<std::string>(""), "cluster");
    const YAML::Node user = find_named(root["users"], context["user"].as<std::string>(""), "user");
    if (!cluster) return fail(ApiError::config, "the kubeconfig context names no known cluster");

    ClusterConfig config;
    config.namespace_name = context["namespace"].as<std::string>("");
    config.server = cluster["server"].as<std::string>("");
    if (auto target = parse_server(config.server); !target) return std::unexpected(target.error());
    if (cluster["insecure-skip-tls-verify"] && cluster["insecure-skip-tls-verify"].as<bool>(false)) {
      return fail(ApiError::config, "insecure-skip-tls-verify is not supported: set certificate-authority(-data)");
    }
    auto ca = read_data_or_file(cluster, "certificate-authority", base);
    if (!ca) return std::unexpected(ca.error());
    if (ca->empty()) return fail(ApiError::config, "the kubeconfig cluster has no certificate-authority(-data)");
    config.ca_pem = std::move(*ca);

    if (user) {
      if (user["exec"] || user["auth-provider"]) {
        return fail(ApiError::config, "exec and auth-provider credentials are not supported: use a token or a client certificate");
      }
      if (user["token"]) config.token = SecretBytes(std::string_view(user["token"].as<std::string>()));
      if (user["tokenFile"]) config.token_file = resolve_path(base, user["tokenFile"].as<std::string>());
      auto certificate = read_data_or_file(user, "client-certificate", base);
      if (!certificate) return std::unexpected(certificate.error());
      auto key = read_data_or_file(user, "client-key", base);
      if (!key) return std::unexpected(key.error());
      if (certificate->empty() != key->empty()) {
        return fail(ApiError::config, "the kubeconfig user needs both client-certificate and client-key, or neither");
      }
      config.client_certificate_pem = std::move(*certificate);
      if (!key->empty()) config.client_key_pem = SecretBytes(std::string_view(*key));
      OPENSSL_cleanse(key->data(), key->size());
    }
    return config;
  } catch (const YAML::Exception& error) {
    return fail(ApiError::config, fmt::format("invalid kubeconfig {}: {}", file.string(), error.what()));
  }
}

Result<ClusterConfig, ApiError> in_cluster_config(const std::filesystem::path& service_account_directory) {
  const char* host = std::getenv("KUBERNETES_SERVICE_HOST");
  const char* port = std::getenv("KUBERNETES_SERVICE_PORT");
  if (host == nullptr || port == nullptr || *host == '\0' || *port == '\0') {
    return fail(ApiError::config,
                "KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set: run in a pod or pass --kubeconfig");
  }
  const std::string host_text(host);
  const bool is_ipv6 = host_text.find(':') != std::string::npos;
  ClusterConfig config;
  config.server = fmt::format("https://{}:{}", is_ipv6 ? "[" + host_text + "]" : host_text, port);
  auto ca = read_text_file(service_account_directory / "ca.crt", "service account CA");
  if (!ca) return std::unexpected(ca.error());
  config.ca_pem = std::move(*ca);
  config.token_file = service_account_directory / "token";
  if (!std::filesystem::exists(config.token_file)) {
    return fail(ApiError::config, fmt::format("the service account token {} does not exist", config.token_file.string()));
  }
  return config;
}

Client::Client(ClusterConfig config, std::chrono::milliseconds request_timeout, RetryPolicy retry)
    : config_(std::move(config)), request_timeout_(request_timeout), retry_(retry) {
  auto target = parse_server(config_.server);
  if (target) target_ = {target->first, target->second};
}

Result<std::string, ApiError> Client::authorization() const {
  if (!config_.token_file.empty()) {
    auto token = read_text_file(config_.token_file, "token");
    if (!token) return std::unexpected(token.error());
    while (!token->empty() && (token->back() == '\n' || token->back() == '\r')) token->pop_back();
    if (token->empty()) return fail(ApiError::config, fmt::format("the token file {} is empty", config_.token_file.string()));
    return "Bearer " + *token;
  }
  if (config_.token) return "Bearer " + std::string(config_.token->text());
  return std::string();
}

Result<ApiResponse, ApiError> Client::send_once(std::string_view method, const std::string& path, const std::string& body) {
  if (target_.host.empty()) return fail(ApiError::config, fmt::format("the API server '{}' is not https://host[:port]", config_.server));
  auto authorization_value = authorization();
  if (!authorization_value) return std::unexpected(authorization_value.error());

  Connection connection;
  const auto deadline = std::chrono::steady_clock::now() + request_timeout_;
  if (auto opened = open_connection(connection, config_, target_.host, target_.port, deadline); !opened) {
    return std::unexpected(opened.error());
  }
  auto written = write_request(connection, target_.host, target_.port, method, path, body, *authorization_value);
  OPENSSL_cleanse(authorization_value->data(), authorization_value->size());
  if (!written) return std::unexpected(written.error());

  beast::flat_buffer buffer;
  beast_http::response_parser<beast_http::string_body> parser;
  parser.body_limit(kMaxResponseBytes);
  const beast::error_code error = run_operation(connection.io, [&](auto handler) {
    beast_http::async_read(*connection.stream, buffer, parser, std::move(handler));
  });
  close_connection(connection);
  if (error) return fail(ApiError::io, fmt::format("reading the response to {} {} failed: {}", method, path, error.message()));

  ApiResponse response;
  response.status = parser.get().result_int();
  const std::string& text = parser.get().body();
  if (!text.empty()) response.body = nlohmann::json::parse(text, nullptr, false);
  if (response.body.is_discarded()) response.body = nullptr;
  return response;
}

Result<ApiResponse, ApiError> Client::request(std::string_view method, const std::string& path, const nlohmann::json& body) {
  const std::string text = body.is_null() ? std::string() : body.dump();
  std::chrono::milliseconds backoff = retry_.initial_backoff;
  thread_local std::minstd_rand jitter(std::random_device{}());

  for (int attempt = 1;; ++attempt) {
    auto response = send_once(method, path, text);
    std::string reason;
    if (!response) {
      if (response.error().code != ApiError::connect && response.error().code != ApiError::io) return response;
      reason = response.error().detail;
    } else if (is_retryable(response->status)) {
      reason = fmt::format("status {}", response->status);
    } else {
      return response;
    }

    if (attempt >= retry_.max_attempts) {
      logging::warn("kubernetes_request_failed", {{"method", method}, {"path", path}, {"attempts", attempt}, {"reason", reason}});
      if (!response) return response;
      return fail(ApiError::status, fmt::format("{} {} returned status {} after {} attempts", method, path,
                                                response->status, attempt));
    }
    // Full jitter keeps many clients from retrying in lockstep.
    const auto wait = std::chrono::milliseconds(
        std::uniform_int_distribution<long>(backoff.count() / 2, backoff.count())(jitter));
    logging::info("kubernetes_request_retry",
                  {{"method", method}, {"path", path}, {"attempt", attempt}, {"reason", reason}, {"retry_in_ms", wait.count()}});
    std::this_thread::sleep_for(wait);
    backoff = std::min(backoff * 2, retry_.max_backoff);
  }
}

Result<bool, ApiError> Client::watch(const std::string& path, std::chrono::steady_clock::time_point deadline,
                                     const std::function<WatchStep(const WatchEvent&)>& on_event) {
  if (target_.host.empty()) return fail(ApiError::config, fmt::format("the API server '{}' is not https://host[:port]", config_.server));
  auto authorization_value = authorization();
  if (!authorization_value) return std::unexpected(authorization_value.error());

  Connection connection;
  const auto connect_deadline = std::min(deadline, std::chrono::steady_clock::now() + request_timeout_);
  if (auto opened = open_connection(connection, config_, target_.host, target_.port, connect_deadline); !opened) {
    return std::unexpected(opened.error());
  }
  auto written = write_request(connection, target_.host, target_.port, "GET", path, {}, *authorization_value);
  OPENSSL_cleanse(authorization_value->data(), authorization_value->size());
  if (!written) return std::unexpected(written.error());

  beast::get_lowest_layer(*connection.stream).expires_at(deadline);
  beast::flat_buffer buffer;
  beast_http::response_parser<beast_http::string_body> parser;
  parser.body_limit(boost::none);
  beast::error_code error = run_operation(connection.io, [&](auto handler) {
    beast_http::async_read_header(*connection.stream, buffer, parser, std::move(handler));
  });
  if (error == beast::error::timeout) return fail(ApiError::timed_out, "the watch " + path + " timed out");
  if (error) return fail(ApiError::io, fmt::format("opening the watch {} failed: {}", path, error.message()));

  const unsigned status = parser.get().result_int();
  if (status != 200) {
    close_connection(connection);
    return fail(ApiError::status, fmt::format("{} for the watch {}", status, path));
  }

  // The body is read in pieces as it arrives. Complete lines are taken from the front of
  // the body string; the string body appends at its current end, so this is safe.
  while (!parser.is_done()) {
    error = run_operation(connection.io, [&](auto handler) {
      beast_http::async_read_some(*connection.stream, buffer, parser, std::move(handler));
    });
    std::string& pending = parser.get().body();
    std::size_t newline;
    while ((newline = pending.find('\n')) != std::string::npos) {
      const std::string line = pending.substr(0, newline);
      pending.erase(0, newline + 1);
      if (line.empty()) continue;
      auto event = nlohmann::json::parse(line, nullptr, false);
      if (event.is_discarded() || !event.is_object() || !event.contains("type")) {
        close_connection(connection);
        return fail(ApiError::invalid, "the watch " + path + " sent a line that is not a JSON event");
      }
      WatchEvent parsed{event.value("type", ""), event.value("object", nlohmann::json::object())};
      if (on_event(parsed) == WatchStep::stop) {
        close_connection(connection);
        return true;
      }
    }
    if (pending.size() > kMaxWatchLineBytes) {
      close_connection(connection);
      return fail(ApiError::invalid, "the watch " + path + " sent a line longer than 4 MiB");
    }
    if (error == beast::error::timeout) return fail(ApiError::timed_out, "the watch " + path + " timed out");
    if (error == beast_http::error::end_of_stream || error == asio::error::eof ||
        error == asio::ssl::error::stream_truncated || error == beast_http::error::partial_message) {
      break;
    }
    if (error) {
      close_connection(connection);
      return fail(ApiError::io, fmt::format("reading the watch {} failed: {}", path, error.message()));
    }
  }
  close_connection(connection);
  return false;
}

}  // namespace licensing::core::kubernetes
