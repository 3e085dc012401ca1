// A stand-in for the enclave program in licensing-core's tests. It reads the environment
// of docs/enclaves.md and fetches its certificate with the bootstrap credential: a P-256
// key made here, a CSR sent to LICENSING_ENCLAVE_CSR_URL. Then it serves GET /healthz
// over TLS with that certificate until SIGTERM.
#include <utility>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "client/https_client.hpp"
#include "crypto/ca.hpp"
#include "crypto/openssl.hpp"
#include "http/server.hpp"

namespace {

namespace fs = std::filesystem;

std::string environment(const char* name) {
  const char* value = std::getenv(name);
  if (value == nullptr) throw std::runtime_error(std::string("missing ") + name);
  return value;
}

std::string read_text(const fs::path& path) {
  std::ifstream in(path);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

// Sends a CSR with the bootstrap credential and stores the key and chain in `directory`.
void fetch_certificate(const fs::path& directory) {
  const fs::path bootstrap_file = environment("LICENSING_ENCLAVE_BOOTSTRAP_FILE");
  std::string credential = read_text(bootstrap_file);
  auto key_and_csr = licensing::crypto::generate_key_and_csr("fake-enclave").value();

  licensing::client::HttpRequest request;
  request.method = "POST";
  request.url = environment("LICENSING_ENCLAVE_CSR_URL");
  request.headers.emplace_back("Authorization", "Bootstrap " + credential);
  request.body = nlohmann::json{{"enclave_id", environment("LICENSING_ENCLAVE_ID")}, {"csr_pem", key_and_csr.csr_pem}}.dump();
  licensing::client::HttpOptions options;
  options.ca_bundle_file = environment("LICENSING_ENCLAVE_CA_BUNDLE");
  options.timeout = std::chrono::seconds(10);
  auto response = licensing::client::send(request, options);
  if (!response || response->status != 200) throw std::runtime_error("the CSR request failed");

  const auto body = nlohmann::json::parse(response->body);
  licensing::crypto::ossl::write_file_atomically(directory / "key.pem", key_and_csr.private_key_pem, 0600).value();
  licensing::crypto::ossl::write_file_atomically(directory / "chain.pem", body.at("certificate_chain_pem").get<std::string>(),
                                                 0600)
      .value();
  fs::remove(bootstrap_file);
}

}  // namespace

int main() {
  try {
    const fs::path directory = environment("LICENSING_ENCLAVE_DIR");
    if (!fs::exists(directory / "chain.pem")) fetch_certificate(directory);

    const std::string listen = environment("LICENSING_ENCLAVE_LISTEN");
    const auto colon = listen.rfind(':');
    licensing::http::ServerConfig config;
    config.address = listen.substr(0, colon);
    config.port = static_cast<std::uint16_t>(std::stoi(listen.substr(colon + 1)));
    config.tls = licensing::http::make_server_tls_context((directory / "chain.pem").string(), (directory / "key.pem").string());

    auto router = std::make_shared<licensing::http::Router>();
    router->add(boost::beast::http::verb::get, "/healthz",
                [](licensing::http::Request&) -> boost::asio::awaitable<licensing::http::Response> {
                  co_return licensing::http::Response{200, "application/json", {}, R"({"status":"ok"})", false};
                });
    boost::asio::io_context io;
    licensing::http::Server server(io, config, router);
    server.start();
    boost::asio::signal_set signals(io, SIGTERM, SIGINT);
    signals.async_wait([&](const boost::system::error_code&, int) { server.stop(); io.stop(); });
    std::cout << "fake enclave serving on " << listen << std::endl;
    io.run();
    return 0;
  } catch (const std::exception& failure) {
    std::cerr << "fake enclave: " << failure.what() << std::endl;
    return 1;
  }
}
