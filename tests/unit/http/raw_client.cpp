#include "raw_client.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>

namespace licensing::http::testing {

namespace beast_http = boost::beast::http;

std::string ParsedResponse::header(std::string_view name) const {
  const auto value = headers[boost::beast::string_view(name.data(), name.size())];
  return std::string(value.data(), value.size());
}

RawClient::RawClient(std::uint16_t port, std::chrono::milliseconds receive_timeout) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return;

  timeval timeout{};
  timeout.tv_sec = static_cast<time_t>(receive_timeout.count() / 1000);
  timeout.tv_usec = static_cast<suseconds_t>((receive_timeout.count() % 1000) * 1000);
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);

  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0) {
    ::close(fd);
    return;
  }
  fd_ = fd;
}

RawClient::~RawClient() {
  if (fd_ >= 0) ::close(fd_);
}

bool RawClient::send(std::string_view data) {
  while (!data.empty()) {
    const auto sent = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
    if (sent <= 0) return false;
    data.remove_prefix(static_cast<std::size_t>(sent));
  }
  return true;
}

std::optional<ParsedResponse> RawClient::read_response() {
  beast_http::response_parser<beast_http::string_body> parser;
  parser.eager(true);

  // Each round either parses buffered bytes or receives more under the receive timeout.
  for (int round = 0; round < 10'000; ++round) {
    if (!pending_.empty()) {
      boost::beast::error_code ec;
      const auto used = parser.put(boost::asio::buffer(pending_), ec);
      pending_.erase(0, used);
      if (ec && ec != beast_http::error::need_more) return std::nullopt;
      if (parser.is_done()) {
        auto message = parser.release();
        return ParsedResponse{message.result_int(), static_cast<const beast_http::fields&>(message), std::move(message.body())};
      }
      if (used > 0 && !ec) continue;
    }

    char chunk[4096];
    const auto received = ::recv(fd_, chunk, sizeof chunk, 0);
    if (received <= 0) return std::nullopt;
    pending_.append(chunk, static_cast<std::size_t>(received));
  }
  return std::nullopt;
}

bool RawClient::wait_closed() {
  for (int round = 0; round < 10'000; ++round) {
    char chunk[4096];
    const auto received = ::recv(fd_, chunk, sizeof chunk, 0);
    if (received == 0) return true;
    if (received < 0) return errno == ECONNRESET;
  }
  return false;
}

bool RawClient::closed_by_peer() {
  char chunk[4096];
  const auto received = ::recv(fd_, chunk, sizeof chunk, 0);
  if (received == 0) return true;
  return received < 0 && errno == ECONNRESET;
}

std::optional<ParsedResponse> round_trip(std::uint16_t port, std::string_view request) {
  RawClient client(port);
  if (!client.connected() || !client.send(request)) return std::nullopt;
  return client.read_response();
}

}  // namespace licensing::http::testing
