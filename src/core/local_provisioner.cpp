#include "core/local_provisioner.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <fmt/core.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <set>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#include "common/logging.hpp"
#include "crypto/openssl.hpp"

namespace licensing::core {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

constexpr const char* kJwksFile = "jwks.json";
constexpr const char* kCaBundleFile = "ca.pem";
constexpr const char* kBootstrapFile = "bootstrap";
constexpr const char* kPidFile = "enclave.pid";

std::unexpected<Error<ProvisionError>> fail_io(std::string_view what, const fs::path& path) {
  return fail(ProvisionError::io, fmt::format("{} {}: {}", what, path.string(), std::strerror(errno)));
}

// The NUL-separated environment of a process; empty when it cannot be read (another
// user's process, a zombie, or one that just exited).
std::map<std::string, std::string> read_environment(pid_t pid) {
  std::ifstream file(fmt::format("/proc/{}/environ", pid), std::ios::binary);
  std::map<std::string, std::string> environment;
  std::string entry;
  while (std::getline(file, entry, '\0')) {
    const auto equals = entry.find('=');
    if (equals == std::string::npos) continue;
    const std::string name = entry.substr(0, equals);
    if (name.starts_with("LICENSING_ENCLAVE_")) environment[name] = entry.substr(equals + 1);
  }
  return environment;
}

// True when nothing listens on 127.0.0.1:port, checked by binding it briefly.
bool is_port_free(std::uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  const int on = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const bool bound = ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0;
  ::close(fd);
  return bound;
}

}  // namespace

LocalProvisioner::LocalProvisioner(LocalProvisionerConfig config) : config_(std::move(config)) {
  config_.root = fs::weakly_canonical(config_.root);
}

std::string LocalProvisioner::endpoint(std::string_view, std::uint16_t port) const {
  return fmt::format("https://127.0.0.1:{}", port);
}

std::vector<std::string> LocalProvisioner::certificate_ip_addresses() const { return {"127.0.0.1"}; }

void LocalProvisioner::reap_children() {
  std::lock_guard lock(mutex_);
  for (auto it = children_.begin(); it != children_.end();) {
    int status = 0;
    const pid_t reaped = ::waitpid(it->first, &status, WNOHANG);
    if (reaped == it->first || (reaped < 0 && errno == ECHILD)) {
      logging::info("enclave_process_exited", {{"enclave_id", it->second}, {"pid", it->first}, {"status", status}});
      it = children_.erase(it);
    } else {
      ++it;
    }
  }
}

std::multimap<std::string, pid_t> LocalProvisioner::scan_processes() {
  reap_children();
  std::multimap<std::string, pid_t> found;
  std::error_code error;
  for (const auto& entry : fs::directory_iterator("/proc", error)) {
    const std::string name = entry.path().filename().string();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
    const pid_t pid = static_cast<pid_t>(std::stol(name));
    if (pid == ::getpid()) continue;

    const auto environment = read_environment(pid);
    const auto id = environment.find("LICENSING_ENCLAVE_ID");
    const auto directory = environment.find("LICENSING_ENCLAVE_DIR");
    if (id == environment.end() || directory == environment.end()) continue;
    // The marker: the process's private directory is ROOT/<its id>, which only this
    // provisioner (with this root) hands out.
    if (fs::path(directory->second) != config_.root / id->second) continue;
    found.emplace(id->second, pid);
  }
  return found;
}

std::multimap<std::string, pid_t> LocalProvisioner::live_processes() {
  auto found = scan_processes();

  // A child between fork and exec still shows this program's environment, so the scan
  // misses it; the children this run started count as live until they exit.
  std::lock_guard lock(mutex_);
  for (const auto& [pid, id] : children_) {
    // WNOWAIT leaves an exited child for the code that reaps it and records its status.
    siginfo_t info{};
    if (::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) != 0 || info.si_pid != 0) {
      continue;
    }
    const auto [first, last] = found.equal_range(id);
    const bool listed = std::any_of(first, last, [pid](const auto& entry) { return entry.second == pid; });
    if (!listed) found.emplace(id, pid);
  }
  return found;
}

std::vector<std::string> LocalProvisioner::running_instances() {
  std::set<std::string> ids;
  for (const auto& [id, pid] : live_processes()) ids.insert(id);
  return {ids.begin(), ids.end()};
}

std::vector<pid_t> LocalProvisioner::find_processes(std::string_view enclave_id) {
  std::vector<pid_t> pids;
  const auto processes = live_processes();
  const auto [first, last] = processes.equal_range(std::string(enclave_id));
  for (auto it = first; it != last; ++it) pids.push_back(it->second);
  return pids;
}

Result<void, ProvisionError> LocalProvisioner::stop(std::string_view enclave_id) {
  auto pids = find_processes(enclave_id);
  if (pids.empty()) return {};

  // Each instance leads its own process group, so the signal reaches its children too.
  for (pid_t pid : pids) {
    if (::kill(-pid, SIGTERM) != 0) ::kill(pid, SIGTERM);
  }
  const auto deadline = std::chrono::steady_clock::now() + config_.stop_grace;
  while (std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(50ms);
    pids = find_processes(enclave_id);
    if (pids.empty()) break;
  }

  for (pid_t pid : pids) {
    logging::warn("enclave_process_killed", {{"enclave_id", enclave_id}, {"pid", pid}});
    if (::kill(-pid, SIGKILL) != 0) ::kill(pid, SIGKILL);
  }
  for (int attempt = 0; attempt < 100 && !pids.empty(); ++attempt) {
    std::this_thread::sleep_for(20ms);
    pids = find_processes(enclave_id);
  }
  if (!pids.empty()) {
    return fail(ProvisionError::spawn, fmt::format("enclave {} still runs 2 s after SIGKILL", enclave_id));
  }
  logging::info("enclave_process_stopped", {{"enclave_id", enclave_id}});
  return {};
}

Result<void, ProvisionError> LocalProvisioner::remove(std::string_view enclave_id) {
  auto stopped = stop(enclave_id);
  if (!stopped) return stopped;
  std::error_code error;
  fs::remove_all(config_.root / std::string(enclave_id), error);
  if (error) {
    return fail(ProvisionError::io, fmt::format("removing {}: {}", (config_.root / std::string(enclave_id)).string(),
                                                error.message()));
  }
  return {};
}

Result<void, ProvisionError> LocalProvisioner::publish_jwks(std::string_view enclave_id, const std::string& jwks_json) {
  const fs::path directory = config_.root / std::string(enclave_id);
  if (!fs::exists(directory)) return fail(ProvisionError::io, fmt::format("no directory for enclave {}", enclave_id));
  auto written = crypto::ossl::write_file_atomically(directory / kJwksFile, jwks_json, 0600);
  if (!written) return fail(ProvisionError::io, written.error().detail);
  for (const pid_t pid : find_processes(enclave_id)) ::kill(pid, SIGHUP);
  return {};
}

Result<void, ProvisionError> LocalProvisioner::write_files(const fs::path& directory, const InstanceConfig& config) {
  auto write = [](const fs::path& path, std::string_view bytes) -> Result<void, ProvisionError> {
    auto written = crypto::ossl::write_file_atomically(path, bytes, 0600);
    if (!written) return fail(ProvisionError::io, written.error().detail);
    return {};
  };
  if (auto written = write(directory / kJwksFile, config.jwks_json); !written) return written;
  if (auto written = write(directory / kCaBundleFile, config.ca_bundle_pem); !written) return written;
  if (config.bootstrap_credential) return write(directory / kBootstrapFile, config.bootstrap_credential->text());

  std::error_code error;
  fs::remove(directory / kBootstrapFile, error);
  return {};
}

Result<pid_t, ProvisionError> LocalProvisioner::spawn(const fs::path& directory, const InstanceConfig& config) {
  const fs::path log_directory = config_.root / "logs";
  fs::create_directories(log_directory);
  ::chmod(log_directory.c_str(), 0700);
  const fs::path log_path = log_directory / (config.enclave_id + ".log");
  const int log_fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (log_fd < 0) return fail_io("cannot open the log file", log_path);

  // Everything the child needs is built before fork: after it, only async-signal-safe
  // calls are allowed.
  const std::vector<std::string> environment = {
      "LICENSING_ENCLAVE_ID=" + config.enclave_id,
      "LICENSING_ENCLAVE_OWNER=" + config.owner_id,
      "LICENSING_ENCLAVE_DIR=" + directory.string(),
      fmt::format("LICENSING_ENCLAVE_LISTEN=127.0.0.1:{}", config.port),
      "LICENSING_ENCLAVE_CSR_URL=" + config.csr_url,
      "LICENSING_ENCLAVE_CA_BUNDLE=" + (directory / kCaBundleFile).string(),
      "LICENSING_ENCLAVE_BOOTSTRAP_FILE=" + (directory / kBootstrapFile).string(),
      "LICENSING_ENCLAVE_JWKS_FILE=" + (directory / kJwksFile).string(),
      "LICENSING_ENCLAVE_ISSUER=" + config.issuer,
      std::string("LICENSING_ENCLAVE_REQUIRE_CLIENT_CERT=") + (config.require_client_certificate ? "true" : "false"),
      "PATH=/usr/local/bin:/usr/bin:/bin",
  };
  std::vector<char*> envp;
  for (const auto& entry : environment) envp.push_back(const_cast<char*>(entry.c_str()));
  envp.push_back(nullptr);
  const std::string binary = config_.binary.string();
  std::array<char*, 2> argv = {const_cast<char*>(binary.c_str()), nullptr};
  const std::string working_directory = directory.string();

  const pid_t pid = ::fork();
  if (pid < 0) {
    ::close(log_fd);
    return fail(ProvisionError::spawn, fmt::format("fork failed: {}", std::strerror(errno)));
  }
  if (pid == 0) {
    // The child: its own process group, no inherited descriptors or blocked signals, the
    // log file as stdout and stderr, then exec.
    ::setpgid(0, 0);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    const int null_fd = ::open("/dev/null", O_RDONLY);
    ::dup2(null_fd, 0);
    ::dup2(log_fd, 1);
    ::dup2(log_fd, 2);
    ::close_range(3, ~0U, 0);
    if (::chdir(working_directory.c_str()) != 0) ::_exit(126);
    ::execve(binary.c_str(), argv.data(), envp.data());
    ::_exit(127);
  }

  ::setpgid(pid, pid);  // also in the parent, so the group exists before start() returns
  ::close(log_fd);
  return pid;
}

Result<std::string, ProvisionError> LocalProvisioner::start(const InstanceConfig& config) {
  if (::access(config_.binary.c_str(), X_OK) != 0) {
    return fail(ProvisionError::spawn, fmt::format("the enclave program {} is not executable: {}",
                                                   config_.binary.string(), std::strerror(errno)));
  }
  auto stopped = stop(config.enclave_id);
  if (!stopped) return std::unexpected(stopped.error());
  if (!is_port_free(config.port)) {
    return fail(ProvisionError::port_in_use, fmt::format("port {} on 127.0.0.1 is in use by another program", config.port));
  }

  auto root_ready = crypto::ossl::ensure_private_directory(config_.root);
  if (!root_ready) return fail(ProvisionError::io, root_ready.error().detail);
  const fs::path directory = config_.root / config.enclave_id;
  if (::mkdir(directory.c_str(), 0700) != 0 && errno != EEXIST) return fail_io("cannot create", directory);
  if (::chmod(directory.c_str(), 0700) != 0) return fail_io("cannot set the mode of", directory);
  auto written = write_files(directory, config);
  if (!written) return std::unexpected(written.error());

  std::lock_guard lock(mutex_);
  auto pid = spawn(directory, config);
  if (!pid) return std::unexpected(pid.error());
  children_[*pid] = config.enclave_id;

  // The pid file is for operators; instances are found by their environment.
  std::ofstream(directory / kPidFile) << *pid << "\n";
  logging::info("enclave_process_started", {{"enclave_id", config.enclave_id}, {"pid", *pid}, {"port", config.port}});
  return directory.string();
}

}  // namespace licensing::core
