#include "server_fixture.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/ssl.hpp>
#include <nlohmann/json.hpp>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include <array>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <string>

namespace licensing::http::testing {
namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
using tcp = net::ip::tcp;
using ErrorCode = boost::system::error_code;

struct ClientResult {
  bool finished = false;
  ErrorCode handshake;
  std::string protocol;  // e.g. "TLSv1.3", after a successful handshake
  std::string cipher;
  std::optional<unsigned> status;
  std::string body;
};

net::awaitable<void> run_client(net::ssl::context& context, std::uint16_t port, ClientResult& result) {
  beast::ssl_stream<beast::tcp_stream> stream(co_await net::this_coro::executor, context);
  auto& transport = beast::get_lowest_layer(stream);
  transport.expires_after(std::chrono::seconds(5));

  ErrorCode ec;
  co_await transport.async_connect(tcp::endpoint(net::ip::address_v4::loopback(), port), net::redirect_error(net::use_awaitable, ec));
  if (ec) {
    result.handshake = ec;
    result.finished = true;
    co_return;
  }

  stream.set_verify_mode(net::ssl::verify_peer);
  stream.set_verify_callback(net::ssl::host_name_verification("127.0.0.1"));
  co_await stream.async_handshake(net::ssl::stream_base::client, net::redirect_error(net::use_awaitable, ec));
  result.handshake = ec;
  if (ec) {
    result.finished = true;
    co_return;
  }
  result.protocol = SSL_get_version(stream.native_handle());
  result.cipher = SSL_get_cipher_name(stream.native_handle());

  beast_http::request<beast_http::empty_body> request{beast_http::verb::get, "/v1/enclaves/tls-1?nonce=n1", 11};
  request.set(beast_http::field::host, "127.0.0.1");
  co_await beast_http::async_write(stream, request, net::redirect_error(net::use_awaitable, ec));
  if (!ec) {
    beast::flat_buffer buffer;
    beast_http::response<beast_http::string_body> response;
    co_await beast_http::async_read(stream, buffer, response, net::redirect_error(net::use_awaitable, ec));
    if (!ec) {
      result.status = response.result_int();
      result.body = response.body();
    }
  }
  co_await stream.async_shutdown(net::redirect_error(net::use_awaitable, ec));
  result.finished = true;
}

// A TLS client context that trusts the test certificate and speaks only `version`.
std::unique_ptr<net::ssl::context> client_context(const std::filesystem::path& certificate, int version) {
  auto context = std::make_unique<net::ssl::context>(net::ssl::context::tls_client);
  context->load_verify_file(certificate.string());
  SSL_CTX* native = context->native_handle();
  SSL_CTX_set_min_proto_version(native, version);
  SSL_CTX_set_max_proto_version(native, version);
  return context;
}

class TlsServerTest : public ServerFixture {
 protected:
  // Creates a self-signed ECDSA P-256 certificate for IP 127.0.0.1 with the openssl command.
  static void SetUpTestSuite() {
    char pattern[] = "/tmp/http_tls_test.XXXXXX";
    ASSERT_NE(::mkdtemp(pattern), nullptr);
    directory_ = pattern;
    const std::string command = "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=127.0.0.1"
                                " -addext subjectAltName=IP:127.0.0.1 -keyout " +
                                (directory_ / "key.pem").string() + " -out " + certificate().string() + " 2>/dev/null";
    ASSERT_EQ(std::system(command.c_str()), 0) << command;
  }

  static void TearDownTestSuite() { std::filesystem::remove_all(directory_); }

  static std::filesystem::path certificate() { return directory_ / "cert.pem"; }

  void SetUp() override {
    ServerConfig config;
    config.limits = small_limits();
    config.tls = make_server_tls_context(certificate().string(), (directory_ / "key.pem").string());
    start_server(std::move(config));
  }

  // Runs one client exchange for at most ten seconds.
  ClientResult connect_with(net::ssl::context& context) {
    ClientResult result;
    net::io_context client_io;
    net::co_spawn(client_io, run_client(context, port(), result), net::detached);
    client_io.run_for(std::chrono::seconds(10));
    EXPECT_TRUE(result.finished) << "the TLS client did not finish within ten seconds";
    return result;
  }

  static inline std::filesystem::path directory_;
};

TEST_F(TlsServerTest, RoundTripOverTls13) {
  auto context = client_context(certificate(), TLS1_3_VERSION);

  const auto result = connect_with(*context);

  ASSERT_FALSE(result.handshake) << result.handshake.message();
  EXPECT_EQ(result.protocol, "TLSv1.3");
  ASSERT_TRUE(result.status);
  EXPECT_EQ(*result.status, 200u);
  const auto body = nlohmann::json::parse(result.body);
  EXPECT_EQ(body.at("id"), "tls-1");
  EXPECT_EQ(body.at("nonce"), "n1");
}

TEST_F(TlsServerTest, Tls12UsesEcdheAead) {
  auto context = client_context(certificate(), TLS1_2_VERSION);

  const auto result = connect_with(*context);

  ASSERT_FALSE(result.handshake) << result.handshake.message();
  EXPECT_EQ(result.protocol, "TLSv1.2");
  EXPECT_EQ(result.cipher.rfind("ECDHE-ECDSA-", 0), 0u) << result.cipher;
  const bool aead = result.cipher.find("GCM") != std::string::npos || result.cipher.find("CHACHA20") != std::string::npos;
  EXPECT_TRUE(aead) << result.cipher;
  ASSERT_TRUE(result.status);
  EXPECT_EQ(*result.status, 200u);
}

TEST_F(TlsServerTest, Tls12CbcOnlyClientIsRejected) {
  auto context = client_context(certificate(), TLS1_2_VERSION);
  ASSERT_EQ(SSL_CTX_set_cipher_list(context->native_handle(), "ECDHE-ECDSA-AES128-SHA256"), 1);

  const auto result = connect_with(*context);

  ASSERT_TRUE(result.handshake);
  EXPECT_EQ(ERR_GET_REASON(static_cast<unsigned long>(result.handshake.value())), SSL_R_SSLV3_ALERT_HANDSHAKE_FAILURE)
      << result.handshake.message();
  EXPECT_FALSE(result.status);
}

TEST_F(TlsServerTest, Tls11ClientIsRejected) {
  // Security level 0 lets this client offer TLS 1.1 at all, so the rejection comes from the server.
  auto context = client_context(certificate(), TLS1_1_VERSION);
  ASSERT_EQ(SSL_CTX_set_cipher_list(context->native_handle(), "DEFAULT:@SECLEVEL=0"), 1);

  const auto result = connect_with(*context);

  ASSERT_TRUE(result.handshake);
  EXPECT_EQ(ERR_GET_REASON(static_cast<unsigned long>(result.handshake.value())), SSL_R_TLSV1_ALERT_PROTOCOL_VERSION)
      << result.handshake.message();
  EXPECT_FALSE(result.status);
}

TEST_F(TlsServerTest, PlainHttpClientGetsNoResponse) {
  net::io_context client_io;
  tcp::socket socket(client_io);
  ErrorCode ec;
  socket.connect(tcp::endpoint(net::ip::address_v4::loopback(), port()), ec);
  ASSERT_FALSE(ec) << ec.message();

  const std::string request = "GET /cached HTTP/1.1\r\nHost: test\r\n\r\n";
  net::write(socket, net::buffer(request), ec);
  ASSERT_FALSE(ec) << ec.message();

  // The server reads a malformed TLS record, fails the handshake and closes.
  std::string received;
  std::array<char, 512> chunk{};
  while (!ec && received.size() < 64 * 1024) {
    const auto count = socket.read_some(net::buffer(chunk), ec);
    received.append(chunk.data(), count);
  }
  EXPECT_TRUE(ec == net::error::eof || ec == net::error::connection_reset) << ec.message();
  EXPECT_NE(received.rfind("HTTP/", 0), 0u);
}

TEST(TlsContextTest, MissingKeyFileThrows) {
  EXPECT_THROW(make_server_tls_context("/nonexistent/cert.pem", "/nonexistent/key.pem"), std::runtime_error);
}

}  // namespace
}  // namespace licensing::http::testing
