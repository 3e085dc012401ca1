#include "client/dev_stack.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <chrono>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <thread>
#include <vector>

#include "client/https_client.hpp"

namespace licensing::client {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

// Creates `path` 0700. An existing directory keeps its mode: `--dir ~` must not lock
// others out of a home directory; what the stack writes lives in 0700 subdirectories.
void make_private_directory(const fs::path& path) {
  if (fs::exists(path)) return;
  fs::create_directories(path);
  fs::permissions(path, fs::perms::owner_all, fs::perm_options::replace);
}

// A TCP port on 127.0.0.1 that was free a moment ago.
std::uint16_t free_port() {
  const int probe = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (probe < 0) throw std::runtime_error("socket() failed");
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof(address);
  const bool bound = bind(probe, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0 &&
                     getsockname(probe, reinterpret_cast<sockaddr*>(&address), &length) == 0;
  close(probe);
  if (!bound) throw std::runtime_error("cannot find a free port on 127.0.0.1");
  return ntohs(address.sin_port);
}

// Starts `arguments` in a new session with stdin from /dev/null and output appended to
// `log_file`, so it outlives licensectl.
pid_t spawn(const std::vector<std::string>& arguments, const fs::path& log_file) {
  const pid_t pid = fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid > 0) return pid;

  setsid();
  const int input = open("/dev/null", O_RDONLY);
  const int output = open(log_file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (input < 0 || output < 0) _exit(127);
  dup2(input, STDIN_FILENO);
  dup2(output, STDOUT_FILENO);
  dup2(output, STDERR_FILENO);
  std::vector<char*> argv;
  for (const auto& argument : arguments) argv.push_back(const_cast<char*>(argument.c_str()));
  argv.push_back(nullptr);
  execv(argv[0], argv.data());
  _exit(127);
}

bool is_running(pid_t pid) {
  int status = 0;
  if (waitpid(pid, &status, WNOHANG) == pid) return false;  // our own child, exited
  return kill(pid, 0) == 0;
}

// True when `pid` runs the program `name`, so a recycled pid is never signalled.
bool runs_program(pid_t pid, const std::string& name) {
  std::error_code error;
  const auto executable = fs::read_symlink(fs::path("/proc") / std::to_string(pid) / "exe", error);
  // After a rebuild or upgrade the link reads "NAME (deleted)"; it is still that program.
  std::string filename = executable.filename().string();
  if (filename.ends_with(" (deleted)")) filename.resize(filename.size() - std::string_view(" (deleted)").size());
  return !error && filename == name;
}

std::string tail_of(const fs::path& file, std::size_t lines) {
  std::ifstream in(file);
  std::vector<std::string> all;
  for (std::string line; std::getline(in, line);) all.push_back(line);
  std::ostringstream out;
  for (std::size_t i = all.size() > lines ? all.size() - lines : 0; i < all.size(); ++i) out << "  " << all[i] << "\n";
  return out.str();
}

void stop_process(pid_t pid, const std::string& name) {
  if (!is_running(pid) || !runs_program(pid, name)) return;
  kill(pid, SIGTERM);
  for (int i = 0; i < 100 && is_running(pid); ++i) std::this_thread::sleep_for(100ms);
  if (is_running(pid)) {
    std::cerr << "warning: " << name << " (pid " << pid << ") did not stop in 10 s; sending SIGKILL\n";
    kill(pid, SIGKILL);
  }
}

template <typename Predicate>
bool wait_for(Predicate ready, std::chrono::seconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (ready()) return true;
    std::this_thread::sleep_for(100ms);
  }
  return false;
}

}  // namespace

int dev_up(const DevUpOptions& options) {
  const fs::path directory = fs::absolute(options.directory).lexically_normal();
  const fs::path stack_file = directory / "stack.json";
  if (fs::exists(stack_file)) {
    std::ifstream in(stack_file);
    const auto stack = nlohmann::json::parse(in, nullptr, false);
    if (stack.is_object() && stack.contains("pids")) {
      for (const auto& [name, pid] : stack["pids"].items()) {
        if (pid.is_number_integer() && is_running(pid.get<pid_t>())) {
          std::cerr << "error: a stack is already running in " << directory << " (" << name << " pid " << pid
                    << "); run `licensectl dev down --dir " << directory.string() << "` first\n";
          return 1;
        }
      }
    }
  }

  const fs::path core_binary = options.binary_directory / "licensing-core";
  const fs::path gateway_binary = options.binary_directory / "licensing-gateway";
  for (const auto& binary : {core_binary, gateway_binary}) {
    if (access(binary.c_str(), X_OK) != 0) {
      std::cerr << "error: " << binary << " is missing or not executable; build the project first\n";
      return 1;
    }
  }

  make_private_directory(directory);
  make_private_directory(directory / "core");
  make_private_directory(directory / "gateway");
  make_private_directory(directory / "logs");
  make_private_directory(directory / "db");
  const fs::path socket = directory / "core" / "core.sock";
  const fs::path port_file = directory / "gateway" / "port";
  fs::remove(socket);
  fs::remove(port_file);

  // The core gives enclaves the gateway's CSR URL before the gateway runs, so the
  // gateway's port is chosen first.
  const std::uint16_t port = options.port != 0 ? options.port : free_port();
  const std::string url = "https://127.0.0.1:" + std::to_string(port);
  const std::string database = "sqlite://" + (directory / "db" / "licensing.db").string();

  std::cout << "starting licensing-core (data in " << (directory / "core").string() << ")\n";
  const pid_t core = spawn({core_binary.string(), "--data-dir", (directory / "core").string(), "--database", database,
                            "--csr-url", url + "/v1/enclave-certificates", "--log-level", options.log_level},
                           directory / "logs" / "core.log");
  if (!wait_for([&] { return fs::exists(socket) || !is_running(core); }, 30s) || !is_running(core)) {
    std::cerr << "error: licensing-core did not start; its log ends with:\n" << tail_of(directory / "logs" / "core.log", 20);
    stop_process(core, "licensing-core");
    return 1;
  }

  std::cout << "starting licensing-gateway on " << url << " (SQLite database in " << (directory / "db").string() << ")\n";
  std::vector<std::string> gateway_command = {gateway_binary.string(), "--core", "unix:" + socket.string(), "--database",
                                              database, "--tls-from-core", (directory / "gateway" / "tls").string(),
                                              "--port", std::to_string(port), "--port-file", port_file.string(),
                                              "--log-level", options.log_level};
  gateway_command.insert(gateway_command.end(), options.gateway_arguments.begin(), options.gateway_arguments.end());
  const pid_t gateway = spawn(gateway_command, directory / "logs" / "gateway.log");
  const auto stop_both = [&] {
    stop_process(gateway, "licensing-gateway");
    stop_process(core, "licensing-core");
  };
  if (!wait_for([&] { return fs::exists(port_file) || !is_running(gateway); }, 30s) || !is_running(gateway)) {
    std::cerr << "error: licensing-gateway did not start; its log ends with:\n"
              << tail_of(directory / "logs" / "gateway.log", 20);
    stop_both();
    return 1;
  }

  const fs::path ca_bundle = directory / "gateway" / "tls" / "ca.pem";
  const bool ready = wait_for(
      [&] {
        auto response = send({"GET", url + "/readyz", {}, {}, {}}, {ca_bundle.string(), 5s, {}, {}, {}});
        return response && response->status == 200;
      },
      30s);
  if (!ready) {
    std::cerr << "error: the gateway at " << url << " did not become ready; its log ends with:\n"
              << tail_of(directory / "logs" / "gateway.log", 20);
    stop_both();
    return 1;
  }

  const nlohmann::json stack = {{"gateway_url", url},
                                {"ca_bundle", ca_bundle.string()},
                                {"data_dir", directory.string()},
                                {"pids", {{"core", core}, {"gateway", gateway}}}};
  std::ofstream(stack_file) << stack.dump(2) << "\n";
  // licensing-core prints its attestation key's fingerprint once it has opened the TPM.
  std::string fingerprint = "(see " + (directory / "logs" / "core.log").string() + ")";
  {
    std::ifstream log(directory / "logs" / "core.log");
    const std::string prefix = "attestation key fingerprint: ";
    for (std::string line; std::getline(log, line);) {
      if (line.starts_with(prefix)) fingerprint = line.substr(prefix.size());
    }
  }
  std::cout << "stack ready: " << url << "\n"
            << "  CA bundle:  " << ca_bundle.string() << "\n"
            << "  attestation key: " << fingerprint << "\n"
            << "  stack file: " << stack_file.string() << "\n"
            << "  logs:       " << (directory / "logs").string() << "\n";
  return 0;
}

int dev_down(const fs::path& directory) {
  const fs::path stack_file = fs::absolute(directory) / "stack.json";
  std::ifstream in(stack_file);
  if (!in) {
    std::cerr << "error: no stack file at " << stack_file << "; nothing to stop\n";
    return 1;
  }
  const auto stack = nlohmann::json::parse(in, nullptr, false);
  if (!stack.is_object() || !stack.contains("pids") || !stack["pids"].is_object()) {
    std::cerr << "error: " << stack_file << " is not a stack file\n";
    return 1;
  }
  // The gateway goes first, so no request reaches a stopped core.
  const std::vector<std::pair<std::string, std::string>> order = {{"gateway", "licensing-gateway"},
                                                                   {"core", "licensing-core"}};
  for (const auto& [name, program] : order) {
    const auto pid = stack["pids"].value(name, 0);
    if (pid > 0) {
      std::cout << "stopping " << program << " (pid " << pid << ")\n";
      stop_process(pid, program);
    }
  }
  // Enclaves outlive a core restart on purpose; taking the stack down stops them too.
  const fs::path enclave_root = fs::absolute(directory) / "core" / "enclaves";
  std::error_code error;
  for (const auto& entry : fs::directory_iterator("/proc", error)) {
    const std::string name = entry.path().filename().string();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
    const pid_t pid = static_cast<pid_t>(std::stol(name));
    if (!runs_program(pid, "enclave")) continue;
    std::ifstream environ_file(entry.path() / "environ", std::ios::binary);
    for (std::string variable; std::getline(environ_file, variable, '\0');) {
      if (variable.starts_with("LICENSING_ENCLAVE_DIR=") &&
          fs::path(variable.substr(22)).parent_path() == enclave_root) {
        std::cout << "stopping enclave (pid " << pid << ")\n";
        stop_process(pid, "enclave");
        break;
      }
    }
  }

  in.close();
  fs::remove(stack_file);
  std::cout << "stack stopped; data kept in " << fs::absolute(directory).string() << "\n";
  return 0;
}

}  // namespace licensing::client
