#include "enclave/secret_store.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "crypto/openssl.hpp"

namespace licensing::enclave {
namespace {

// Each secret is "<name>.secret"; write_file_atomically writes "<file>.tmp-<hex>" first,
// which never ends in ".secret", so the two cannot be confused.
constexpr std::string_view file_suffix = ".secret";
constexpr std::string_view temporary_marker = ".secret.tmp-";
constexpr std::size_t max_name_bytes = 128;

bool is_name_character(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
}

}  // namespace

std::string_view to_string(StoreError code) {
  switch (code) {
    case StoreError::invalid_name: return "invalid_name";
    case StoreError::too_large: return "too_large";
    case StoreError::not_found: return "not_found";
    case StoreError::limit_reached: return "limit_reached";
    case StoreError::io: return "io";
  }
  return "unknown";
}

bool is_valid_secret_name(std::string_view name) {
  if (name.empty() || name.size() > max_name_bytes) return false;
  if (name == "." || name == "..") return false;
  return std::all_of(name.begin(), name.end(), is_name_character);
}

Result<std::unique_ptr<SecretStore>, StoreError> SecretStore::open(const std::filesystem::path& directory) {
  if (auto ensured = crypto::ossl::ensure_private_directory(directory); !ensured) {
    return fail(StoreError::io, "the secret directory " + directory.string() + " is not usable: " + ensured.error().detail);
  }

  std::unique_ptr<SecretStore> store(new SecretStore(directory));
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(directory, ec)) {
    const std::string file = entry.path().filename().string();
    if (file.find(temporary_marker) != std::string::npos && !file.ends_with(file_suffix)) {
      std::filesystem::remove(entry.path(), ec);
      continue;
    }
    if (!file.ends_with(file_suffix) || !entry.is_regular_file()) continue;

    const std::string name = file.substr(0, file.size() - file_suffix.size());
    if (is_valid_secret_name(name)) store->names_.insert(name);
  }
  if (ec) return fail(StoreError::io, "listing " + directory.string() + " failed: " + ec.message());
  return store;
}

std::filesystem::path SecretStore::path_of(std::string_view name) const {
  return directory_ / (std::string(name) + std::string(file_suffix));
}

Result<bool, StoreError> SecretStore::put(std::string_view name, std::span<const std::uint8_t> value) {
  if (!is_valid_secret_name(name)) return fail(StoreError::invalid_name);
  if (value.size() > max_value_bytes) {
    return fail(StoreError::too_large, "the value has " + std::to_string(value.size()) + " bytes, the maximum is " + std::to_string(max_value_bytes));
  }

  const std::lock_guard lock(mutex_);
  const bool is_new = !names_.contains(name);
  if (is_new && names_.size() >= max_secrets) {
    return fail(StoreError::limit_reached, std::to_string(max_secrets) + " secrets are stored already");
  }

  if (auto written = crypto::ossl::write_file_atomically(path_of(name), value, 0600); !written) {
    return fail(StoreError::io, written.error().detail);
  }
  names_.insert(std::string(name));
  return is_new;
}

Result<SecretBytes, StoreError> SecretStore::get(std::string_view name) const {
  if (!is_valid_secret_name(name)) return fail(StoreError::invalid_name);

  const std::lock_guard lock(mutex_);
  if (!names_.contains(name)) return fail(StoreError::not_found);

  auto value = crypto::ossl::read_private_file(path_of(name), max_value_bytes);
  if (!value) return fail(StoreError::io, value.error().detail);
  return std::move(*value);
}

Result<void, StoreError> SecretStore::remove(std::string_view name) {
  if (!is_valid_secret_name(name)) return fail(StoreError::invalid_name);

  const std::lock_guard lock(mutex_);
  const auto found = names_.find(name);
  if (found == names_.end()) return fail(StoreError::not_found);

  const auto path = path_of(name);
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    return fail(StoreError::io, "removing " + path.string() + " failed: " + std::strerror(errno));
  }
  names_.erase(found);

  // Make the removal durable before returning.
  if (const int fd = ::open(directory_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
  return {};
}

std::size_t SecretStore::size() const {
  const std::lock_guard lock(mutex_);
  return names_.size();
}

}  // namespace licensing::enclave
