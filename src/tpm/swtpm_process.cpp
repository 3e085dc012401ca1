#include "tpm/swtpm_process.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <optional>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "common/logging.hpp"

extern char** environ;

namespace licensing::tpm {
namespace {

constexpr int max_start_attempts = 5;
constexpr auto poll_interval = std::chrono::milliseconds(20);
constexpr auto stop_grace = std::chrono::seconds(5);

std::string errno_text(int error) { return std::error_code(error, std::generic_category()).message(); }

// Owns a socket descriptor.
class Socket {
 public:
  explicit Socket(int fd) : fd_(fd) {}
  Socket(const Socket&) = delete;
  Socket& operator=(const Socket&) = delete;
  ~Socket() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }

 private:
  int fd_;
};

sockaddr_in loopback(std::uint16_t port) {
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return address;
}

// Asks the kernel for a free TCP port on 127.0.0.1 by binding port 0. The port is free
// again when this returns, so swtpm may still lose it to another process.
TpmResult<std::uint16_t> free_loopback_port() {
  Socket socket(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (socket.get() < 0) return fail(TpmError::process_failed, "socket: " + errno_text(errno));

  sockaddr_in address = loopback(0);
  if (::bind(socket.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
    return fail(TpmError::process_failed, "bind 127.0.0.1:0: " + errno_text(errno));
  }
  socklen_t length = sizeof(address);
  if (::getsockname(socket.get(), reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    return fail(TpmError::process_failed, "getsockname: " + errno_text(errno));
  }
  return ntohs(address.sin_port);
}

bool port_is_free(std::uint16_t port) {
  Socket socket(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (socket.get() < 0) return false;
  sockaddr_in address = loopback(port);
  return ::bind(socket.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0;
}

bool accepts_connections(std::uint16_t port) {
  Socket socket(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (socket.get() < 0) return false;
  sockaddr_in address = loopback(port);
  return ::connect(socket.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0;
}

// Starts `arguments` with stdout and stderr appended to `output`.
TpmResult<pid_t> spawn(const std::vector<std::string>& arguments, const std::filesystem::path& output) {
  std::vector<char*> argv;
  argv.reserve(arguments.size() + 1);
  for (const auto& argument : arguments) argv.push_back(const_cast<char*>(argument.c_str()));
  argv.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, output.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
  posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
  // The child starts with no blocked signals and default handlers, whatever this process
  // blocks for its own signal thread; otherwise SIGTERM would not stop swtpm.
  posix_spawnattr_t attributes;
  posix_spawnattr_init(&attributes);
  sigset_t none;
  sigemptyset(&none);
  sigset_t all;
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attributes, &none);
  posix_spawnattr_setsigdefault(&attributes, &all);
  posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  pid_t pid = -1;
  const int status = ::posix_spawnp(&pid, argv[0], &actions, &attributes, argv.data(), environ);
  posix_spawnattr_destroy(&attributes);
  posix_spawn_file_actions_destroy(&actions);
  if (status != 0) return fail(TpmError::process_failed, "cannot start " + arguments[0] + ": " + errno_text(status));
  return pid;
}

// Waits for `pid` for at most `timeout`; kills it when the time is up. Returns the raw
// wait status, or nullopt when the process had to be killed.
std::optional<int> wait_bounded(pid_t pid, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    const pid_t done = ::waitpid(pid, &status, WNOHANG);
    if (done == pid) return status;
    if (done < 0 && errno != EINTR) return std::nullopt;
    std::this_thread::sleep_for(poll_interval);
  }
  ::kill(pid, SIGKILL);
  int status = 0;
  ::waitpid(pid, &status, 0);
  return std::nullopt;
}

TpmResult<void> write_text(const std::filesystem::path& path, const std::string& text) {
  std::ofstream file(path, std::ios::trunc);
  file << text;
  file.close();
  if (!file) return fail(TpmError::io, "cannot write " + path.string());
  return {};
}

TpmResult<void> make_private_directory(const std::filesystem::path& directory) {
  auto created = crypto::ossl::ensure_private_directory(directory);
  if (!created) return fail(TpmError::io, created.error().detail);
  return {};
}

}  // namespace

TpmResult<void> provision_swtpm(const SwtpmSetupOptions& options) {
  const std::filesystem::path state = std::filesystem::absolute(options.state_directory);
  const std::filesystem::path ca =
      options.ca_directory.empty() ? state / "localca" : std::filesystem::absolute(options.ca_directory);
  if (auto made = make_private_directory(state); !made) return made;
  if (auto made = make_private_directory(ca); !made) return made;

  // swtpm_localca reads its CA paths from a configuration file, and swtpm_setup finds that
  // file through its own; both are written here so nothing under /etc or /var is used.
  const std::filesystem::path localca_config = ca / "swtpm-localca.conf";
  const std::filesystem::path localca_options = ca / "swtpm-localca.options";
  const std::filesystem::path setup_config = ca / "swtpm_setup.conf";
  if (auto written = write_text(localca_config, "statedir = " + ca.string() + "\nsigningkey = " +
                                                    (ca / "signkey.pem").string() + "\nissuercert = " +
                                                    (ca / "issuercert.pem").string() + "\ncertserial = " +
                                                    (ca / "certserial").string() + "\n");
      !written) {
    return written;
  }
  if (auto written = write_text(localca_options,
                                "--platform-manufacturer licensing\n--platform-version 1.0\n--platform-model swtpm\n");
      !written) {
    return written;
  }
  if (auto written = write_text(setup_config, "create_certs_tool = /usr/bin/swtpm_localca\ncreate_certs_tool_config = " +
                                                  localca_config.string() + "\ncreate_certs_tool_options = " +
                                                  localca_options.string() + "\nactive_pcr_banks = sha256\n");
      !written) {
    return written;
  }

  const std::filesystem::path log = state / "swtpm_setup.log";
  const std::vector<std::string> arguments = {
      "swtpm_setup",     "--tpm2",           "--tpmstate", state.string(), "--create-ek-cert", "--create-platform-cert",
      "--lock-nvram",    "--config",         setup_config.string(),        "--logfile",        log.string(),
      "--pcr-banks",     "sha256",
  };
  auto pid = spawn(arguments, state / "swtpm_setup.out");
  if (!pid) return std::unexpected(pid.error());

  const auto status = wait_bounded(*pid, options.timeout);
  if (!status) return fail(TpmError::process_failed, "swtpm_setup timed out and was killed; see " + log.string());
  if (!WIFEXITED(*status) || WEXITSTATUS(*status) != 0) {
    return fail(TpmError::process_failed, "swtpm_setup failed; see " + log.string());
  }
  logging::info("swtpm_provisioned", {{"state_directory", state.string()}, {"ca_directory", ca.string()}});
  return {};
}

TpmResult<SwtpmProcess> SwtpmProcess::start(const SwtpmOptions& options) {
  const std::filesystem::path state = std::filesystem::absolute(options.state_directory);
  if (auto made = make_private_directory(state); !made) return std::unexpected(made.error());

  std::string last_error;
  for (int attempt = 0; attempt < max_start_attempts; ++attempt) {
    // The swtpm TCTI expects the control channel on the server port + 1.
    auto server_port = free_loopback_port();
    if (!server_port) return std::unexpected(server_port.error());
    if (*server_port == 65535) continue;
    const auto control_port = std::optional<std::uint16_t>(static_cast<std::uint16_t>(*server_port + 1));
    if (!port_is_free(*control_port)) {
      last_error = "port " + std::to_string(*control_port) + " is in use";
      continue;
    }

    const std::vector<std::string> arguments = {
        "swtpm",
        "socket",
        "--tpm2",
        "--tpmstate",
        "dir=" + state.string(),
        "--server",
        "type=tcp,port=" + std::to_string(*server_port) + ",bindaddr=127.0.0.1",
        "--ctrl",
        "type=tcp,port=" + std::to_string(*control_port) + ",bindaddr=127.0.0.1",
        "--flags",
        "not-need-init,startup-clear",
        "--log",
        "file=" + (state / "swtpm.log").string() + ",level=1",
    };
    auto pid = spawn(arguments, state / "swtpm.out");
    if (!pid) return std::unexpected(pid.error());

    SwtpmProcess process;
    process.pid_ = *pid;
    process.server_port_ = *server_port;
    process.control_port_ = *control_port;

    const auto deadline = std::chrono::steady_clock::now() + options.start_timeout;
    bool exited = false;
    while (std::chrono::steady_clock::now() < deadline) {
      int status = 0;
      if (::waitpid(process.pid_, &status, WNOHANG) == process.pid_) {
        process.pid_ = -1;
        exited = true;
        break;
      }
      if (accepts_connections(process.server_port_)) {
        logging::info("swtpm_started", {{"pid", process.pid_}, {"port", process.server_port_}});
        return process;
      }
      std::this_thread::sleep_for(poll_interval);
    }
    last_error = exited ? "swtpm exited during start; see " + (state / "swtpm.log").string()
                        : "swtpm did not accept connections in time";
    // Leaving scope stops a process that is still running.
  }
  return fail(TpmError::process_failed, last_error);
}

SwtpmProcess::SwtpmProcess(SwtpmProcess&& other) noexcept
    : pid_(std::exchange(other.pid_, -1)), server_port_(other.server_port_), control_port_(other.control_port_) {}

SwtpmProcess& SwtpmProcess::operator=(SwtpmProcess&& other) noexcept {
  if (this != &other) {
    stop();
    pid_ = std::exchange(other.pid_, -1);
    server_port_ = other.server_port_;
    control_port_ = other.control_port_;
  }
  return *this;
}

SwtpmProcess::~SwtpmProcess() { stop(); }

std::string SwtpmProcess::tcti_config() const {
  return "swtpm:host=127.0.0.1,port=" + std::to_string(server_port_);
}

TpmResult<void> SwtpmProcess::power_cycle() {
  if (pid_ <= 0) return fail(TpmError::unreachable, "swtpm is not running");

  Socket socket(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in address = loopback(control_port_);
  if (socket.get() < 0 || ::connect(socket.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
    return fail(TpmError::unreachable, "cannot connect to the swtpm control port: " + errno_text(errno));
  }

  // CMD_INIT (2) with no flags, both big-endian; the answer is a 4-byte TPM result code.
  const std::uint8_t request[8] = {0, 0, 0, 2, 0, 0, 0, 0};
  if (::send(socket.get(), request, sizeof(request), MSG_NOSIGNAL) != static_cast<ssize_t>(sizeof(request))) {
    return fail(TpmError::unreachable, "cannot send CMD_INIT: " + errno_text(errno));
  }
  std::uint8_t response[4] = {};
  std::size_t received = 0;
  while (received < sizeof(response)) {
    const ssize_t count = ::recv(socket.get(), response + received, sizeof(response) - received, 0);
    if (count <= 0) return fail(TpmError::unreachable, "no answer to CMD_INIT");
    received += static_cast<std::size_t>(count);
  }
  if (response[0] != 0 || response[1] != 0 || response[2] != 0 || response[3] != 0) {
    return fail(TpmError::failure, "swtpm rejected CMD_INIT");
  }
  return {};
}

bool SwtpmProcess::exited() {
  if (pid_ <= 0) return true;
  int status = 0;
  const pid_t reaped = ::waitpid(pid_, &status, WNOHANG);
  if (reaped == pid_ || (reaped < 0 && errno == ECHILD)) {
    logging::warn("swtpm_exited", {{"pid", pid_}, {"status", status}});
    pid_ = -1;
    return true;
  }
  return false;
}

void SwtpmProcess::stop() {
  if (pid_ <= 0) return;

  const pid_t pid = std::exchange(pid_, -1);
  ::kill(pid, SIGTERM);
  if (!wait_bounded(pid, stop_grace)) logging::warn("swtpm_killed", {{"pid", pid}});
}

}  // namespace licensing::tpm
