#include "raw_client.hpp"
#include "server_fixture.hpp"

#include <nlohmann/json.hpp>

#include <chrono>
#include <string>
#include <thread>

namespace licensing::http::testing {
namespace {

using namespace std::chrono_literals;

class ServerTest : public ServerFixture {
 protected:
  void SetUp() override {
    ServerConfig config;
    config.limits = small_limits();
    start_server(std::move(config));
  }

  // The observer runs after the response is written, so a client may read the response
  // first; wait up to five seconds for `count` records.
  std::vector<RequestRecord> wait_for_records(std::size_t count) const {
    for (int round = 0; round < 500 && records().size() < count; ++round) std::this_thread::sleep_for(10ms);
    return records();
  }
};

nlohmann::json problem_body(const ParsedResponse& response) { return nlohmann::json::parse(response.body); }

TEST_F(ServerTest, RoundTripReturnsPathParamsAndQuery) {
  const auto response = round_trip(port(), "GET /v1/enclaves/e-17?nonce=a%2Bb%20c&other=1 HTTP/1.1\r\nHost: test\r\n\r\n");

  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 200u);
  const auto body = nlohmann::json::parse(response->body);
  EXPECT_EQ(body.at("id"), "e-17");
  EXPECT_EQ(body.at("nonce"), "a+b c");
  EXPECT_EQ(body.at("client"), "127.0.0.1");
  EXPECT_EQ(response->header("Content-Type"), "application/json");
  EXPECT_EQ(response->header("Content-Length"), std::to_string(response->body.size()));
  EXPECT_EQ(response->header("Cache-Control"), "no-store");
  EXPECT_EQ(response->header("X-Content-Type-Options"), "nosniff");
  EXPECT_EQ(response->headers.count(beast_http::field::server), 0u);

  const auto observed = wait_for_records(1);
  ASSERT_EQ(observed.size(), 1u);
  EXPECT_EQ(observed[0].method, "GET");
  EXPECT_EQ(observed[0].route, "/v1/enclaves/{id}");
  EXPECT_EQ(observed[0].status, 200u);
}

TEST_F(ServerTest, HandlerCacheControlIsKept) {
  const auto response = round_trip(port(), "GET /cached HTTP/1.1\r\nHost: test\r\n\r\n");

  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 200u);
  EXPECT_EQ(response->header("Cache-Control"), "max-age=60");
  EXPECT_EQ(response->headers.count(beast_http::field::cache_control), 1u);
}

TEST_F(ServerTest, UnknownPathReturns404Problem) {
  const auto response = round_trip(port(), "GET /v1/nothing HTTP/1.1\r\nHost: test\r\n\r\n");

  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 404u);
  EXPECT_EQ(response->header("Content-Type"), "application/problem+json");
  EXPECT_EQ(problem_body(*response), (nlohmann::json{
                                         {"type", problem_type::not_found},
                                         {"title", "Not Found"},
                                         {"status", 404},
                                         {"detail", "No resource matches the request path."},
                                     }));

  const auto observed = wait_for_records(1);
  ASSERT_EQ(observed.size(), 1u);
  EXPECT_EQ(observed[0].route, "unmatched");
  EXPECT_EQ(observed[0].status, 404u);
}

TEST_F(ServerTest, WrongMethodReturns405WithAllow) {
  const auto response = round_trip(port(), "DELETE /v1/enclaves/e-17 HTTP/1.1\r\nHost: test\r\n\r\n");

  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 405u);
  EXPECT_EQ(response->header("Allow"), "GET, POST");
  EXPECT_EQ(problem_body(*response).at("type"), problem_type::method_not_allowed);

  const auto observed = wait_for_records(1);
  ASSERT_EQ(observed.size(), 1u);
  EXPECT_EQ(observed[0].method, "DELETE");
  EXPECT_EQ(observed[0].route, "/v1/enclaves/{id}");
}

TEST_F(ServerTest, OversizedHeaderReturns431AndCloses) {
  RawClient client(port());
  ASSERT_TRUE(client.send("GET /cached HTTP/1.1\r\nHost: test\r\nX-Padding: " + std::string(2000, 'a') + "\r\n\r\n"));

  const auto response = client.read_response();
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 431u);
  EXPECT_EQ(problem_body(*response).at("type"), problem_type::header_too_large);
  EXPECT_EQ(response->header("Connection"), "close");
  EXPECT_TRUE(client.wait_closed());
}

TEST_F(ServerTest, TooManyHeaderFieldsReturns431AndCloses) {
  std::string request = "GET /cached HTTP/1.1\r\nHost: test\r\n";
  for (int i = 0; i < 9; ++i) request += "X-Field-" + std::to_string(i) + ": v\r\n";
  request += "\r\n";
  RawClient client(port());
  ASSERT_TRUE(client.send(request));

  const auto response = client.read_response();
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 431u);
  EXPECT_EQ(problem_body(*response).at("type"), problem_type::header_too_large);
  EXPECT_TRUE(client.wait_closed());
}

TEST_F(ServerTest, HeaderFieldsAtLimitAreAccepted) {
  std::string request = "GET /cached HTTP/1.1\r\nHost: test\r\n";
  for (int i = 0; i < 7; ++i) request += "X-Field-" + std::to_string(i) + ": v\r\n";
  request += "\r\n";

  const auto response = round_trip(port(), request);
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 200u);
}

TEST_F(ServerTest, LargeContentLengthReturns413BeforeBody) {
  // Only the head is sent, so the server must respond without waiting for the body.
  RawClient client(port());
  ASSERT_TRUE(client.send("POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 100000\r\n\r\n"));

  const auto response = client.read_response();
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 413u);
  EXPECT_EQ(problem_body(*response).at("type"), problem_type::body_too_large);
  EXPECT_TRUE(client.wait_closed());
}

TEST_F(ServerTest, OverlongChunkedBodyReturns413) {
  const std::string chunk = "258\r\n" + std::string(600, 'x') + "\r\n";  // 0x258 = 600 bytes
  RawClient client(port());
  ASSERT_TRUE(client.send("POST /echo HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk + chunk));

  const auto response = client.read_response();
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 413u);
  EXPECT_EQ(problem_body(*response).at("type"), problem_type::body_too_large);
  EXPECT_TRUE(client.wait_closed());
}

TEST_F(ServerTest, ChunkedBodyWithinLimitIsRead) {
  const auto response = round_trip(port(),
                                   "POST /echo HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n"
                                   "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n");

  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 200u);
  EXPECT_EQ(response->body, "hello world");
  EXPECT_EQ(response->header("Content-Type"), "text/plain");
}

TEST_F(ServerTest, ContentLengthWithTransferEncodingReturns400AndCloses) {
  // Beast rejects some of these orders itself and accepts others, but every one must be a 400.
  const std::string heads[] = {
      "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
      "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
      "Transfer-Encoding: gzip\r\nContent-Length: 5\r\n",
      "Content-Length: 5\r\nTransfer-Encoding: gzip\r\n",
  };
  for (const auto& head : heads) {
    SCOPED_TRACE(head);
    RawClient client(port());
    ASSERT_TRUE(client.send("POST /echo HTTP/1.1\r\nHost: test\r\n" + head + "\r\n0\r\n\r\n"));

    const auto response = client.read_response();
    ASSERT_TRUE(response);
    EXPECT_EQ(response->status, 400u);
    EXPECT_EQ(problem_body(*response).at("type"), problem_type::bad_request);
    EXPECT_TRUE(client.wait_closed());
  }
}

TEST_F(ServerTest, TransferEncodingOtherThanChunkedReturns400) {
  RawClient client(port());
  ASSERT_TRUE(client.send("POST /echo HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: gzip\r\n\r\n"));

  const auto response = client.read_response();
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 400u);
  EXPECT_EQ(problem_body(*response).at("type"), problem_type::bad_request);
  EXPECT_TRUE(client.wait_closed());
}

TEST_F(ServerTest, GarbageRequestLineReturns400AndCloses) {
  RawClient client(port());
  ASSERT_TRUE(client.send("HELLO THERE\r\n\r\n"));

  const auto response = client.read_response();
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 400u);
  EXPECT_EQ(problem_body(*response).at("type"), problem_type::bad_request);
  EXPECT_TRUE(client.wait_closed());

  const auto observed = wait_for_records(1);
  ASSERT_EQ(observed.size(), 1u);
  EXPECT_EQ(observed[0].route, "unmatched");
  EXPECT_EQ(observed[0].status, 400u);
}

TEST_F(ServerTest, MissingHostReturns400) {
  const auto response = round_trip(port(), "GET /cached HTTP/1.1\r\n\r\n");

  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 400u);
  EXPECT_EQ(problem_body(*response).at("type"), problem_type::bad_request);
}

TEST_F(ServerTest, MalformedQueryEscapeReturns400) {
  for (const std::string query : {"nonce=%", "nonce=%4", "nonce=%zz", "nonce=%00", "nonce=1&nonce=2"}) {
    SCOPED_TRACE(query);
    const auto response = round_trip(port(), "GET /v1/enclaves/e-17?" + query + " HTTP/1.1\r\nHost: test\r\n\r\n");

    ASSERT_TRUE(response);
    EXPECT_EQ(response->status, 400u);
    EXPECT_EQ(problem_body(*response).at("type"), problem_type::bad_request);
  }
}

TEST_F(ServerTest, SlowHeaderClientIsClosed) {
  RawClient slow(port(), 200ms);
  ASSERT_TRUE(slow.send("GET /cached HTTP/1.1\r\nHost: test\r\n"));

  // Another client is served while the slow one trickles its head.
  const auto response = round_trip(port(), "GET /cached HTTP/1.1\r\nHost: test\r\n\r\n");
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 200u);

  // The client sends one header field every 200 ms, because each receive times out after
  // 200 ms, for ten seconds at most. The one-second header timeout must close it first.
  bool closed = false;
  for (int round = 0; round < 50 && !closed; ++round) {
    if (!slow.send("X-Slow-" + std::to_string(round) + ": v\r\n")) {
      closed = true;
      break;
    }
    closed = slow.closed_by_peer();
  }
  EXPECT_TRUE(closed);
  EXPECT_FALSE(slow.read_response());
}

TEST_F(ServerTest, KeepAliveServesTwoRequests) {
  RawClient client(port());

  ASSERT_TRUE(client.send("GET /v1/enclaves/first HTTP/1.1\r\nHost: test\r\n\r\n"));
  const auto first = client.read_response();
  ASSERT_TRUE(first);
  EXPECT_EQ(nlohmann::json::parse(first->body).at("id"), "first");
  EXPECT_EQ(first->headers.count(beast_http::field::connection), 0u);

  ASSERT_TRUE(client.send("GET /v1/enclaves/second HTTP/1.1\r\nHost: test\r\n\r\n"));
  const auto second = client.read_response();
  ASSERT_TRUE(second);
  EXPECT_EQ(nlohmann::json::parse(second->body).at("id"), "second");
}

TEST_F(ServerTest, PipelinedRequestsAreAnsweredInOrder) {
  RawClient client(port());
  ASSERT_TRUE(client.send("GET /v1/enclaves/a HTTP/1.1\r\nHost: test\r\n\r\n"
                          "GET /v1/enclaves/b HTTP/1.1\r\nHost: test\r\n\r\n"));

  const auto first = client.read_response();
  const auto second = client.read_response();
  ASSERT_TRUE(first);
  ASSERT_TRUE(second);
  EXPECT_EQ(nlohmann::json::parse(first->body).at("id"), "a");
  EXPECT_EQ(nlohmann::json::parse(second->body).at("id"), "b");
}

TEST_F(ServerTest, IdleKeepAliveConnectionIsClosed) {
  RawClient client(port());
  ASSERT_TRUE(client.send("GET /cached HTTP/1.1\r\nHost: test\r\n\r\n"));
  ASSERT_TRUE(client.read_response());

  // The idle timeout is one second and each receive waits up to five.
  EXPECT_TRUE(client.wait_closed());
}

TEST_F(ServerTest, Http10WithoutKeepAliveCloses) {
  RawClient client(port());
  ASSERT_TRUE(client.send("GET /cached HTTP/1.0\r\n\r\n"));

  const auto response = client.read_response();
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 200u);
  EXPECT_TRUE(client.wait_closed());
}

TEST_F(ServerTest, ExpectContinueGetsInterimResponse) {
  RawClient client(port());
  ASSERT_TRUE(client.send("POST /echo HTTP/1.1\r\nHost: test\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n"));

  const auto interim = client.read_response();
  ASSERT_TRUE(interim);
  EXPECT_EQ(interim->status, 100u);

  ASSERT_TRUE(client.send("ping"));
  const auto response = client.read_response();
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 200u);
  EXPECT_EQ(response->body, "ping");
}

TEST_F(ServerTest, HandlerExceptionReturns500WithoutDetails) {
  const auto response = round_trip(port(), "GET /fail HTTP/1.1\r\nHost: test\r\n\r\n");

  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 500u);
  const auto body = problem_body(*response);
  EXPECT_EQ(body.at("type"), problem_type::internal);
  EXPECT_EQ(response->body.find(failure_text), std::string::npos);

  const auto observed = wait_for_records(1);
  ASSERT_EQ(observed.size(), 1u);
  EXPECT_EQ(observed[0].route, "/fail");
  EXPECT_EQ(observed[0].status, 500u);
}

TEST_F(ServerTest, StopClosesIdleConnection) {
  RawClient client(port());
  ASSERT_TRUE(client.send("GET /cached HTTP/1.1\r\nHost: test\r\n\r\n"));
  ASSERT_TRUE(client.read_response());

  server_->stop();

  EXPECT_TRUE(client.wait_closed());

  // The acceptor closes on its own strand, so new connections are refused within five seconds.
  bool refused = false;
  for (int round = 0; round < 500 && !refused; ++round) {
    refused = !RawClient(port()).connected();
    if (!refused) std::this_thread::sleep_for(10ms);
  }
  EXPECT_TRUE(refused);
}

// Tests that need other limits start the server themselves.
class ServerLimitTest : public ServerFixture {};

TEST_F(ServerLimitTest, MaxRequestsPerConnectionCloses) {
  ServerConfig config;
  config.limits = small_limits();
  config.limits.max_requests_per_connection = 2;
  start_server(std::move(config));
  RawClient client(port());

  ASSERT_TRUE(client.send("GET /cached HTTP/1.1\r\nHost: test\r\n\r\n"));
  const auto first = client.read_response();
  ASSERT_TRUE(first);
  EXPECT_EQ(first->headers.count(beast_http::field::connection), 0u);

  ASSERT_TRUE(client.send("GET /cached HTTP/1.1\r\nHost: test\r\n\r\n"));
  const auto second = client.read_response();
  ASSERT_TRUE(second);
  EXPECT_EQ(second->status, 200u);
  EXPECT_EQ(second->header("Connection"), "close");
  EXPECT_TRUE(client.wait_closed());
}

TEST_F(ServerLimitTest, ConnectionBeyondMaxGets503) {
  ServerConfig config;
  config.limits = small_limits();
  config.limits.max_connections = 1;
  config.limits.header_timeout = std::chrono::seconds(5);
  start_server(std::move(config));

  RawClient holder(port());
  ASSERT_TRUE(holder.connected());
  for (int round = 0; round < 500 && server_->open_connections() < 1; ++round) std::this_thread::sleep_for(10ms);
  ASSERT_EQ(server_->open_connections(), 1u);

  RawClient refused(port());
  ASSERT_TRUE(refused.send("GET /cached HTTP/1.1\r\nHost: test\r\n\r\n"));
  const auto response = refused.read_response();
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 503u);
  EXPECT_EQ(response->header("Retry-After"), "1");
  EXPECT_EQ(problem_body(*response).at("type"), problem_type::unavailable);
  EXPECT_TRUE(refused.wait_closed());

  // The first connection is still served.
  ASSERT_TRUE(holder.send("GET /cached HTTP/1.1\r\nHost: test\r\n\r\n"));
  const auto served = holder.read_response();
  ASSERT_TRUE(served);
  EXPECT_EQ(served->status, 200u);
}

TEST(ServerStartTest, PlainHttpOnAnyAddressIsRejected) {
  boost::asio::io_context io;
  ServerConfig config;
  config.address = "0.0.0.0";
  Server server(io, config, make_test_router());

  EXPECT_THROW(server.start(), std::invalid_argument);
}

TEST(ServerStartTest, NonIpAddressIsRejected) {
  boost::asio::io_context io;
  ServerConfig config;
  config.address = "localhost";
  Server server(io, config, make_test_router());

  EXPECT_THROW(server.start(), std::invalid_argument);
}

}  // namespace
}  // namespace licensing::http::testing
