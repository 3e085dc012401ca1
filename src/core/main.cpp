// licensing-core: the gRPC service that holds the token signing keys and the built-in CA.
// Only the gateway reaches it: over a Unix domain socket in a 0700 directory (default),
// or over TCP with mutual TLS.

#include <CLI/CLI.hpp>
#include <grpcpp/grpcpp.h>
#include <grpcpp/security/server_credentials.h>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>

#include <csignal>
#include <cstring>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <memory>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>

#include "common/logging.hpp"
#include "common/secret.hpp"
#include "core/attestation.hpp"
#include "core/certificate_service.hpp"
#include "core/enclave_service.hpp"
#include "core/enclave_issuer.hpp"
#include "core/kubernetes/backend.hpp"
#include "core/local_provisioner.hpp"
#include "core/token_service.hpp"
#include "crypto/ca.hpp"
#include "crypto/openssl.hpp"
#include "crypto/token_keys.hpp"
#include "store/store.hpp"

namespace {

namespace fs = std::filesystem;
using licensing::logging::error;
using licensing::logging::info;

struct CoreOptions {
  fs::path data_dir;
  std::string listen;
  std::string tls_certificate_file;
  std::string tls_key_file;
  std::string tls_client_ca_file;
  std::string issuer = "licensing-server";
  std::string gateway_audience = "licensing-gateway";
  long access_token_lifetime_seconds = 15 * 60;
  std::string token_algorithm = "ES256";
  long rotation_period_days = 30;
  std::string log_level = "info";
  std::string database_url;
  std::string provisioner = "local";
  std::string certificate_issuer = "builtin";
  std::string enclave_ca_bundle;
  licensing::core::kubernetes::KubernetesOptions kubernetes;
  fs::path enclave_binary;  // empty: "enclave" beside this program
  fs::path enclave_root;    // empty: DATA_DIR/enclaves
  std::string enclave_port_range = "20000-20999";
  std::size_t enclave_quota = 1;
  std::string csr_url;
  std::string enclave_client_certificates = "required";
  long enclave_certificate_lifetime_seconds = 24 * 3600;
  long enclave_ready_deadline_seconds = 30;
  std::string tpm_tcti;  // empty: the embedded swtpm
  std::uint32_t event_pcr = 23;
};

licensing::store::PortRange parse_port_range(const std::string& text) {
  const auto dash = text.find('-');
  if (dash == std::string::npos) throw std::runtime_error("--enclave-port-range must look like 20000-20999");
  const long first = std::stol(text.substr(0, dash));
  const long last = std::stol(text.substr(dash + 1));
  if (first < 1024 || last > 65535 || first > last) {
    throw std::runtime_error("--enclave-port-range must be FIRST-LAST within 1024-65535, FIRST <= LAST");
  }
  return {static_cast<std::uint16_t>(first), static_cast<std::uint16_t>(last)};
}

fs::path default_enclave_binary() {
  std::error_code error;
  const fs::path self = fs::read_symlink("/proc/self/exe", error);
  if (error) throw std::runtime_error("cannot find this program's path in /proc/self/exe; pass --enclave-binary");
  return self.parent_path() / "enclave";
}

// SHA-256 of a file as lowercase hex.
std::string file_sha256(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path.string());
  std::ostringstream content;
  content << in.rdbuf();
  return licensing::crypto::ossl::to_hex(licensing::crypto::ossl::sha256(content.str()));
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

void make_private_directory(const fs::path& path) {
  fs::create_directories(path);
  fs::permissions(path, fs::perms::owner_all, fs::perm_options::replace);
}

licensing::crypto::TokenKeysConfig key_config(const CoreOptions& options) {
  licensing::crypto::TokenKeysConfig config;
  config.key_directory = options.data_dir / "keys" / "signing";
  config.rotation_period = std::chrono::hours(24 * options.rotation_period_days);
  // A retired key stays published for at least one token lifetime, so every token it
  // signed can still be verified until it expires.
  config.retention = std::max<std::chrono::seconds>(std::chrono::hours(24),
                                                    std::chrono::seconds(options.access_token_lifetime_seconds));
  if (options.token_algorithm == "HS256") {
    const char* secret = std::getenv("LICENSING_HS256_SECRET");
    if (secret == nullptr || *secret == '\0') {
      throw std::runtime_error("--token-algorithm HS256 requires the secret in LICENSING_HS256_SECRET");
    }
    config.hs256_secret.emplace(std::string_view(secret));
    // The secret stays in this process only; child processes do not inherit it.
    OPENSSL_cleanse(const_cast<char*>(secret), std::strlen(secret));
    unsetenv("LICENSING_HS256_SECRET");
  }
  return config;
}

std::shared_ptr<licensing::crypto::TokenKeys> open_keys(const CoreOptions& options) {
  auto keys = licensing::crypto::TokenKeys::open(key_config(options), std::chrono::system_clock::now());
  if (!keys) throw std::runtime_error("cannot open the signing keys: " + keys.error().detail);
  return std::shared_ptr<licensing::crypto::TokenKeys>(std::move(*keys));
}

std::shared_ptr<grpc::ServerCredentials> server_credentials(const CoreOptions& options, const std::string& listen) {
  if (listen.starts_with("unix:")) return grpc::InsecureServerCredentials();
  if (options.tls_certificate_file.empty() || options.tls_key_file.empty() || options.tls_client_ca_file.empty()) {
    throw std::runtime_error("a TCP --listen address requires --tls-cert, --tls-key and --tls-client-ca (mutual TLS)");
  }
  grpc::SslServerCredentialsOptions tls(GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  tls.pem_root_certs = read_file(options.tls_client_ca_file);
  tls.pem_key_cert_pairs.push_back({read_file(options.tls_key_file), read_file(options.tls_certificate_file)});
  return grpc::SslServerCredentials(tls);
}

int rotate_signing_key(const CoreOptions& options) {
  auto keys = open_keys(options);
  auto kid = keys->rotate(std::chrono::system_clock::now());
  if (!kid) {
    std::cerr << "error: rotating the signing key failed: " << kid.error().detail << "\n";
    return 1;
  }
  std::cout << "new signing key " << *kid << "; send SIGHUP to the running licensing-core to start using it\n";
  return 0;
}

int serve(const CoreOptions& options) {
  make_private_directory(options.data_dir);
  // Two cores on one data directory would fight over its enclaves: the second one exits.
  const int lock_file = ::open((options.data_dir / "core.lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (lock_file < 0 || ::flock(lock_file, LOCK_EX | LOCK_NB) != 0) {
    throw std::runtime_error("another licensing-core is using " + options.data_dir.string() + " (core.lock is held)");
  }
  make_private_directory(options.data_dir / "keys");
  licensing::core::KeyHolder keys(open_keys(options));

  auto authority = licensing::crypto::CertificateAuthority::open(options.data_dir / "ca", "Licensing Server");
  if (!authority) throw std::runtime_error("cannot open the certificate authority: " + authority.error().detail);

  licensing::core::TokenPolicy policy;
  policy.issuer = options.issuer;
  policy.gateway_audience = options.gateway_audience;
  policy.access_token_lifetime = std::chrono::seconds(options.access_token_lifetime_seconds);
  licensing::core::TokenServiceImpl token_service(keys, policy, [] { return std::chrono::system_clock::now(); });
  licensing::core::CertificateServiceImpl certificate_service(**authority);

  // The URL may carry a password, so no message repeats it.
  auto store = licensing::store::open_store(options.database_url);
  if (!store) throw std::runtime_error("cannot open the database: " + store.error().detail);
  if (auto migrated = (*store)->migrate(); !migrated) {
    throw std::runtime_error("cannot migrate the database: " + migrated.error().detail);
  }

  // Where enclaves run, and what the measurement names as the program that has their keys:
  // the enclave binary's SHA-256 for local processes, the image digest on Kubernetes.
  std::unique_ptr<licensing::core::Provisioner> provisioner;
  std::function<std::string()> image_sha256;
  if (options.provisioner == "kubernetes") {
    auto kubernetes_provisioner = licensing::core::kubernetes::make_provisioner(options.kubernetes);
    if (!kubernetes_provisioner) {
      throw std::runtime_error("cannot set up the Kubernetes provisioner: " + kubernetes_provisioner.error().detail);
    }
    provisioner = std::move(*kubernetes_provisioner);
    image_sha256 = [digest = licensing::core::kubernetes::image_sha256(options.kubernetes.enclave_image)] { return digest; };
  } else {
    licensing::core::LocalProvisionerConfig provisioner_config;
    provisioner_config.binary = options.enclave_binary.empty() ? default_enclave_binary() : options.enclave_binary;
    provisioner_config.root = options.enclave_root.empty() ? options.data_dir / "enclaves" : options.enclave_root;
    make_private_directory(provisioner_config.root);
    file_sha256(provisioner_config.binary);  // fails now, not at the first measurement, when unreadable
    image_sha256 = [binary = provisioner_config.binary]() -> std::string {
      try {
        return file_sha256(binary);
      } catch (const std::exception&) {
        return {};
      }
    };
    provisioner = std::make_unique<licensing::core::LocalProvisioner>(provisioner_config);
  }

  // The signer of enclave certificates: the built-in CA, or cert-manager with the CSR only.
  std::unique_ptr<licensing::core::EnclaveIssuer> issuer;
  if (options.certificate_issuer == "cert-manager") {
    auto cert_manager = licensing::core::kubernetes::make_cert_manager_issuer(options.kubernetes);
    if (!cert_manager) throw std::runtime_error("cannot set up the cert-manager issuer: " + cert_manager.error().detail);
    issuer = std::move(*cert_manager);
  } else {
    issuer = std::make_unique<licensing::core::BuiltinIssuer>(**authority);
  }

  licensing::core::EnclavePolicy enclave_policy;
  enclave_policy.quota = options.enclave_quota;
  enclave_policy.ports = parse_port_range(options.enclave_port_range);
  enclave_policy.csr_url = options.csr_url;
  enclave_policy.certificate_lifetime = std::chrono::seconds(options.enclave_certificate_lifetime_seconds);
  enclave_policy.ready_deadline = std::chrono::seconds(options.enclave_ready_deadline_seconds);
  enclave_policy.ca_root_file = options.data_dir / "ca" / "root.pem";
  enclave_policy.require_client_certificate = options.enclave_client_certificates == "required";
  if (!options.enclave_ca_bundle.empty()) {
    // The health check trusts the same roots as the enclaves: the built-in one and these.
    enclave_policy.extra_ca_bundle_pem = read_file(options.enclave_ca_bundle);
    std::string bundle = (*authority)->root_pem();
    if (!bundle.ends_with('\n')) bundle += '\n';
    bundle += enclave_policy.extra_ca_bundle_pem;
    enclave_policy.health_ca_bundle_file = options.data_dir / "ca" / "enclave-roots.pem";
    auto written = licensing::crypto::ossl::write_file_atomically(enclave_policy.health_ca_bundle_file, bundle, 0644);
    if (!written) throw std::runtime_error("cannot write " + enclave_policy.health_ca_bundle_file.string() + ": " + written.error().detail);
  }
  // tpm2-tss prints its own error lines on stderr; the errors reach our JSON log instead,
  // with the decoded return code, so its logging is off unless TSS2_LOG is set.
  ::setenv("TSS2_LOG", "all+NONE", 0);

  // Every enclave certificate is measured with the digest of the program that holds its key.
  licensing::core::AttestationConfig attestation_config;
  attestation_config.state_directory = options.data_dir / "tpm";
  attestation_config.tcti = options.tpm_tcti;
  attestation_config.event_pcr = options.event_pcr;
  attestation_config.image_sha256 = image_sha256;
  auto attestation = licensing::core::TpmAttestation::open(attestation_config);
  if (!attestation) {
    throw std::runtime_error("cannot open the TPM (" + std::string(licensing::tpm::to_string(attestation.error().code)) +
                             "): " + attestation.error().detail);
  }
  const auto& attestation_key = (*attestation)->attestation_key();
  info("attestation_key", {{"fingerprint", attestation_key.fingerprint},
                           {"name", licensing::crypto::ossl::to_hex(attestation_key.name)},
                           {"tpm", options.tpm_tcti.empty() ? "embedded swtpm" : options.tpm_tcti}});
  // Operators pin this fingerprint in their clients (licensectl trust add ak).
  std::cout << "attestation key fingerprint: " << attestation_key.fingerprint << std::endl;

  licensing::core::EnclaveManager enclaves(**store, *provisioner, **authority, *issuer, keys, policy, enclave_policy,
                                           **attestation);
  enclaves.start();
  licensing::core::EnclaveServiceImpl enclave_service(enclaves);
  licensing::core::AttestationServiceImpl attestation_service(**attestation, enclaves);

  std::string listen = options.listen.empty() ? "unix:" + (options.data_dir / "core.sock").string() : options.listen;
  if (listen.starts_with("unix:")) {
    const fs::path socket_path = listen.substr(5);
    if (!socket_path.is_absolute()) throw std::runtime_error("the Unix socket path in --listen must be absolute");
    fs::remove(socket_path);
  }

  // The socket file is created with the process umask: 0600 keeps other users out.
  const mode_t previous_umask = umask(0077);
  grpc::ServerBuilder builder;
  int bound_port = 0;
  builder.AddListeningPort(listen, server_credentials(options, listen), &bound_port);
  builder.RegisterService(&token_service);
  builder.RegisterService(&certificate_service);
  builder.RegisterService(&enclave_service);
  builder.RegisterService(&attestation_service);
  builder.SetMaxReceiveMessageSize(64 * 1024);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  umask(previous_umask);
  if (!server) throw std::runtime_error("cannot listen on " + listen);

  info("core_started", {{"listen", listen}, {"token_algorithm", options.token_algorithm},
                        {"signing_kid", keys.get()->current_kid()}, {"pid", getpid()}});

  // Signals arrive here only: they were blocked before any gRPC thread started.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  for (;;) {
    timespec reload_interval{600, 0};
    const int signal = sigtimedwait(&signals, nullptr, &reload_interval);
    if (signal == SIGTERM || signal == SIGINT) break;
    // SIGHUP, or the periodic reload that makes a new key once the current one is older
    // than the rotation period.
    try {
      auto reloaded = open_keys(options);
      // Running enclaves get the new key set before any token is signed with a new key.
      if (reloaded->jwks() != keys.get()->jwks()) enclaves.publish_jwks(reloaded->jwks().dump());
      keys.replace(std::move(reloaded));
      info("signing_keys_reloaded", {{"signing_kid", keys.get()->current_kid()}});
    } catch (const std::exception& failure) {
      error("signing_keys_reload_failed", {{"error", failure.what()}});
    }
  }

  info("core_stopping", {});
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  // Enclave instances keep running; the next start adopts them.
  enclaves.stop();
  if (listen.starts_with("unix:")) fs::remove(listen.substr(5));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CoreOptions options;
  CLI::App app{"licensing-core: token signing keys, built-in CA and provisioning behind the licensing gateway"};
  app.add_option("--data-dir", options.data_dir, "Directory for keys, the CA and the socket (created 0700)")->required();
  app.add_option("--listen", options.listen,
                 "unix:/absolute/path (default: unix:DATA_DIR/core.sock) or HOST:PORT with mutual TLS");
  app.add_option("--tls-cert", options.tls_certificate_file, "Server certificate chain (PEM) for a TCP listener");
  app.add_option("--tls-key", options.tls_key_file, "Server private key (PEM) for a TCP listener");
  app.add_option("--tls-client-ca", options.tls_client_ca_file, "CA bundle (PEM) that client certificates must chain to");
  app.add_option("--issuer", options.issuer, "The iss claim of every token")->capture_default_str();
  app.add_option("--gateway-audience", options.gateway_audience, "The aud claim of gateway access tokens")->capture_default_str();
  app.add_option("--access-token-lifetime", options.access_token_lifetime_seconds, "Access token lifetime in seconds")
      ->check(CLI::Range(60L, 24L * 3600))
      ->capture_default_str();
  app.add_option("--token-algorithm", options.token_algorithm,
                 "ES256 (default) or HS256 with the secret in the LICENSING_HS256_SECRET environment variable")
      ->check(CLI::IsMember({"ES256", "HS256"}))
      ->capture_default_str();
  app.add_option("--rotation-period-days", options.rotation_period_days, "Days before a new signing key is made")
      ->check(CLI::Range(1L, 3650L))
      ->capture_default_str();
  app.add_option("--log-level", options.log_level, "trace, debug, info, warn or error")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error"}))
      ->capture_default_str();
  app.add_option("--database", options.database_url,
                 "Required: sqlite:///absolute/path.db or postgresql://... (the gateway's database)")
      ->envname("LICENSING_DATABASE_URL");
  app.add_option("--provisioner", options.provisioner,
                 "Where enclaves run: local (processes on this host) or kubernetes (a pod each; see --kubernetes-*)")
      ->check(CLI::IsMember({"local", "kubernetes"}))
      ->capture_default_str();
  app.add_option("--certificate-issuer", options.certificate_issuer,
                 "Who signs enclave certificates: builtin (the CA in DATA_DIR/ca) or cert-manager (a CertificateRequest "
                 "to --cert-manager-issuer)")
      ->check(CLI::IsMember({"builtin", "cert-manager"}))
      ->capture_default_str();
  app.add_option("--enclave-ca-bundle", options.enclave_ca_bundle,
                 "Extra root certificates (PEM) for the enclaves' CA bundle, such as the root behind the "
                 "cert-manager Issuer, so that enclaves accept the chains it signs");
  licensing::core::kubernetes::add_kubernetes_options(app, options.kubernetes);
  app.add_option("--enclave-binary", options.enclave_binary, "The enclave program (default: enclave beside licensing-core)");
  app.add_option("--enclave-root", options.enclave_root, "Parent of the enclaves' private directories (default: DATA_DIR/enclaves)");
  app.add_option("--enclave-port-range", options.enclave_port_range, "Loopback ports for enclaves, FIRST-LAST")
      ->capture_default_str();
  app.add_option("--enclave-client-certificates", options.enclave_client_certificates,
                 "required: enclaves accept only their owner's client certificate; optional: a token alone "
                 "suffices, for clients of the original prototype")
      ->check(CLI::IsMember({"required", "optional"}))
      ->capture_default_str();
  app.add_option("--enclave-quota", options.enclave_quota, "Enclaves per user that are not deleted or failed")
      ->check(CLI::Range(1, 1000))
      ->capture_default_str();
  app.add_option("--csr-url", options.csr_url,
                 "The gateway's https://HOST:PORT/v1/enclave-certificates URL that enclaves send their CSR to");
  app.add_option("--enclave-certificate-lifetime", options.enclave_certificate_lifetime_seconds,
                 "Lifetime of enclave certificates in seconds")
      ->check(CLI::Range(300L, 90L * 24 * 3600))
      ->capture_default_str();
  app.add_option("--enclave-ready-deadline", options.enclave_ready_deadline_seconds,
                 "Seconds an enclave may take to pass its TLS health check before it is marked failed")
      ->check(CLI::Range(1L, 3600L))
      ->capture_default_str();
  app.add_option("--tpm-tcti", options.tpm_tcti,
                 "The TPM as a TCTI configuration: device:/dev/tpmrm0, or swtpm:host=127.0.0.1,port=2321. "
                 "Default: an swtpm that licensing-core provisions and runs with its state in DATA_DIR/tpm "
                 "(development and tests only: it is no hardware root of trust)");
  app.add_option("--event-pcr", options.event_pcr, "The SHA-256 PCR that the measurement log extends")
      ->check(CLI::Range(16, 23))
      ->capture_default_str();
  auto* rotate = app.add_subcommand("rotate-signing-key", "Make a new current signing key in DATA_DIR and exit");
  CLI11_PARSE(app, argc, argv);

  // Block the signals before any thread starts, so the main thread alone receives them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  licensing::logging::init("core", options.log_level);
  try {
    if (rotate->parsed()) return rotate_signing_key(options);
    if (options.database_url.empty()) {
      throw std::runtime_error("--database (or LICENSING_DATABASE_URL) is required");
    }
    return serve(options);
  } catch (const std::exception& failure) {
    error("core_failed", {{"error", failure.what()}});
    std::cerr << "error: " << failure.what() << "\n";
    return 1;
  }
}
