#include "server_fixture.hpp"

#include <nlohmann/json.hpp>

#include <chrono>
#include <stdexcept>

namespace licensing::http::testing {

namespace net = boost::asio;

std::shared_ptr<Router> make_test_router() {
  auto router = std::make_shared<Router>();
  router->add(beast_http::verb::get, "/v1/enclaves/{id}", [](Request& request) -> net::awaitable<Response> {
    const auto nonce = request.query.find("nonce");
    const nlohmann::json body = {
        {"id", request.path_params.at("id")},
        {"nonce", nonce == request.query.end() ? "" : nonce->second},
        {"client", request.client_address},
    };
    Response response;
    response.body = body.dump();
    co_return response;
  });
  router->add(beast_http::verb::post, "/v1/enclaves/{id}", [](Request&) -> net::awaitable<Response> {
    Response response;
    response.status = 201;
    response.body = "{}";
    co_return response;
  });
  router->add(beast_http::verb::post, "/echo", [](Request& request) -> net::awaitable<Response> {
    Response response;
    response.content_type = "text/plain";
    response.body = request.body;
    co_return response;
  });
  router->add(beast_http::verb::get, "/cached", [](Request&) -> net::awaitable<Response> {
    Response response;
    response.headers.emplace_back("Cache-Control", "max-age=60");
    response.body = "{}";
    co_return response;
  });
  router->add(beast_http::verb::get, "/fail", [](Request&) -> net::awaitable<Response> {
    throw std::runtime_error(std::string(failure_text));
    co_return Response{};
  });
  return router;
}

ServerLimits small_limits() {
  ServerLimits limits;
  limits.header_bytes = 1024;
  limits.header_count = 8;
  limits.body_bytes = 1024;
  limits.header_timeout = std::chrono::seconds(1);
  limits.body_timeout = std::chrono::seconds(1);
  limits.idle_timeout = std::chrono::seconds(1);
  limits.handshake_timeout = std::chrono::seconds(1);
  limits.write_timeout = std::chrono::seconds(1);
  return limits;
}

void ServerFixture::start_server(ServerConfig config) {
  server_ = std::make_unique<Server>(io_, std::move(config), make_test_router(), [this](const RequestRecord& record) {
    const std::lock_guard lock(records_mutex_);
    records_.push_back(record);
  });
  server_->start();

  for (int i = 0; i < 2; ++i) {
    threads_.emplace_back([this] {
      io_.run();
      threads_finished_.fetch_add(1);
    });
  }
}

void ServerFixture::TearDown() {
  if (!server_) return;
  server_->stop();

  // After stop() the io_context must run out of work on its own; give it ten seconds.
  for (int round = 0; round < 1000 && threads_finished_.load() < static_cast<int>(threads_.size()); ++round) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (threads_finished_.load() < static_cast<int>(threads_.size())) {
    ADD_FAILURE() << "the io_context still had work ten seconds after stop()";
    io_.stop();
  }
  for (auto& thread : threads_) thread.join();
}

std::vector<RequestRecord> ServerFixture::records() const {
  const std::lock_guard lock(records_mutex_);
  return records_;
}

}  // namespace licensing::http::testing
