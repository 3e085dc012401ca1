// A blocking HTTP/1.1 test client on a raw POSIX socket to 127.0.0.1, so that tests can
// send malformed, partial or trickled requests. Every receive has a timeout, so no test
// waits forever on a server that does not respond.
#pragma once

#include <utility>  // Boost 1.74's awaitable.hpp needs it first with GCC 12.

#include <boost/beast/http.hpp>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace licensing::http::testing {

struct ParsedResponse {
  unsigned status = 0;
  boost::beast::http::fields headers;
  std::string body;

  std::string header(std::string_view name) const;
};

class RawClient {
 public:
  // Connects to 127.0.0.1:`port`; a failed connect leaves connected() false.
  explicit RawClient(std::uint16_t port, std::chrono::milliseconds receive_timeout = std::chrono::seconds(5));
  ~RawClient();
  RawClient(const RawClient&) = delete;
  RawClient& operator=(const RawClient&) = delete;

  bool connected() const { return fd_ >= 0; }
  // Sends all of `data`; false when the connection failed.
  bool send(std::string_view data);
  // Reads one complete response; nullopt on a timeout, or a close before it was complete.
  std::optional<ParsedResponse> read_response();
  // Reads and discards until the server closes; true when it closed (end of stream or
  // reset) before a receive timed out.
  bool wait_closed();
  // Waits one receive timeout at most, discarding data; true when the server closed the
  // connection by then.
  bool closed_by_peer();

 private:
  int fd_ = -1;
  std::string pending_;  // received bytes not yet parsed
};

// Sends one request on a new connection and reads its response.
std::optional<ParsedResponse> round_trip(std::uint16_t port, std::string_view request);

}  // namespace licensing::http::testing
