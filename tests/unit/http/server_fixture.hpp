// A Server on 127.0.0.1, port 0, run by two threads on one io_context, with the routes
// that the server tests call and a record of every observer call.
#pragma once

#include <utility>  // Boost 1.74's awaitable.hpp needs it first with GCC 12.

#include "http/server.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace licensing::http::testing {

// Routes:
//   GET  /v1/enclaves/{id}  returns {"id", "nonce", "client"} from the path, query and socket
//   POST /v1/enclaves/{id}  returns 201 with an empty object
//   POST /echo              returns the request body as text/plain
//   GET  /cached            returns 200 with its own Cache-Control
//   GET  /fail              throws std::runtime_error
std::shared_ptr<Router> make_test_router();

// The text of the exception that GET /fail throws; it must reach no client.
inline constexpr std::string_view failure_text = "database row 42 is corrupt";

class ServerFixture : public ::testing::Test {
 protected:
  void start_server(ServerConfig config);
  void TearDown() override;

  std::uint16_t port() const { return server_->port(); }
  std::vector<RequestRecord> records() const;

  boost::asio::io_context io_;
  std::unique_ptr<Server> server_;

 private:
  mutable std::mutex records_mutex_;
  std::vector<RequestRecord> records_;
  std::vector<std::thread> threads_;
  std::atomic<int> threads_finished_{0};
};

// Limits small enough for tests; the timeouts are one second.
ServerLimits small_limits();

}  // namespace licensing::http::testing
