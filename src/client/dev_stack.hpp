// `licensectl dev up|down`: the embedded stack (licensing-core and licensing-gateway on
// SQLite) as background processes under one directory, described by DIR/stack.json:
// {"gateway_url", "ca_bundle", "data_dir", "pids": {"core": pid, "gateway": pid}}.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace licensing::client {

struct DevUpOptions {
  std::filesystem::path directory;
  std::filesystem::path binary_directory;  // where licensing-core and licensing-gateway are
  std::uint16_t port = 0;                  // 0 picks a free port
  std::string log_level = "info";
  std::vector<std::string> gateway_arguments;  // passed to licensing-gateway as they are
};

// Starts the stack and returns the exit code; prints progress to stdout, errors to stderr.
int dev_up(const DevUpOptions& options);
int dev_down(const std::filesystem::path& directory);

}  // namespace licensing::client
