// enclave: the per-user service. It obtains its TLS certificate through a CSR, serves the
// enclave API over HTTPS with mutual TLS, and renews the certificate before it expires.
// Configuration comes from the LICENSING_ENCLAVE_* environment variables (config.hpp).
#include <utility>  // Boost 1.74's asio headers need it first with GCC 12.

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#include "client/https_client.hpp"
#include "common/logging.hpp"
#include "enclave/api.hpp"
#include "enclave/identity.hpp"
#include "enclave/tls.hpp"

namespace {

namespace enclave = licensing::enclave;
namespace logging = licensing::logging;
using SystemClock = std::chrono::system_clock;

constexpr auto enrollment_budget = std::chrono::seconds(60);
constexpr auto csr_timeout = std::chrono::seconds(10);
constexpr auto first_renewal_retry = std::chrono::seconds(30);
constexpr auto max_renewal_retry = std::chrono::seconds(300);
constexpr int io_threads = 2;

std::int64_t unix_seconds(SystemClock::time_point time) {
  return std::chrono::duration_cast<std::chrono::seconds>(time.time_since_epoch()).count();
}

void sleep_for(std::chrono::seconds delay) { std::this_thread::sleep_for(delay); }

// Uses the stored certificate when it is valid; otherwise renews with the stored renewal
// credential, and failing that enrolls with the bootstrap credential.
licensing::Result<enclave::Identity, enclave::IdentityError> obtain_identity(enclave::IdentityManager& identities,
                                                                             const enclave::Config& config) {
  auto stored = identities.load_stored();
  if (stored && *stored) return std::move(**stored);
  if (!stored && stored.error().code != enclave::IdentityError::untrusted) return std::unexpected(stored.error());
  if (!stored) logging::warn("stored_certificate_unusable", {{"enclave_id", config.enclave_id}, {"error", stored.error().detail}});

  std::error_code ec;
  if (std::filesystem::exists(identities.paths().renewal_credential, ec)) {
    auto renewed = enclave::with_retries([&] { return identities.renew(); }, enrollment_budget, sleep_for, SystemClock::now);
    if (renewed) return renewed;
    logging::warn("renewal_at_start_failed", {{"enclave_id", config.enclave_id}, {"error", renewed.error().detail}});
  }
  return enclave::with_retries([&] { return identities.enroll(); }, enrollment_budget, sleep_for, SystemClock::now);
}

// Renews the certificate at its renewal time on a thread of its own, because the CSR is a
// blocking HTTPS call, and hands each new identity to the TLS context.
class RenewalWorker {
 public:
  RenewalWorker(enclave::IdentityManager& identities, enclave::ServerCredentials& credentials, SystemClock::time_point due)
      : identities_(identities), credentials_(credentials), due_(due), thread_([this] { run(); }) {}
  ~RenewalWorker() { stop(); }
  RenewalWorker(const RenewalWorker&) = delete;
  RenewalWorker& operator=(const RenewalWorker&) = delete;

  void stop() {
    {
      const std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    if (thread_.joinable()) thread_.join();
  }

 private:
  void run() {
    auto retry_delay = first_renewal_retry;
    for (;;) {
      std::unique_lock lock(mutex_);
      wake_.wait_until(lock, due_, [this] { return stopping_ || SystemClock::now() >= due_; });
      if (stopping_) return;
      lock.unlock();

      auto renewed = identities_.renew();
      if (renewed) {
        credentials_.replace(*renewed);
        due_ = identities_.renewal_time(*renewed);
        retry_delay = first_renewal_retry;
        logging::info("certificate_renewed", {{"not_after", unix_seconds(renewed->not_after)}, {"next_renewal", unix_seconds(due_)}});
        continue;
      }

      const auto code = renewed.error().code;
      if (code == enclave::IdentityError::rejected || code == enclave::IdentityError::no_credential) {
        // Retrying cannot help: the credential is spent or gone. The enclave keeps serving
        // until its certificate expires and needs a new bootstrap credential after that.
        logging::error("certificate_renewal_failed", {{"error", renewed.error().detail}, {"retrying", false}});
        due_ = SystemClock::time_point::max();
        continue;
      }
      logging::warn("certificate_renewal_failed", {{"error", renewed.error().detail}, {"retrying", true}, {"retry_in_s", retry_delay.count()}});
      due_ = SystemClock::now() + retry_delay;
      retry_delay = std::min(retry_delay * 2, max_renewal_retry);
    }
  }

  enclave::IdentityManager& identities_;
  enclave::ServerCredentials& credentials_;
  SystemClock::time_point due_;  // written only by the worker thread
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;  // guarded by mutex_
  std::thread thread_;
};

int run() {
  auto config = enclave::load_config(enclave::process_environment());
  if (!config) {
    logging::error("invalid_configuration", {{"code", enclave::to_string(config.error().code)}, {"error", config.error().detail}});
    return 2;
  }

  const auto ca_bundle = config->ca_bundle_file.string();
  enclave::Transport transport = [ca_bundle](const licensing::client::HttpRequest& request) {
    licensing::client::HttpOptions options;
    options.ca_bundle_file = ca_bundle;
    options.timeout = csr_timeout;
    return licensing::client::send(request, options);
  };
  enclave::IdentityManager identities(*config, transport, SystemClock::now);
  auto identity = obtain_identity(identities, *config);
  if (!identity) {
    logging::error("certificate_unavailable", {{"enclave_id", config->enclave_id},
                                               {"code", enclave::to_string(identity.error().code)},
                                               {"error", identity.error().detail}});
    return 1;
  }
  logging::info("certificate_ready", {{"enclave_id", config->enclave_id}, {"not_after", unix_seconds(identity->not_after)}});

  auto store = enclave::SecretStore::open(config->directory / "secrets");
  if (!store) throw std::runtime_error("opening the secret store failed: " + store.error().detail);

  auto context = std::make_shared<enclave::ApiContext>();
  context->config = *config;
  context->store = std::move(*store);
  context->jwks = std::make_shared<enclave::JwksFile>(config->jwks_file);
  context->now = SystemClock::now;

  enclave::ServerCredentials credentials(*identity);
  licensing::http::ServerConfig server_config;
  server_config.address = config->listen_address;
  server_config.port = config->listen_port;
  server_config.tls = enclave::make_enclave_tls_context(*config, identities.paths(), credentials);
  server_config.limits.body_bytes = enclave::max_request_body_bytes;

  boost::asio::io_context io;
  licensing::http::Server server(io, server_config, enclave::make_router(context));
  server.start();
  RenewalWorker renewal(identities, credentials, identities.renewal_time(*identity));
  logging::info("enclave_started", {{"enclave_id", config->enclave_id}, {"port", server.port()},
                                    {"require_client_cert", config->require_client_cert},
                                    {"next_renewal", unix_seconds(identities.renewal_time(*identity))}});

  boost::asio::steady_timer jwks_timer(io);
  boost::asio::signal_set signals(io, SIGINT, SIGTERM, SIGHUP);
  std::function<void(const boost::system::error_code&, int)> on_signal = [&](const boost::system::error_code& ec, int number) {
    if (ec) return;
    if (number == SIGHUP) {
      auto reloaded = context->jwks->reload();
      if (reloaded) logging::info("jwks_reloaded");
      if (!reloaded) logging::error("jwks_reload_failed", {{"error", reloaded.error().detail}});
      signals.async_wait(on_signal);
      return;
    }
    logging::info("enclave_stopping", {{"signal", number}});
    jwks_timer.cancel();
    server.stop();
  };
  signals.async_wait(on_signal);

  // The JWKS file is also reread every 30 s: on Kubernetes it is a ConfigMap volume that
  // the kubelet updates in place, and no one sends SIGHUP.
  std::function<void(const boost::system::error_code&)> on_jwks_timer = [&](const boost::system::error_code& ec) {
    if (ec) return;
    const auto before = context->jwks->keys();
    if (auto reloaded = context->jwks->reload(); !reloaded) {
      logging::error("jwks_reload_failed", {{"error", reloaded.error().detail}});
    } else if (*context->jwks->keys() != *before) {
      logging::info("jwks_reloaded", {{"trigger", "file_changed"}});
    }
    jwks_timer.expires_after(std::chrono::seconds(30));
    jwks_timer.async_wait(on_jwks_timer);
  };
  jwks_timer.expires_after(std::chrono::seconds(30));
  jwks_timer.async_wait(on_jwks_timer);

  std::vector<std::thread> threads;
  for (int i = 1; i < io_threads; ++i) threads.emplace_back([&io] { io.run(); });
  io.run();
  for (auto& thread : threads) thread.join();

  renewal.stop();
  logging::info("enclave_stopped", {{"enclave_id", config->enclave_id}});
  return 0;
}

}  // namespace

int main() {
  const char* level = std::getenv("LICENSING_ENCLAVE_LOG_LEVEL");
  logging::init("enclave", level != nullptr ? level : "info");
  try {
    return run();
  } catch (const std::exception& error) {
    logging::error("enclave_failed", {{"error", error.what()}});
    return 1;
  }
}
