// Shared helpers for the crypto tests: a temporary directory and fixed points in time.
#pragma once

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <string>

namespace licensing::crypto::testing {

using Clock = std::chrono::system_clock;

inline Clock::time_point at_unix(std::int64_t seconds) { return Clock::time_point(std::chrono::seconds(seconds)); }

// 2030-01-01T00:00:00Z, the fixed "now" of most tests.
inline constexpr std::int64_t kNow = 1893456000;

// A fresh directory (mode 0700, from mkdtemp) removed with its contents on destruction.
class TempDirectory {
 public:
  TempDirectory() {
    std::string pattern = (std::filesystem::temp_directory_path() / "crypto-test-XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = pattern;
  }
  TempDirectory(const TempDirectory&) = delete;
  TempDirectory& operator=(const TempDirectory&) = delete;
  ~TempDirectory() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

inline mode_t file_mode(const std::filesystem::path& path) {
  struct stat status {};
  if (::stat(path.c_str(), &status) != 0) return 0;
  return status.st_mode & 07777;
}

}  // namespace licensing::crypto::testing
