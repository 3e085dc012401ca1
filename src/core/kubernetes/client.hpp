// A small synchronous client for the Kubernetes API. It verifies the API server against
// the cluster CA and authenticates with a client certificate or a bearer token, which it
// re-reads from its file on every request because projected service account tokens
// rotate. Every request has a timeout. Connection errors, 429 and 500 to 504 are retried
// with capped exponential backoff; any other status returns at once, so the caller
// decides about 404 and 409.
//
// Watches (`?watch=true`) are read as line-delimited JSON events until a caller's predicate
// is met or a deadline passes; a dropped stream or 410 Gone makes the caller re-list.
#pragma once

#include <chrono>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "common/error.hpp"
#include "common/secret.hpp"

namespace licensing::core::kubernetes {

enum class ApiError {
  config,       // a missing or invalid kubeconfig, token file or CA
  connect,      // TCP or TLS to the API server failed (including certificate verification)
  io,           // the connection failed mid-request or timed out
  status,       // the API server returned a status the caller does not accept
  invalid,      // the response is not the JSON the caller expected
  timed_out,    // a wait passed its deadline
};

std::string_view to_string(ApiError code);

// The API server address and the credentials for it.
struct ClusterConfig {
  std::string server;          // https://host:port
  std::string ca_pem;          // roots that verify the API server
  std::filesystem::path token_file;  // read on every request when set
  std::optional<SecretBytes> token;  // a fixed token (kubeconfig `token`)
  std::string client_certificate_pem;
  std::optional<SecretBytes> client_key_pem;
  std::string namespace_name;  // the kubeconfig context's namespace, or empty
};

// Reads the current context of a kubeconfig file: cluster server and
// certificate-authority(-data), user token, tokenFile or client-certificate(-data) and
// client-key(-data). Relative file paths resolve against the kubeconfig's directory.
// insecure-skip-tls-verify and exec or auth-provider plugins are rejected.
Result<ClusterConfig, ApiError> load_kubeconfig(const std::filesystem::path& file);

// The in-cluster configuration: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT,
// and the service account's token and ca.crt under `service_account_directory`.
Result<ClusterConfig, ApiError> in_cluster_config(
    const std::filesystem::path& service_account_directory = "/var/run/secrets/kubernetes.io/serviceaccount");

struct RetryPolicy {
  int max_attempts = 5;
  std::chrono::milliseconds initial_backoff{200};
  std::chrono::milliseconds max_backoff{5000};
};

struct ApiResponse {
  unsigned status = 0;
  nlohmann::json body;  // null when the body is empty or not JSON
};

// One event of a watch stream: type ADDED, MODIFIED, DELETED, BOOKMARK or ERROR.
struct WatchEvent {
  std::string type;
  nlohmann::json object;
};

// The next step a watch callback requests.
enum class WatchStep { keep_watching, stop };

class Client {
 public:
  Client(ClusterConfig config, std::chrono::milliseconds request_timeout = std::chrono::seconds(10),
         RetryPolicy retry = {});

  // Sends one request and returns the response, retrying as described above. The path is
  // the API path with its query, e.g. /api/v1/namespaces/N/pods?labelSelector=a%3Db.
  // A status error is only returned after retries ran out; every other status is
  // returned to the caller.
  Result<ApiResponse, ApiError> request(std::string_view method, const std::string& path,
                                        const nlohmann::json& body = nullptr);

  // Opens `path` (which must contain watch=true) and calls `on_event` for every event
  // until it returns stop (true is returned), the server closes the stream (false), or
  // `deadline` passes (ApiError::timed_out). A status other than 200 is an
  // ApiError::status whose detail starts with the status code.
  Result<bool, ApiError> watch(const std::string& path, std::chrono::steady_clock::time_point deadline,
                               const std::function<WatchStep(const WatchEvent&)>& on_event);

  const ClusterConfig& config() const { return config_; }

 private:
  struct Target {
    std::string host;
    std::string port;
  };
  Result<std::string, ApiError> authorization() const;
  Result<ApiResponse, ApiError> send_once(std::string_view method, const std::string& path, const std::string& body);

  ClusterConfig config_;
  Target target_;
  std::chrono::milliseconds request_timeout_;
  RetryPolicy retry_;
};

// Percent-encodes a query parameter value.
std::string url_encode(std::string_view value);

}  // namespace licensing::core::kubernetes
