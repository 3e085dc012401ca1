// The enclave's configuration, read once at start from the LICENSING_ENCLAVE_* environment
// variables that both provisioners set (docs/enclaves.md). Every error names the variable.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "common/error.hpp"

namespace licensing::enclave {

enum class ConfigError {
  missing,      // a required variable is unset or empty
  invalid,      // a value that does not parse or is out of range
  permissions,  // the private directory is not owned by this user or is not mode 0700
  not_found,    // a named file or directory does not exist
};

std::string_view to_string(ConfigError code);

struct Config {
  std::string enclave_id;               // LICENSING_ENCLAVE_ID: a lowercase UUID
  std::string owner;                    // LICENSING_ENCLAVE_OWNER: the owner's user id
  std::filesystem::path directory;      // LICENSING_ENCLAVE_DIR: absolute, an existing 0700 directory
  std::string listen_address;           // LICENSING_ENCLAVE_LISTEN: an IP literal ...
  std::uint16_t listen_port = 0;        // ... and a port of 1 to 65535
  std::string csr_url;                  // LICENSING_ENCLAVE_CSR_URL: https://host:port/path
  std::filesystem::path ca_bundle_file; // LICENSING_ENCLAVE_CA_BUNDLE: an existing file
  std::filesystem::path bootstrap_file; // LICENSING_ENCLAVE_BOOTSTRAP_FILE: may be gone after first start
  std::filesystem::path jwks_file;      // LICENSING_ENCLAVE_JWKS_FILE: an existing file
  std::string issuer;                   // LICENSING_ENCLAVE_ISSUER
  bool require_client_cert = true;      // LICENSING_ENCLAVE_REQUIRE_CLIENT_CERT: "true" or "false"
  // LICENSING_ENCLAVE_PUBLIC_HOST (optional): the DNS name clients reach the enclave at, such
  // as its ingress host on Kubernetes. The CSR asks for it besides the enclave's own name.
  std::string public_host;
  // LICENSING_ENCLAVE_RENEWAL_FRACTION (optional, not part of the provisioner contract): the
  // fraction of the certificate lifetime after which it is renewed, above 0 and below 1.
  double renewal_fraction = 2.0 / 3.0;
};

// Returns the value of an environment variable, or nullopt when it is unset.
using Environment = std::function<std::optional<std::string>(std::string_view name)>;

// Reads the process environment.
Environment process_environment();

// Reads and validates every variable. Checks that the private directory exists, is a
// directory (not a symbolic link), is owned by the effective user and has mode 0700, and
// that the CA bundle and JWKS files exist. It does not parse their contents.
Result<Config, ConfigError> load_config(const Environment& environment);

// The URI that a client certificate of `owner` carries in its subjectAltName.
std::string owner_uri(std::string_view owner);

}  // namespace licensing::enclave
