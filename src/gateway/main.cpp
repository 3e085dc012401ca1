// licensing-gateway: the public REST API. It has database credentials only; tokens are
// signed and verified by licensing-core, which it reaches over gRPC.

#include <utility>  // Boost 1.74's awaitable.hpp needs it first with GCC 12.

#include <CLI/CLI.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <fmt/format.h>

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <thread>
#include <vector>

#include "common/logging.hpp"
#include "crypto/ca.hpp"
#include "gateway/accounts.hpp"
#include "gateway/core_client.hpp"
#include "gateway/enclaves.hpp"
#include "gateway/metrics.hpp"
#include "gateway/rate_limiter.hpp"
#include "gateway/worker_pool.hpp"
#include "http/server.hpp"
#include "store/store.hpp"

namespace {

namespace fs = std::filesystem;
using licensing::logging::error;
using licensing::logging::info;

struct GatewayOptions {
  std::string address = "127.0.0.1";
  std::uint16_t port = 8443;
  std::string port_file;
  bool plain_http = false;
  std::string tls_certificate_file;
  std::string tls_key_file;
  std::string tls_from_core_dir;
  std::vector<std::string> tls_dns_names{"localhost"};
  std::vector<std::string> tls_ip_addresses{"127.0.0.1", "::1"};
  licensing::gateway::CoreConnection core;
  std::string database_url;
  unsigned io_threads = 2;
  unsigned hashing_threads = 0;
  std::size_t hashing_queue = 64;
  std::uint64_t argon2_ops = 2;
  std::size_t argon2_memory_kib = 64 * 1024;
  std::size_t user_failure_limit = 5;
  std::size_t address_failure_limit = 50;
  std::size_t signup_limit = 20;
  long failure_window_seconds = 15 * 60;
  std::size_t body_limit = 16 * 1024;
  long header_timeout_seconds = 10;
  std::string log_level = "info";
};

// Writes `content` to `path` with mode 0600, replacing the file atomically.
void write_private_file(const fs::path& path, const std::string& content) {
  const fs::path temporary = path.string() + ".tmp";
  fs::remove(temporary);
  {
    std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
    if (!out) throw std::runtime_error("cannot write " + temporary.string());
  }
  fs::permissions(temporary, fs::perms::owner_read | fs::perms::owner_write, fs::perm_options::replace);
  std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
  out << content;
  out.close();
  if (!out) throw std::runtime_error("cannot write " + temporary.string());
  fs::rename(temporary, path);
}

// Makes a key pair here and has the core's CA sign it: the gateway's private key never
// leaves its directory.
void issue_certificate_from_core(GatewayOptions& options, licensing::gateway::CoreClient& core) {
  const fs::path directory = options.tls_from_core_dir;
  fs::create_directories(directory);
  fs::permissions(directory, fs::perms::owner_all, fs::perm_options::replace);

  auto key_and_csr = licensing::crypto::generate_key_and_csr(options.tls_dns_names.front());
  if (!key_and_csr) throw std::runtime_error("cannot generate the gateway key: " + key_and_csr.error().detail);
  // NOTE: the certificate is issued at each start and not renewed while the gateway runs;
  // restart the gateway within its 90-day lifetime.
  auto issued = core.issue_server_certificate(key_and_csr->csr_pem, options.tls_dns_names, options.tls_ip_addresses,
                                              std::chrono::hours(24 * 90));
  if (!issued) throw std::runtime_error("the core did not issue the gateway certificate: " + issued.error().detail);
  auto root = core.ca_root_pem();
  if (!root) throw std::runtime_error("cannot read the CA bundle from the core: " + root.error().detail);

  write_private_file(directory / "gateway.key", key_and_csr->private_key_pem);
  write_private_file(directory / "gateway-chain.pem", issued->chain_pem());
  write_private_file(directory / "ca.pem", *root);
  fs::permissions(directory / "ca.pem", fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read |
                                            fs::perms::others_read,
                  fs::perm_options::replace);
  options.tls_certificate_file = (directory / "gateway-chain.pem").string();
  options.tls_key_file = (directory / "gateway.key").string();
}

licensing::http::Response text_response(unsigned status, std::string content_type, std::string body) {
  licensing::http::Response response;
  response.status = status;
  response.content_type = std::move(content_type);
  response.body = std::move(body);
  return response;
}

int run(GatewayOptions options) {
  if (options.database_url.empty()) {
    if (const char* url = std::getenv("LICENSING_DATABASE_URL")) options.database_url = url;
  }
  if (options.database_url.empty()) throw std::runtime_error("no database: pass --database or set LICENSING_DATABASE_URL");

  auto opened = licensing::store::open_store(options.database_url);
  if (!opened) throw std::runtime_error("cannot open the database: " + opened.error().detail);
  std::unique_ptr<licensing::store::Store> store = std::move(*opened);
  if (auto migrated = store->migrate(); !migrated) {
    throw std::runtime_error("database migration failed: " + migrated.error().detail);
  }

  licensing::gateway::CoreClient core(options.core);
  if (!options.plain_http && options.tls_certificate_file.empty()) {
    if (options.tls_from_core_dir.empty()) {
      throw std::runtime_error("TLS needs --tls-cert and --tls-key, or --tls-from-core DIR; --plain-http serves loopback only");
    }
    issue_certificate_from_core(options, core);
  }

  licensing::gateway::Metrics metrics;
  licensing::gateway::WorkerPool hashing_pool(
      options.hashing_threads > 0 ? options.hashing_threads : std::max(1u, std::thread::hardware_concurrency()),
      options.hashing_queue);
  const auto window = std::chrono::seconds(options.failure_window_seconds);
  licensing::gateway::RateLimiter failures_per_user({options.user_failure_limit, window, 100000});
  licensing::gateway::RateLimiter failures_per_address({options.address_failure_limit, window, 100000});
  licensing::gateway::RateLimiter signups_per_address({options.signup_limit, std::chrono::hours(1), 100000});

  licensing::gateway::AccountsConfig accounts_config;
  accounts_config.argon2.ops_limit = options.argon2_ops;
  accounts_config.argon2.mem_limit_bytes = options.argon2_memory_kib * 1024;
  licensing::gateway::Authenticator authenticator(core, *store, metrics);
  licensing::gateway::AccountsApi accounts(
      accounts_config, {*store, core, authenticator, hashing_pool, failures_per_user, failures_per_address, signups_per_address, metrics,
                        [] { return std::chrono::system_clock::now(); }});

  licensing::gateway::EnclavesApi enclaves({core, authenticator, metrics});

  auto router = std::make_shared<licensing::http::Router>();
  accounts.register_routes(*router);
  enclaves.register_routes(*router);
  using boost::beast::http::verb;
  router->add(verb::get, "/healthz", [](licensing::http::Request&) -> boost::asio::awaitable<licensing::http::Response> {
    co_return text_response(200, "application/json", R"({"status":"ok"})");
  });
  auto* store_pointer = store.get();
  router->add(verb::get, "/readyz",
              [store_pointer, &core](licensing::http::Request&) -> boost::asio::awaitable<licensing::http::Response> {
                const bool database = store_pointer->ping();
                const bool core_ready = core.jwks_json().has_value();
                const nlohmann::json body = {{"status", database && core_ready ? "ready" : "not ready"},
                                             {"checks", {{"database", database}, {"core", core_ready}}}};
                co_return text_response(database && core_ready ? 200 : 503, "application/json", body.dump());
              });
  router->add(verb::get, "/metrics",
              [&metrics](licensing::http::Request&) -> boost::asio::awaitable<licensing::http::Response> {
                co_return text_response(200, "text/plain; version=0.0.4; charset=utf-8", metrics.render());
              });
  metrics.describe("licensing_http_requests_total", "HTTP responses by route, method and status");

  boost::asio::io_context io;
  licensing::http::ServerConfig server_config;
  server_config.address = options.address;
  server_config.port = options.port;
  server_config.limits.body_bytes = options.body_limit;
  server_config.limits.header_timeout = std::chrono::seconds(options.header_timeout_seconds);
  if (!options.plain_http) {
    server_config.tls = licensing::http::make_server_tls_context(options.tls_certificate_file, options.tls_key_file);
  }
  licensing::http::Server server(io, server_config, router, [&metrics](const licensing::http::RequestRecord& record) {
    metrics.increment("licensing_http_requests_total",
                      {{"route", record.route}, {"method", record.method}, {"status", std::to_string(record.status)}});
    metrics.observe("licensing_http_request_duration_seconds", {{"route", record.route}},
                    static_cast<double>(record.duration.count()) / 1e6);
  });
  server.start();

  const std::string url = fmt::format("{}://{}:{}", options.plain_http ? "http" : "https",
                                      options.address.find(':') != std::string::npos ? "[" + options.address + "]" : options.address,
                                      server.port());
  if (!options.port_file.empty()) write_private_file(options.port_file, std::to_string(server.port()) + "\n");
  info("gateway_started", {{"url", url}, {"core", options.core.target}, {"pid", getpid()}});

  boost::asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](const boost::system::error_code&, int) {
    info("gateway_stopping", {});
    server.stop();
    io.stop();
  });

  std::vector<std::thread> threads;
  for (unsigned i = 1; i < std::max(1u, options.io_threads); ++i) threads.emplace_back([&io] { io.run(); });
  io.run();
  for (auto& thread : threads) thread.join();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  GatewayOptions options;
  CLI::App app{"licensing-gateway: the REST API of the licensing server"};
  app.add_option("--address", options.address, "Address to listen on")->capture_default_str();
  app.add_option("--port", options.port, "TCP port; 0 picks a free one")->capture_default_str();
  app.add_option("--port-file", options.port_file, "Write the bound port to this file once listening");
  app.add_flag("--plain-http", options.plain_http, "Serve HTTP without TLS (refused unless the address is loopback)");
  app.add_option("--tls-cert", options.tls_certificate_file, "Server certificate chain (PEM)");
  app.add_option("--tls-key", options.tls_key_file, "Server private key (PEM)");
  app.add_option("--tls-from-core", options.tls_from_core_dir,
                 "Generate a key in this directory and have licensing-core's CA certify it");
  app.add_option("--tls-dns-name", options.tls_dns_names, "DNS names for --tls-from-core")->capture_default_str();
  app.add_option("--tls-ip", options.tls_ip_addresses, "IP addresses for --tls-from-core")->capture_default_str();
  app.add_option("--core", options.core.target, "licensing-core address: unix:/absolute/path or host:port")->required();
  app.add_option("--core-tls-ca", options.core.tls_ca_file, "CA bundle for a TCP core address");
  app.add_option("--core-tls-cert", options.core.tls_certificate_file, "Client certificate for a TCP core address");
  app.add_option("--core-tls-key", options.core.tls_key_file, "Client key for a TCP core address");
  app.add_option("--database", options.database_url,
                 "sqlite:///absolute/path.db or postgresql://... (default: LICENSING_DATABASE_URL)");
  app.add_option("--io-threads", options.io_threads, "Threads serving HTTP")->check(CLI::Range(1u, 64u))->capture_default_str();
  app.add_option("--hashing-threads", options.hashing_threads, "Threads hashing passwords (default: one per core)")
      ->check(CLI::Range(0u, 256u));
  app.add_option("--hashing-queue", options.hashing_queue, "Password operations that may wait; more answer 503")
      ->check(CLI::Range(std::size_t{1}, std::size_t{100000}))
      ->capture_default_str();
  app.add_option("--argon2-ops", options.argon2_ops, "Argon2id passes (t)")->check(CLI::Range(1, 10))->capture_default_str();
  app.add_option("--argon2-memory-kib", options.argon2_memory_kib, "Argon2id memory in KiB (m)")
      ->check(CLI::Range(8 * 1024, 1024 * 1024))
      ->capture_default_str();
  app.add_option("--user-failure-limit", options.user_failure_limit, "Failed logins per account per window")
      ->check(CLI::Range(1, 1000))
      ->capture_default_str();
  app.add_option("--address-failure-limit", options.address_failure_limit, "Failed logins per client address per window")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();
  app.add_option("--signup-limit", options.signup_limit, "Signups per client address per hour")
      ->check(CLI::Range(1, 1000000))
      ->capture_default_str();
  app.add_option("--failure-window", options.failure_window_seconds, "Failed-login window in seconds")
      ->check(CLI::Range(1L, 86400L))
      ->capture_default_str();
  app.add_option("--body-limit", options.body_limit, "Largest request body in bytes; larger ones answer 413")
      ->check(CLI::Range(std::size_t{256}, std::size_t{1 << 20}))
      ->capture_default_str();
  app.add_option("--header-timeout", options.header_timeout_seconds,
                 "Seconds a client has to send a request's headers before the connection is closed")
      ->check(CLI::Range(1L, 300L))
      ->capture_default_str();
  app.add_option("--log-level", options.log_level, "trace, debug, info, warn or error")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error"}))
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  licensing::logging::init("gateway", options.log_level);
  try {
    return run(std::move(options));
  } catch (const std::exception& failure) {
    error("gateway_failed", {{"error", failure.what()}});
    std::cerr << "error: " << failure.what() << "\n";
    return 1;
  }
}
