// licensectl: the command-line client of the licensing server.

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <termios.h>
#include <unistd.h>

#include <cstdlib>
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <optional>
#include <regex>
#include <sstream>
#include <string>
#include <thread>

#include "client/dev_stack.hpp"
#include "client/attestation.hpp"
#include "client/https_client.hpp"
#include "common/base64url.hpp"
#include "common/json.hpp"
#include "crypto/openssl.hpp"
#include "common/secret.hpp"
#include "crypto/ca.hpp"

namespace {

namespace fs = std::filesystem;
using licensing::client::HttpOptions;
using licensing::client::HttpRequest;
using licensing::client::HttpResponse;

struct GlobalOptions {
  std::string gateway_url;
  std::string ca_bundle;
  std::string stack_file;
  std::string session_file;
  bool password_stdin = false;
};

// The session file contains the tokens; it is written 0600 and replaced atomically.
struct Session {
  std::string gateway_url;
  std::string ca_bundle;
  std::string username;
  std::string access_token;
  std::string refresh_token;
};

fs::path default_session_file() {
  if (const char* config = std::getenv("XDG_CONFIG_HOME"); config != nullptr && *config != '\0') {
    return fs::path(config) / "licensectl" / "session.json";
  }
  if (const char* home = std::getenv("HOME"); home != nullptr && *home != '\0') {
    return fs::path(home) / ".config" / "licensectl" / "session.json";
  }
  throw std::runtime_error("set HOME or pass --session FILE");
}

std::optional<Session> load_session(const fs::path& file) {
  std::ifstream in(file);
  if (!in) return std::nullopt;
  const auto json = nlohmann::json::parse(in, nullptr, false);
  if (!json.is_object()) return std::nullopt;
  return Session{json.value("gateway_url", ""), json.value("ca_bundle", ""), json.value("username", ""),
                 json.value("access_token", ""), json.value("refresh_token", "")};
}

void save_session(const fs::path& file, const Session& session) {
  const fs::path directory = file.parent_path().empty() ? fs::path(".") : file.parent_path();
  if (!fs::exists(directory)) {
    fs::create_directories(directory);
    fs::permissions(directory, fs::perms::owner_all, fs::perm_options::replace);
  }
  const fs::path temporary = file.string() + ".tmp";
  fs::remove(temporary);
  const int descriptor = open(temporary.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (descriptor < 0) throw std::runtime_error("cannot write " + temporary.string());
  std::string text = nlohmann::json{{"gateway_url", session.gateway_url},
                                    {"ca_bundle", session.ca_bundle},
                                    {"username", session.username},
                                    {"access_token", session.access_token},
                                    {"refresh_token", session.refresh_token}}
                         .dump(2) + "\n";
  const bool written = write(descriptor, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  licensing::wipe_string(text);
  close(descriptor);
  if (!written) throw std::runtime_error("cannot write " + temporary.string());
  fs::rename(temporary, file);
}

// Fills the gateway URL and CA bundle from the flags, then a stack file, then the session.
void resolve_gateway(GlobalOptions& options, const std::optional<Session>& session) {
  std::string stack_file = options.stack_file;
  if (stack_file.empty()) {
    if (const char* environment = std::getenv("LICENSECTL_STACK")) stack_file = environment;
  }
  if (!stack_file.empty()) {
    std::ifstream in(stack_file);
    const auto stack = nlohmann::json::parse(in, nullptr, false);
    if (!stack.is_object()) throw std::runtime_error("cannot read the stack file " + stack_file);
    if (options.gateway_url.empty()) options.gateway_url = stack.value("gateway_url", "");
    if (options.ca_bundle.empty()) options.ca_bundle = stack.value("ca_bundle", "");
  }
  if (session) {
    if (options.gateway_url.empty()) options.gateway_url = session->gateway_url;
    if (options.ca_bundle.empty()) options.ca_bundle = session->ca_bundle;
  }
  if (options.gateway_url.empty()) {
    throw std::runtime_error("no gateway: pass --gateway URL or --stack DIR/stack.json (or set LICENSECTL_STACK)");
  }
  while (options.gateway_url.ends_with('/')) options.gateway_url.pop_back();
}

// Reads the password from standard input (--password-stdin), LICENSECTL_PASSWORD, or
// the terminal with echo off.
licensing::SecretBytes read_password(const GlobalOptions& options, const std::string& prompt) {
  std::string password;
  if (options.password_stdin) {
    std::getline(std::cin, password);
    // Input from a Windows tool ends lines with CR LF; the CR is not part of the password.
    if (password.ends_with('\r')) password.pop_back();
  } else if (const char* environment = std::getenv("LICENSECTL_PASSWORD")) {
    password = environment;
  } else if (isatty(STDIN_FILENO)) {
    std::cerr << prompt << std::flush;
    termios saved{};
    tcgetattr(STDIN_FILENO, &saved);
    termios silent = saved;
    silent.c_lflag &= ~static_cast<tcflag_t>(ECHO);
    tcsetattr(STDIN_FILENO, TCSANOW, &silent);
    std::getline(std::cin, password);
    tcsetattr(STDIN_FILENO, TCSANOW, &saved);
    std::cerr << "\n";
  } else {
    throw std::runtime_error("no password: use --password-stdin, LICENSECTL_PASSWORD or a terminal");
  }
  licensing::SecretBytes secret(password);
  licensing::wipe_string(password);
  return secret;
}

HttpResponse call(const GlobalOptions& options, const std::string& method, const std::string& path, std::string body,
                  const std::string& bearer = {}) {
  HttpRequest request{method, options.gateway_url + path, {}, std::move(body), "application/json"};
  if (!bearer.empty()) request.headers.emplace_back("Authorization", "Bearer " + bearer);
  auto response = licensing::client::send(request, HttpOptions{options.ca_bundle, std::chrono::seconds(30), {}, {}, {}});
  licensing::wipe_string(request.body);
  if (!response) throw std::runtime_error(response.error().detail);
  return std::move(*response);
}

// Prints a problem+json response as one line and returns the exit code 1.
int report_problem(const HttpResponse& response) {
  const auto body = nlohmann::json::parse(response.body, nullptr, false);
  std::cerr << "error: ";
  if (body.is_object()) {
    std::cerr << body.value("title", "request failed");
    if (body.contains("detail")) std::cerr << ": " << body.value("detail", "");
  } else {
    std::cerr << "request failed";
  }
  std::cerr << " (HTTP " << response.status;
  if (const auto retry = response.headers.find("retry-after"); retry != response.headers.end()) {
    std::cerr << ", retry after " << retry->second << " s";
  }
  std::cerr << ")\n";
  return 1;
}

std::string credentials_body(const std::string& username, const licensing::SecretBytes& password) {
  return nlohmann::json{{"username", username}, {"password", std::string(password.text())}}.dump();
}

int signup(GlobalOptions& options, const std::string& username) {
  resolve_gateway(options, std::nullopt);
  const auto password = read_password(options, "Password for " + username + ": ");
  const auto response = call(options, "POST", "/v1/users", credentials_body(username, password));
  if (response.status != 201) return report_problem(response);
  const auto user = nlohmann::json::parse(response.body);
  std::cout << "created user " << user.value("username", "") << " (id " << user.value("id", "") << ")\n";
  return 0;
}

int login(GlobalOptions& options, const fs::path& session_file, const std::string& username) {
  resolve_gateway(options, load_session(session_file));
  const auto password = read_password(options, "Password for " + username + ": ");
  const auto response = call(options, "POST", "/v1/sessions", credentials_body(username, password));
  if (response.status != 200) return report_problem(response);
  auto tokens = nlohmann::json::parse(response.body);
  save_session(session_file, {options.gateway_url, options.ca_bundle, username, tokens.value("access_token", ""),
                              tokens.value("refresh_token", "")});
  std::cout << "logged in as " << username << "; access token valid for " << tokens.value("expires_in", 0)
            << " s; session saved to " << session_file.string() << "\n";
  return 0;
}

// Trades the refresh token for new tokens and saves them; false when the session is over.
bool refresh(const GlobalOptions& options, const fs::path& session_file, Session& session) {
  const auto response = call(options, "POST", "/v1/sessions/refresh",
                             nlohmann::json{{"refresh_token", session.refresh_token}}.dump());
  if (response.status != 200) return false;
  const auto tokens = nlohmann::json::parse(response.body);
  session.access_token = tokens.value("access_token", "");
  session.refresh_token = tokens.value("refresh_token", "");
  save_session(session_file, session);
  return true;
}

int whoami(GlobalOptions& options, const fs::path& session_file) {
  auto session = load_session(session_file);
  if (!session || session->access_token.empty()) {
    std::cerr << "error: not logged in; run `licensectl login --username NAME`\n";
    return 1;
  }
  resolve_gateway(options, session);
  auto response = call(options, "GET", "/v1/users/me", {}, session->access_token);
  if (response.status == 401 && refresh(options, session_file, *session)) {
    response = call(options, "GET", "/v1/users/me", {}, session->access_token);
  }
  if (response.status != 200) return report_problem(response);
  const auto user = nlohmann::json::parse(response.body);
  std::cout << "username:   " << user.value("username", "") << "\n"
            << "user id:    " << user.value("id", "") << "\n"
            << "created at: " << user.value("created_at", "") << "\n"
            << "gateway:    " << options.gateway_url << "\n";
  return 0;
}

int logout(GlobalOptions& options, const fs::path& session_file) {
  auto session = load_session(session_file);
  if (!session) {
    std::cerr << "error: not logged in\n";
    return 1;
  }
  resolve_gateway(options, session);
  auto response = call(options, "DELETE", "/v1/sessions/current", {}, session->access_token);
  if (response.status == 401 && refresh(options, session_file, *session)) {
    response = call(options, "DELETE", "/v1/sessions/current", {}, session->access_token);
  }
  fs::remove(session_file);
  if (response.status != 204) return report_problem(response);
  std::cout << "logged out; the session's refresh tokens are revoked\n";
  return 0;
}

// Loads the session, resolves the gateway, and calls `path` with the access token,
// refreshing it once when it has expired.
HttpResponse authorized_call(GlobalOptions& options, const fs::path& session_file, const std::string& method,
                             const std::string& path, const std::string& body = {},
                             const std::vector<std::pair<std::string, std::string>>& headers = {}) {
  auto session = load_session(session_file);
  if (!session || session->access_token.empty()) throw std::runtime_error("not logged in; run `licensectl login --username NAME`");
  resolve_gateway(options, session);
  const auto send_once = [&] {
    HttpRequest request{method, options.gateway_url + path, headers, body, "application/json"};
    request.headers.emplace_back("Authorization", "Bearer " + session->access_token);
    auto response = licensing::client::send(request, HttpOptions{options.ca_bundle, std::chrono::seconds(90), {}, {}, {}});
    if (!response) throw std::runtime_error(response.error().detail);
    return std::move(*response);
  };
  auto response = send_once();
  if (response.status == 401 && refresh(options, session_file, *session)) response = send_once();
  return response;
}

void print_enclave(const nlohmann::json& enclave) {
  std::cout << "id:         " << enclave.value("id", "") << "\n"
            << "state:      " << enclave.value("state", "") << "\n"
            << "endpoint:   " << enclave.value("endpoint", "") << "\n"
            << "created at: " << enclave.value("created_at", "") << "\n";
  if (enclave.contains("failure_reason")) std::cout << "failure:    " << enclave.value("failure_reason", "") << "\n";
}

// Polls the enclave until it is ready or failed, printing each state change.
int wait_until_ready(GlobalOptions& options, const fs::path& session_file, nlohmann::json enclave) {
  const auto started = std::chrono::steady_clock::now();
  std::string last_state = enclave.value("state", "");
  std::cout << "enclave " << enclave.value("id", "") << ": " << last_state << std::flush;
  for (int attempt = 0; attempt < 240 && last_state != "ready" && last_state != "failed"; ++attempt) {
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
    const auto response = authorized_call(options, session_file, "GET", "/v1/enclaves/" + enclave.value("id", ""));
    if (response.status != 200) {
      std::cout << "\n";
      return report_problem(response);
    }
    enclave = nlohmann::json::parse(response.body);
    if (enclave.value("state", "") != last_state) {
      last_state = enclave.value("state", "");
      std::cout << " -> " << last_state << std::flush;
    }
  }
  const auto seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  std::cout << " (" << std::fixed << std::setprecision(1) << seconds << " s)\n";
  print_enclave(enclave);
  if (last_state != "ready") {
    std::cerr << "error: the enclave is " << last_state << ", not ready\n";
    return 1;
  }
  return 0;
}

int enclave_create(GlobalOptions& options, const fs::path& session_file, const std::string& idempotency_key) {
  std::vector<std::pair<std::string, std::string>> headers;
  if (!idempotency_key.empty()) headers.emplace_back("Idempotency-Key", idempotency_key);
  const auto response = authorized_call(options, session_file, "POST", "/v1/enclaves", {}, headers);
  if (response.status != 201 && response.status != 200) return report_problem(response);
  return wait_until_ready(options, session_file, nlohmann::json::parse(response.body));
}

int enclave_list(GlobalOptions& options, const fs::path& session_file) {
  const auto response = authorized_call(options, session_file, "GET", "/v1/enclaves");
  if (response.status != 200) return report_problem(response);
  const auto body = nlohmann::json::parse(response.body);
  for (const auto& enclave : body["enclaves"]) {
    std::cout << enclave.value("id", "") << "  " << enclave.value("state", "") << "  " << enclave.value("endpoint", "") << "\n";
  }
  return 0;
}

int enclave_show(GlobalOptions& options, const fs::path& session_file, const std::string& id) {
  const auto response = authorized_call(options, session_file, "GET", "/v1/enclaves/" + id);
  if (response.status != 200) return report_problem(response);
  print_enclave(nlohmann::json::parse(response.body));
  return 0;
}

int enclave_delete(GlobalOptions& options, const fs::path& session_file, const std::string& id) {
  const auto response = authorized_call(options, session_file, "DELETE", "/v1/enclaves/" + id);
  if (response.status != 200) return report_problem(response);
  std::cout << "enclave " << id << " " << nlohmann::json::parse(response.body).value("state", "") << "\n";
  return 0;
}

// Returns the client certificate and key files for mutual TLS, beside the session file.
// The key is generated here and never leaves this machine. The gateway's CA signs its CSR.
std::pair<fs::path, fs::path> client_certificate(GlobalOptions& options, const fs::path& session_file,
                                                 const std::string& enclave_id) {
  const fs::path key_file = session_file.string() + ".client-key.pem";
  const fs::path certificate_file = session_file.string() + ".client-cert.pem";
  const fs::path expiry_file = session_file.string() + ".client-cert.not-after";
  std::int64_t not_after = 0;
  std::ifstream(expiry_file) >> not_after;
  const auto now = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  if (fs::exists(key_file) && fs::exists(certificate_file) && not_after > now + 300) return {certificate_file, key_file};

  auto key_and_csr = licensing::crypto::generate_key_and_csr("licensectl");
  if (!key_and_csr) throw std::runtime_error("cannot generate a client key: " + key_and_csr.error().detail);
  const auto response = authorized_call(options, session_file, "POST", "/v1/enclaves/" + enclave_id + "/client-certificate",
                                        nlohmann::json{{"csr_pem", key_and_csr->csr_pem}}.dump());
  if (response.status != 200) {
    report_problem(response);
    throw std::runtime_error("the gateway did not issue a client certificate");
  }
  const auto body = nlohmann::json::parse(response.body);
  const auto write_private = [](const fs::path& path, const std::string& content) {
    fs::remove(path);
    const int descriptor = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (descriptor < 0 || write(descriptor, content.data(), content.size()) != static_cast<ssize_t>(content.size())) {
      if (descriptor >= 0) close(descriptor);
      throw std::runtime_error("cannot write " + path.string());
    }
    close(descriptor);
  };
  write_private(key_file, key_and_csr->private_key_pem);
  write_private(certificate_file, body.value("certificate_chain_pem", ""));
  write_private(expiry_file, std::to_string(body.value("not_after", std::int64_t{0})));
  return {certificate_file, key_file};
}

// An enclave endpoint as the gateway reports it: exactly https://HOST:PORT, nothing more.
// The client builds every request URL from these parts, so a gateway cannot steer a
// request to another path of the attested enclave.
struct Endpoint {
  std::string host;
  std::string port;
  std::string url() const { return "https://" + (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" + port; }
};

Endpoint parse_endpoint(const std::string& endpoint) {
  static const std::regex form(R"(https://([a-z0-9.-]+|\[[0-9a-f:]+\]):([0-9]{1,5}))");
  std::smatch match;
  if (!std::regex_match(endpoint, match, form) || std::stoul(match[2].str()) == 0 || std::stoul(match[2].str()) > 65535) {
    throw std::runtime_error("the gateway reported an invalid enclave endpoint '" + endpoint +
                             "'; expected https://HOST:PORT with nothing after the port");
  }
  std::string host = match[1].str();
  if (host.starts_with("[")) host = host.substr(1, host.size() - 2);
  return {host, match[2].str()};
}

struct AttestedEnclave {
  nlohmann::json enclave;
  licensing::client::AttestationReport report;
};

// Fetches the enclave and its attestation for a fresh nonce, and verifies both against the
// trust store. Prints each check when `verbose`; throws when a step other than a check fails.
AttestedEnclave attest(GlobalOptions& options, const fs::path& session_file, const fs::path& trust_file,
                       const std::string& id, bool verbose) {
  const auto shown = authorized_call(options, session_file, "GET", "/v1/enclaves/" + id);
  if (shown.status != 200) {
    report_problem(shown);
    throw std::runtime_error("cannot read enclave " + id);
  }
  AttestedEnclave attested{nlohmann::json::parse(shown.body), {}};
  const std::string endpoint = attested.enclave.value("endpoint", "");
  const Endpoint parsed_endpoint = parse_endpoint(endpoint);

  auto trust = licensing::client::TrustStore::load(trust_file);
  if (!trust) throw std::runtime_error(trust.error().detail);

  std::vector<std::uint8_t> nonce(32);
  if (!licensing::crypto::ossl::random_bytes(nonce)) throw std::runtime_error("the random number generator failed");
  const auto started = std::chrono::steady_clock::now();
  const auto response = authorized_call(options, session_file, "GET",
                                        "/v1/enclaves/" + id + "/attestation?nonce=" + licensing::base64url::encode(nonce));
  if (response.status != 200) {
    report_problem(response);
    throw std::runtime_error("the server did not attest enclave " + id);
  }
  // The same strict parser as the gateway's: duplicate members or deep nesting are errors.
  auto parsed = licensing::json::parse_strict(response.body, 16);
  if (!parsed) throw std::runtime_error("the attestation document is not valid JSON: " + parsed.error().detail);
  const nlohmann::json evidence = std::move(*parsed);
  const licensing::client::EnclaveExpectation expected{id, parsed_endpoint.host, nonce, std::chrono::system_clock::now()};
  attested.report = licensing::client::verify_enclave_attestation(evidence, expected, *trust);
  const auto milliseconds = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count();

  if (verbose) {
    std::cout << "attestation of enclave " << id << " at " << endpoint << " (nonce of " << nonce.size() << " bytes, "
              << std::fixed << std::setprecision(0) << milliseconds << " ms)\n";
    for (const auto& check : attested.report.checks) {
      std::cout << "  [" << (check.passed ? " ok " : "FAIL") << "] " << check.name << ": " << check.detail << "\n";
    }
    std::cout << (attested.report.verified ? "verdict: attested\n" : "verdict: NOT attested (" + attested.report.failed_check() + ")\n");
  }
  return attested;
}

// The CA bundle for connections to enclaves: the trust store's first, else the gateway's.
std::string enclave_ca_bundle(const GlobalOptions& options, const fs::path& trust_file) {
  auto trust = licensing::client::TrustStore::load(trust_file);
  return trust && !trust->ca_bundles.empty() ? trust->ca_bundles.front() : options.ca_bundle;
}

int enclave_attest(GlobalOptions& options, const fs::path& session_file, const fs::path& trust_file, const std::string& id) {
  const auto attested = attest(options, session_file, trust_file, id, false);
  auto checks = attested.report.checks;
  bool verified = attested.report.verified;

  // The last check: the enclave itself presents the attested certificate at a TLS
  // handshake (GET /healthz, with the owner's client certificate and no token).
  if (verified) {
    const auto [certificate_file, key_file] = client_certificate(options, session_file, id);
    HttpRequest probe{"GET", parse_endpoint(attested.enclave.value("endpoint", "")).url() + "/healthz", {}, {}, "text/plain"};
    auto response = licensing::client::send_attested(
        probe, attested.report,
        HttpOptions{enclave_ca_bundle(options, trust_file), std::chrono::seconds(30), certificate_file.string(),
                    key_file.string(), {}});
    if (response) {
      checks.push_back({"tls_certificate_pinned", true, "the enclave presents the attested certificate"});
    } else {
      checks.push_back({"tls_certificate_pinned", false, response.error().detail});
      verified = false;
    }
  }

  std::cout << "attestation of enclave " << id << " at " << attested.enclave.value("endpoint", "") << "\n";
  for (const auto& check : checks) {
    std::cout << "  [" << (check.passed ? " ok " : "FAIL") << "] " << check.name << ": " << check.detail << "\n";
  }
  std::string failed;
  for (const auto& check : checks) {
    if (!check.passed && failed.empty()) failed = check.name;
  }
  std::cout << (verified ? "verdict: attested\n" : "verdict: NOT attested (" + failed + ")\n");
  return verified ? 0 : 1;
}

int enclave_call(GlobalOptions& options, const fs::path& session_file, const fs::path& trust_file, const std::string& id,
                 const std::string& method, const std::string& path, const std::string& data, bool verbose) {
  if (!path.starts_with("/")) throw std::runtime_error("the enclave path must start with /");
  const auto attested = attest(options, session_file, trust_file, id, verbose);
  if (!attested.report.verified) {
    std::cerr << "error: enclave " << id << " failed attestation (" << attested.report.failed_check()
              << "); nothing was sent. Run `licensectl enclave attest " << id << "` for every check\n";
    return 1;
  }
  const auto& enclave = attested.enclave;
  if (enclave.value("state", "") != "ready") throw std::runtime_error("the enclave is " + enclave.value("state", "") + ", not ready");

  const auto [certificate_file, key_file] = client_certificate(options, session_file, id);
  const auto minted = authorized_call(options, session_file, "POST", "/v1/enclaves/" + id + "/token");
  if (minted.status != 200) return report_problem(minted);
  const auto token = nlohmann::json::parse(minted.body).value("access_token", "");

  // The connection is accepted only when the enclave presents the attested certificate.
  const std::string ca_bundle = enclave_ca_bundle(options, trust_file);
  HttpRequest request{method, parse_endpoint(enclave.value("endpoint", "")).url() + path,
                      {{"Authorization", "Bearer " + token}}, data, "application/octet-stream"};
  auto response = licensing::client::send_attested(
      request, attested.report, HttpOptions{ca_bundle, std::chrono::seconds(30), certificate_file.string(), key_file.string(), {}});
  if (!response) throw std::runtime_error(response.error().detail);
  if (response->body.empty()) {
    std::cout << "HTTP " << response->status << "\n";
  } else {
    std::cout << response->body;
    if (response->body.back() != '\n') std::cout << "\n";
  }
  if (response->status >= 300) {
    std::cerr << "error: the enclave answered HTTP " << response->status << "\n";
    return 1;
  }
  return 0;
}

// licensectl trust: the pinned attestation keys, CA bundles and allowed images.
int trust_change(const fs::path& trust_file, const std::string& kind, const std::string& action, std::string value) {
  auto trust = licensing::client::TrustStore::load(trust_file);
  if (!trust) throw std::runtime_error(trust.error().detail);
  std::vector<std::string>* list = nullptr;
  if (kind == "ak") {
    static const std::regex fingerprint("sha256:[0-9a-f]{64}");
    if (action == "add" && !std::regex_match(value, fingerprint)) {
      throw std::runtime_error("an AK fingerprint looks like sha256:<64 lowercase hex digits>, as licensing-core prints it");
    }
    list = &trust->attestation_keys;
  } else if (kind == "ca") {
    if (action == "add") {
      std::error_code error;
      const auto absolute = fs::absolute(value, error);
      std::ifstream in(absolute);
      std::stringstream content;
      content << in.rdbuf();
      if (!in || content.str().find("-----BEGIN CERTIFICATE-----") == std::string::npos) {
        throw std::runtime_error("cannot read a PEM certificate from " + value);
      }
      value = absolute.string();
    }
    list = &trust->ca_bundles;
  } else {
    static const std::regex digest("[0-9a-f]{64}");
    if (action == "add" && !std::regex_match(value, digest)) {
      throw std::runtime_error("an image digest is 64 lowercase hex digits (SHA-256)");
    }
    list = &trust->allowed_image_sha256;
  }
  const auto found = std::find(list->begin(), list->end(), value);
  if (action == "add" && found == list->end()) list->push_back(value);
  if (action == "remove") {
    if (found == list->end()) throw std::runtime_error(value + " is not in the trust store");
    list->erase(found);
  }
  auto saved = trust->save(trust_file);
  if (!saved) throw std::runtime_error(saved.error().detail);
  std::cout << (action == "add" ? "trusted " : "removed ") << kind << " " << value << " (" << trust_file.string() << ")\n";
  return 0;
}

int trust_list(const fs::path& trust_file) {
  auto trust = licensing::client::TrustStore::load(trust_file);
  if (!trust) throw std::runtime_error(trust.error().detail);
  std::cout << "trust store " << trust_file.string() << "\n";
  for (const auto& key : trust->attestation_keys) std::cout << "ak     " << key << "\n";
  for (const auto& bundle : trust->ca_bundles) std::cout << "ca     " << bundle << "\n";
  for (const auto& image : trust->allowed_image_sha256) std::cout << "image  " << image << "\n";
  for (const auto& [index, value] : trust->boot_pcrs) std::cout << "pcr    " << index << " " << value << "\n";
  return 0;
}

// Shows the server's attestation key, to compare with what licensing-core printed.
int attestation_key(GlobalOptions& options, const fs::path& session_file) {
  resolve_gateway(options, load_session(session_file));
  const auto response = call(options, "GET", "/v1/attestation/key", {});
  if (response.status != 200) return report_problem(response);
  const auto key = nlohmann::json::parse(response.body);
  std::cout << "fingerprint: " << key.value("fingerprint", "") << "\n"
            << "name:        " << key.value("name", "") << "\n"
            << "EK certificate: " << (key.contains("ek_certificate_pem") ? "present" : "none") << "\n"
            << key.value("public_key_pem", "");
  return 0;
}

fs::path own_directory() {
  std::error_code error;
  const auto executable = fs::read_symlink("/proc/self/exe", error);
  return error ? fs::current_path() : executable.parent_path();
}

}  // namespace

int main(int argc, char** argv) {
  GlobalOptions options;
  CLI::App app{"licensectl: sign up, log in and manage the embedded licensing stack"};
  app.require_subcommand(1);
  app.add_option("--gateway", options.gateway_url, "Gateway URL, https://host:port");
  app.add_option("--ca-bundle", options.ca_bundle, "CA bundle (PEM) that the gateway's certificate chains to");
  app.add_option("--stack", options.stack_file, "stack.json written by `licensectl dev up` (or LICENSECTL_STACK)");
  app.add_option("--session", options.session_file, "Session file for tokens (default ~/.config/licensectl/session.json)");
  std::string trust_store_file;
  app.add_option("--trust-store", trust_store_file, "Trust store file (default ~/.config/licensectl/trust.json)");

  std::string username;
  auto* signup_command = app.add_subcommand("signup", "Create an account");
  signup_command->add_option("--username", username, "Username")->required();
  signup_command->add_flag("--password-stdin", options.password_stdin, "Read the password from standard input");
  auto* login_command = app.add_subcommand("login", "Log in and save the tokens to the session file");
  login_command->add_option("--username", username, "Username")->required();
  login_command->add_flag("--password-stdin", options.password_stdin, "Read the password from standard input");
  auto* whoami_command = app.add_subcommand("whoami", "Show the user the saved access token belongs to");
  auto* logout_command = app.add_subcommand("logout", "Revoke the session and delete the session file");

  auto* enclave = app.add_subcommand("enclave", "Create, inspect, delete and call your enclaves");
  enclave->require_subcommand(1);
  std::string enclave_id, idempotency_key, call_method, call_path, call_data;
  auto* enclave_create_command = enclave->add_subcommand("create", "Provision an enclave and wait until it is ready");
  enclave_create_command->add_option("--idempotency-key", idempotency_key, "Repeat-safe key: the same key returns the same enclave");
  auto* enclave_list_command = enclave->add_subcommand("list", "List your enclaves");
  auto* enclave_show_command = enclave->add_subcommand("show", "Show one enclave");
  enclave_show_command->add_option("id", enclave_id, "Enclave id")->required();
  auto* enclave_delete_command = enclave->add_subcommand("delete", "Stop an enclave and remove its data");
  enclave_delete_command->add_option("id", enclave_id, "Enclave id")->required();
  auto* enclave_call_command = enclave->add_subcommand(
      "call", "Send one HTTPS request to the enclave over mutual TLS with an enclave-scoped token");
  enclave_call_command->add_option("id", enclave_id, "Enclave id")->required();
  enclave_call_command->add_option("method", call_method, "GET, PUT, POST or DELETE")
      ->required()
      ->check(CLI::IsMember({"GET", "PUT", "POST", "DELETE"}));
  enclave_call_command->add_option("path", call_path, "Request path, such as /v1/secrets/NAME")->required();
  enclave_call_command->add_option("--data", call_data, "Request body");
  bool call_verbose = false;
  enclave_call_command->add_flag("--verbose", call_verbose, "Print every attestation check before the call");
  auto* enclave_attest_command = enclave->add_subcommand(
      "attest", "Verify the enclave's TPM quote and certificate against the trust store; exit 0 only when all checks pass");
  enclave_attest_command->add_option("id", enclave_id, "Enclave id")->required();

  auto* trust = app.add_subcommand("trust", "Manage pinned attestation keys, CA bundles and allowed enclave images");
  trust->require_subcommand(1);
  std::string trust_kind, trust_value;
  auto* trust_add = trust->add_subcommand("add", "Trust an attestation key (ak), a CA bundle file (ca) or an image digest (image)");
  trust_add->add_option("kind", trust_kind, "ak, ca or image")->required()->check(CLI::IsMember({"ak", "ca", "image"}));
  trust_add->add_option("value", trust_value, "sha256:<hex> AK fingerprint, PEM file, or SHA-256 hex")->required();
  auto* trust_remove = trust->add_subcommand("remove", "Stop trusting an attestation key, CA bundle or image digest");
  trust_remove->add_option("kind", trust_kind, "ak, ca or image")->required()->check(CLI::IsMember({"ak", "ca", "image"}));
  trust_remove->add_option("value", trust_value, "The value as `licensectl trust list` shows it")->required();
  auto* trust_list_command = trust->add_subcommand("list", "Show the trust store");
  auto* attestation_key_command =
      app.add_subcommand("attestation-key", "Show the server's attestation key, to compare before pinning it");

  auto* dev = app.add_subcommand("dev", "Run the embedded stack (SQLite, built-in CA) in the background");
  dev->require_subcommand(1);
  licensing::client::DevUpOptions up_options;
  std::string down_directory;
  auto* up = dev->add_subcommand("up", "Start licensing-core and licensing-gateway under DIR");
  up->add_option("--dir", up_options.directory, "Directory for data, logs and stack.json")->required();
  up->add_option("--port", up_options.port, "Gateway port (0 picks a free one)")->capture_default_str();
  up->add_option("--log-level", up_options.log_level, "Server log level")->capture_default_str();
  up->add_option("--gateway-arg", up_options.gateway_arguments,
                 "Extra licensing-gateway argument, repeatable; write options as --gateway-arg=--signup-limit=100");
  auto* down = dev->add_subcommand("down", "Stop the stack started under DIR");
  down->add_option("--dir", down_directory, "The directory given to `dev up`")->required();

  CLI11_PARSE(app, argc, argv);

  try {
    if (up->parsed()) {
      up_options.binary_directory = own_directory();
      if (const char* binaries = std::getenv("LICENSING_BIN_DIR")) up_options.binary_directory = binaries;
      return licensing::client::dev_up(up_options);
    }
    if (down->parsed()) return licensing::client::dev_down(down_directory);

    const fs::path session_file = options.session_file.empty() ? default_session_file() : fs::path(options.session_file);
    if (signup_command->parsed()) return signup(options, username);
    if (login_command->parsed()) return login(options, session_file, username);
    if (whoami_command->parsed()) return whoami(options, session_file);
    if (logout_command->parsed()) return logout(options, session_file);
    if (enclave_create_command->parsed()) return enclave_create(options, session_file, idempotency_key);
    if (enclave_list_command->parsed()) return enclave_list(options, session_file);
    if (enclave_show_command->parsed()) return enclave_show(options, session_file, enclave_id);
    if (enclave_delete_command->parsed()) return enclave_delete(options, session_file, enclave_id);
    const fs::path trust_file =
        trust_store_file.empty() ? licensing::client::default_trust_store_file() : fs::path(trust_store_file);
    if (enclave_call_command->parsed()) {
      return enclave_call(options, session_file, trust_file, enclave_id, call_method, call_path, call_data, call_verbose);
    }
    if (enclave_attest_command->parsed()) return enclave_attest(options, session_file, trust_file, enclave_id);
    if (trust_add->parsed()) return trust_change(trust_file, trust_kind, "add", trust_value);
    if (trust_remove->parsed()) return trust_change(trust_file, trust_kind, "remove", trust_value);
    if (trust_list_command->parsed()) return trust_list(trust_file);
    if (attestation_key_command->parsed()) return attestation_key(options, session_file);
  } catch (const std::exception& failure) {
    std::cerr << "error: " << failure.what() << "\n";
    return 1;
  }
  return 1;
}
