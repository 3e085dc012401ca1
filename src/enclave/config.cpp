#include "enclave/config.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <regex>

#include <boost/asio/ip/address.hpp>

namespace licensing::enclave {
namespace {

constexpr std::string_view var_id = "LICENSING_ENCLAVE_ID";
constexpr std::string_view var_owner = "LICENSING_ENCLAVE_OWNER";
constexpr std::string_view var_dir = "LICENSING_ENCLAVE_DIR";
constexpr std::string_view var_listen = "LICENSING_ENCLAVE_LISTEN";
constexpr std::string_view var_csr_url = "LICENSING_ENCLAVE_CSR_URL";
constexpr std::string_view var_ca_bundle = "LICENSING_ENCLAVE_CA_BUNDLE";
constexpr std::string_view var_bootstrap = "LICENSING_ENCLAVE_BOOTSTRAP_FILE";
constexpr std::string_view var_jwks = "LICENSING_ENCLAVE_JWKS_FILE";
constexpr std::string_view var_issuer = "LICENSING_ENCLAVE_ISSUER";
constexpr std::string_view var_require_client_cert = "LICENSING_ENCLAVE_REQUIRE_CLIENT_CERT";
constexpr std::string_view var_renewal_fraction = "LICENSING_ENCLAVE_RENEWAL_FRACTION";
constexpr std::string_view var_public_host = "LICENSING_ENCLAVE_PUBLIC_HOST";

constexpr std::size_t max_owner_bytes = 128;

std::string name(std::string_view variable) { return std::string(variable); }

Result<std::string, ConfigError> required(const Environment& environment, std::string_view variable) {
  auto value = environment(variable);
  if (!value || value->empty()) return fail(ConfigError::missing, name(variable) + " is not set");
  return std::move(*value);
}

Result<void, ConfigError> parse_id(std::string value, Config& config) {
  static const std::regex uuid("^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$");
  if (!std::regex_match(value, uuid)) {
    return fail(ConfigError::invalid, name(var_id) + " must be a lowercase UUID, not '" + value + "'");
  }
  config.enclave_id = std::move(value);
  return {};
}

Result<void, ConfigError> parse_owner(std::string value, Config& config) {
  // The owner goes into a URN and into log lines, so only URN-safe characters are accepted.
  const bool safe = std::all_of(value.begin(), value.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '-' || c == '.' || c == '_';
  });
  if (!safe || value.size() > max_owner_bytes) {
    return fail(ConfigError::invalid, name(var_owner) + " must be 1 to 128 characters of [A-Za-z0-9._-]");
  }
  config.owner = std::move(value);
  return {};
}

// Accepts "a.b.c.d:port" and "[v6]:port".
Result<void, ConfigError> parse_listen(const std::string& value, Config& config) {
  const auto colon = value.rfind(':');
  const auto invalid = [&] {
    return fail(ConfigError::invalid, name(var_listen) + " must be address:port with an IP address and a port of 1 to 65535, not '" + value + "'");
  };
  if (colon == std::string::npos || colon == 0) return invalid();

  std::string host = value.substr(0, colon);
  if (host.front() == '[') {
    if (host.size() < 3 || host.back() != ']') return invalid();
    host = host.substr(1, host.size() - 2);
  }
  boost::system::error_code ec;
  boost::asio::ip::make_address(host, ec);
  if (ec) return invalid();

  const std::string_view port_text(value.data() + colon + 1, value.size() - colon - 1);
  unsigned port = 0;
  const auto [end, error] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (error != std::errc() || end != port_text.data() + port_text.size() || port == 0 || port > 65535) return invalid();

  config.listen_address = std::move(host);
  config.listen_port = static_cast<std::uint16_t>(port);
  return {};
}

Result<void, ConfigError> check_directory(const std::filesystem::path& directory) {
  if (!directory.is_absolute()) return fail(ConfigError::invalid, name(var_dir) + " must be an absolute path");

  struct stat status {};
  // A missing directory whose parent exists is created 0700: on Kubernetes the directory
  // lies inside an in-memory volume whose root the enclave does not own.
  if (::lstat(directory.c_str(), &status) != 0 && errno == ENOENT && ::mkdir(directory.c_str(), 0700) == 0) {
    ::chmod(directory.c_str(), 0700);  // mkdir applies the umask
  }
  if (::lstat(directory.c_str(), &status) != 0) {
    return fail(ConfigError::not_found, name(var_dir) + ": " + directory.string() + " cannot be read: " + std::strerror(errno));
  }
  if (!S_ISDIR(status.st_mode)) {
    return fail(ConfigError::invalid, name(var_dir) + ": " + directory.string() + " is not a directory (a symbolic link is not followed)");
  }
  if (status.st_uid != ::geteuid()) {
    return fail(ConfigError::permissions, name(var_dir) + ": " + directory.string() + " is not owned by this user");
  }
  if ((status.st_mode & 07777) != 0700) {
    return fail(ConfigError::permissions, name(var_dir) + ": " + directory.string() + " must have mode 0700 (chmod 700 it)");
  }
  return {};
}

Result<std::filesystem::path, ConfigError> existing_file(const Environment& environment, std::string_view variable) {
  auto value = required(environment, variable);
  if (!value) return std::unexpected(value.error());

  std::error_code ec;
  if (!std::filesystem::is_regular_file(*value, ec)) {
    return fail(ConfigError::not_found, name(variable) + ": " + *value + " is not an existing regular file");
  }
  return std::filesystem::path(*value);
}

Result<void, ConfigError> parse_optional(const Environment& environment, Config& config) {
  if (auto value = environment(var_require_client_cert); value && !value->empty()) {
    if (*value == "true") {
      config.require_client_cert = true;
    } else if (*value == "false") {
      config.require_client_cert = false;
    } else {
      return fail(ConfigError::invalid, name(var_require_client_cert) + " must be 'true' or 'false', not '" + *value + "'");
    }
  }

  if (auto value = environment(var_renewal_fraction); value && !value->empty()) {
    char* end = nullptr;
    const double fraction = std::strtod(value->c_str(), &end);
    if (end != value->c_str() + value->size() || !(fraction > 0.0 && fraction < 1.0)) {
      return fail(ConfigError::invalid, name(var_renewal_fraction) + " must be a number above 0 and below 1, not '" + *value + "'");
    }
    config.renewal_fraction = fraction;
  }

  if (auto value = environment(var_public_host); value && !value->empty()) {
    // A host name of DNS labels: letters, digits and inner hyphens, at most 253 characters.
    static const std::regex host_name("([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?");
    if (value->size() > 253 || !std::regex_match(*value, host_name)) {
      return fail(ConfigError::invalid, name(var_public_host) + " must be a lowercase DNS name, not '" + *value + "'");
    }
    config.public_host = *value;
  }
  return {};
}

}  // namespace

std::string_view to_string(ConfigError code) {
  switch (code) {
    case ConfigError::missing: return "missing";
    case ConfigError::invalid: return "invalid";
    case ConfigError::permissions: return "permissions";
    case ConfigError::not_found: return "not_found";
  }
  return "unknown";
}

Environment process_environment() {
  return [](std::string_view variable) -> std::optional<std::string> {
    const char* value = std::getenv(std::string(variable).c_str());
    if (value == nullptr) return std::nullopt;
    return std::string(value);
  };
}

std::string owner_uri(std::string_view owner) { return "urn:licensing:user:" + std::string(owner); }

Result<Config, ConfigError> load_config(const Environment& environment) {
  Config config;

  auto id = required(environment, var_id);
  if (!id) return std::unexpected(id.error());
  if (auto parsed = parse_id(std::move(*id), config); !parsed) return std::unexpected(parsed.error());

  auto owner = required(environment, var_owner);
  if (!owner) return std::unexpected(owner.error());
  if (auto parsed = parse_owner(std::move(*owner), config); !parsed) return std::unexpected(parsed.error());

  auto directory = required(environment, var_dir);
  if (!directory) return std::unexpected(directory.error());
  config.directory = *directory;
  if (auto checked = check_directory(config.directory); !checked) return std::unexpected(checked.error());

  auto listen = required(environment, var_listen);
  if (!listen) return std::unexpected(listen.error());
  if (auto parsed = parse_listen(*listen, config); !parsed) return std::unexpected(parsed.error());

  auto csr_url = required(environment, var_csr_url);
  if (!csr_url) return std::unexpected(csr_url.error());
  if (!csr_url->starts_with("https://")) {
    return fail(ConfigError::invalid, name(var_csr_url) + " must be an https:// URL, not '" + *csr_url + "'");
  }
  config.csr_url = std::move(*csr_url);

  auto ca_bundle = existing_file(environment, var_ca_bundle);
  if (!ca_bundle) return std::unexpected(ca_bundle.error());
  config.ca_bundle_file = std::move(*ca_bundle);

  // The bootstrap file is deleted once used, so only the variable is required here.
  auto bootstrap = required(environment, var_bootstrap);
  if (!bootstrap) return std::unexpected(bootstrap.error());
  config.bootstrap_file = std::move(*bootstrap);

  auto jwks = existing_file(environment, var_jwks);
  if (!jwks) return std::unexpected(jwks.error());
  config.jwks_file = std::move(*jwks);

  auto issuer = required(environment, var_issuer);
  if (!issuer) return std::unexpected(issuer.error());
  config.issuer = std::move(*issuer);

  if (auto parsed = parse_optional(environment, config); !parsed) return std::unexpected(parsed.error());
  return config;
}

}  // namespace licensing::enclave
