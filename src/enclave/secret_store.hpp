// The enclave's key-value workload: named secrets stored as files under DIR/secrets (0700),
// one file per secret (0600), written atomically (temporary file, fsync, rename), so a
// crash leaves either the old or the new value. Thread-safe.
#pragma once

#include <cstddef>
#include <filesystem>
#include <mutex>
#include <set>
#include <span>
#include <string>
#include <string_view>

#include "common/error.hpp"
#include "common/secret.hpp"

namespace licensing::enclave {

enum class StoreError {
  invalid_name,   // not [A-Za-z0-9._-]{1,128}, or "." or ".."
  too_large,      // a value over max_value_bytes
  not_found,      // no secret with that name
  limit_reached,  // max_secrets are stored and the name is new
  io,             // a file operation failed
};

std::string_view to_string(StoreError code);

// True for names of 1 to 128 characters of [A-Za-z0-9._-] other than "." and "..".
bool is_valid_secret_name(std::string_view name);

class SecretStore {
 public:
  static constexpr std::size_t max_value_bytes = 64 * 1024;
  static constexpr std::size_t max_secrets = 100;

  // Creates `directory` (0700) when absent, removes temporary files left by an interrupted
  // write, and counts the stored secrets. Fails with `io` when the directory cannot be
  // created or read, or when group or others may write to it.
  static Result<std::unique_ptr<SecretStore>, StoreError> open(const std::filesystem::path& directory);

  // Stores or replaces a value. Returns true when the name was new.
  Result<bool, StoreError> put(std::string_view name, std::span<const std::uint8_t> value);
  Result<SecretBytes, StoreError> get(std::string_view name) const;
  Result<void, StoreError> remove(std::string_view name);
  std::size_t size() const;

 private:
  explicit SecretStore(std::filesystem::path directory) : directory_(std::move(directory)) {}
  std::filesystem::path path_of(std::string_view name) const;

  const std::filesystem::path directory_;
  mutable std::mutex mutex_;
  std::set<std::string, std::less<>> names_;  // guarded by mutex_
};

}  // namespace licensing::enclave
