#include "enclave/identity.hpp"

#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509_vfy.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>

#include "common/json.hpp"
#include "common/logging.hpp"
#include "crypto/ca.hpp"

namespace licensing::enclave {
namespace {

namespace ossl = crypto::ossl;
using SystemClock = std::chrono::system_clock;

constexpr std::size_t max_key_bytes = 16 * 1024;
constexpr std::size_t max_chain_bytes = 64 * 1024;
constexpr std::size_t max_credential_bytes = 1024;
constexpr std::size_t max_response_depth = 4;
constexpr std::size_t max_problem_title_bytes = 200;

// Reads a credential file and strips trailing whitespace. A credential must be printable
// ASCII without spaces, because it goes into an HTTP header.
Result<SecretBytes, IdentityError> read_credential(const std::filesystem::path& path) {
  auto contents = ossl::read_private_file(path, max_credential_bytes);
  if (!contents) {
    const auto code = contents.error().code == ossl::FileError::not_found ? IdentityError::no_credential : IdentityError::io;
    return fail(code, "reading the credential " + path.string() + " failed: " + contents.error().detail);
  }

  std::string_view text = contents->text();
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r' || text.back() == ' ' || text.back() == '\t')) {
    text.remove_suffix(1);
  }
  if (text.empty()) return fail(IdentityError::no_credential, "the credential file " + path.string() + " is empty");
  if (!std::all_of(text.begin(), text.end(), [](char c) { return c > ' ' && c < 127; })) {
    return fail(IdentityError::no_credential, "the credential in " + path.string() + " contains characters other than printable ASCII");
  }
  return SecretBytes(text);
}

SystemClock::time_point to_time_point(const ASN1_TIME* time) {
  std::tm parts{};
  ASN1_TIME_to_tm(time, &parts);
  return SystemClock::from_time_t(::timegm(&parts));
}

Result<std::vector<ossl::X509Cert>, IdentityError> parse_chain(std::string_view pem) {
  ossl::Bio bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (!bio) return fail(IdentityError::crypto, "allocating a BIO failed: " + ossl::drain_errors());

  std::vector<ossl::X509Cert> chain;
  while (ossl::X509Cert certificate{PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)}) {
    chain.push_back(std::move(certificate));
  }
  // The loop ends with a "no start line" error at the end of the input.
  ERR_clear_error();
  if (chain.empty()) return fail(IdentityError::untrusted, "the chain contains no PEM certificate");
  return chain;
}

Result<void, IdentityError> rename_file(const std::filesystem::path& from, const std::filesystem::path& to) {
  if (::rename(from.c_str(), to.c_str()) != 0) {
    return fail(IdentityError::io, "renaming " + from.string() + " to " + to.string() + " failed: " + std::strerror(errno));
  }
  return {};
}

void sync_directory(const std::filesystem::path& directory) {
  if (const int fd = ::open(directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
}

// Maps a non-200 response of the CSR endpoint to an error, with the problem title when
// the body contains one.
Error<IdentityError> error_for_status(const client::HttpResponse& response) {
  std::string detail = "the CSR endpoint returned status " + std::to_string(response.status);
  if (auto body = json::parse_strict(response.body, max_response_depth); body && body->is_object()) {
    if (const auto title = body->find("title"); title != body->end() && title->is_string()) {
      detail += " (" + title->get<std::string>().substr(0, max_problem_title_bytes) + ")";
    }
  }
  const bool retryable = response.status == 429 || response.status >= 500;
  return Error<IdentityError>{retryable ? IdentityError::unreachable : IdentityError::rejected, std::move(detail)};
}

struct CsrResponse {
  std::string chain_pem;
  SecretBytes renewal_credential;
};

// Parses {"certificate_chain_pem", "renewal_credential", "not_after"}. The chain may also
// be an array of PEM strings. not_after is informational: the certificate's own notAfter
// is used.
Result<CsrResponse, IdentityError> parse_response(const std::string& body) {
  auto parsed = json::parse_strict(body, max_response_depth);
  if (!parsed || !parsed->is_object()) return fail(IdentityError::invalid_response, "the CSR response is not a JSON object");

  CsrResponse csr_response;
  const auto chain = parsed->find("certificate_chain_pem");
  if (chain != parsed->end() && chain->is_string()) {
    csr_response.chain_pem = chain->get<std::string>();
  } else if (chain != parsed->end() && chain->is_array()) {
    for (const auto& part : *chain) {
      if (!part.is_string()) return fail(IdentityError::invalid_response, "certificate_chain_pem contains a non-string");
      csr_response.chain_pem += part.get<std::string>();
      if (!csr_response.chain_pem.ends_with('\n')) csr_response.chain_pem += '\n';
    }
  } else {
    return fail(IdentityError::invalid_response, "the CSR response has no certificate_chain_pem string");
  }

  const auto credential = parsed->find("renewal_credential");
  if (credential == parsed->end() || !credential->is_string() || credential->get_ref<const std::string&>().empty() ||
      credential->get_ref<const std::string&>().size() > max_credential_bytes) {
    return fail(IdentityError::invalid_response, "the CSR response has no renewal_credential string");
  }
  std::string& text = credential->get_ref<std::string&>();
  csr_response.renewal_credential = SecretBytes(std::string_view(text));
  wipe_string(text);
  return csr_response;
}

}  // namespace

std::string_view to_string(IdentityError code) {
  switch (code) {
    case IdentityError::io: return "io";
    case IdentityError::no_credential: return "no_credential";
    case IdentityError::unreachable: return "unreachable";
    case IdentityError::rejected: return "rejected";
    case IdentityError::invalid_response: return "invalid_response";
    case IdentityError::untrusted: return "untrusted";
    case IdentityError::crypto: return "crypto";
  }
  return "unknown";
}

IdentityPaths::IdentityPaths(const std::filesystem::path& directory)
    : key(directory / "private-key.pem"),
      chain(directory / "cert-chain.pem"),
      renewal_credential(directory / "renewal-credential"),
      next_key(directory / "private-key.next.pem"),
      next_chain(directory / "cert-chain.next.pem") {}

std::string enclave_dns_name(std::string_view enclave_id) {
  return std::string(enclave_id) + ".enclaves.licensing.internal";
}

IdentityManager::IdentityManager(Config config, Transport transport, TimeSource now)
    : config_(std::move(config)), paths_(config_.directory), transport_(std::move(transport)), now_(std::move(now)) {}

Result<void, IdentityError> IdentityManager::recover() {
  std::error_code ec;
  if (std::filesystem::exists(paths_.next_chain, ec)) {
    // The chain arrived and was stored: finish the switch (the key may be renamed already).
    if (std::filesystem::exists(paths_.next_key, ec)) {
      if (auto renamed = rename_file(paths_.next_key, paths_.key); !renamed) return renamed;
    }
    if (auto renamed = rename_file(paths_.next_chain, paths_.chain); !renamed) return renamed;
    sync_directory(config_.directory);
    logging::info("identity_recovered", {{"enclave_id", config_.enclave_id}, {"action", "completed an interrupted enrollment"}});
    return {};
  }

  if (std::filesystem::exists(paths_.next_key, ec)) {
    // No chain was stored for this key, so its CSR never completed.
    std::filesystem::remove(paths_.next_key, ec);
    logging::info("identity_recovered", {{"enclave_id", config_.enclave_id}, {"action", "discarded the key of an unfinished CSR"}});
  }
  return {};
}

Result<std::optional<Identity>, IdentityError> IdentityManager::load_stored() {
  if (auto recovered = recover(); !recovered) return std::unexpected(recovered.error());

  std::error_code ec;
  if (!std::filesystem::exists(paths_.key, ec) || !std::filesystem::exists(paths_.chain, ec)) return std::optional<Identity>();

  auto key_pem = ossl::read_private_file(paths_.key, max_key_bytes);
  if (!key_pem) return fail(IdentityError::io, "reading " + paths_.key.string() + " failed: " + key_pem.error().detail);
  auto key = ossl::private_key_from_pem(key_pem->text());
  if (!key) return fail(IdentityError::untrusted, paths_.key.string() + " does not contain a private key: " + key.error().detail);

  auto chain_pem = ossl::read_public_file(paths_.chain, max_chain_bytes);
  if (!chain_pem) return fail(IdentityError::io, "reading " + paths_.chain.string() + " failed: " + chain_pem.error().detail);

  auto identity = verify(std::move(*key), std::move(*chain_pem));
  if (!identity) return std::unexpected(identity.error());
  return std::optional<Identity>(std::move(*identity));
}

Result<Identity, IdentityError> IdentityManager::verify(ossl::Pkey key, std::string chain_pem) const {
  auto chain = parse_chain(chain_pem);
  if (!chain) return std::unexpected(chain.error());
  X509* leaf = chain->front().get();

  // The leaf must certify our key.
  if (EVP_PKEY_eq(X509_get0_pubkey(leaf), key.get()) != 1) {
    ERR_clear_error();
    return fail(IdentityError::untrusted, "the leaf certificate's public key is not the enclave's key");
  }

  // It must name this enclave.
  const std::string dns_name = enclave_dns_name(config_.enclave_id);
  if (X509_check_host(leaf, dns_name.data(), dns_name.size(), X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS, nullptr) != 1) {
    ERR_clear_error();
    return fail(IdentityError::untrusted, "the leaf certificate does not name " + dns_name);
  }

  // And chain to the licensing root in the CA bundle, now, for serverAuth.
  ossl::X509Store store(X509_STORE_new());
  if (!store || X509_STORE_load_file(store.get(), config_.ca_bundle_file.c_str()) != 1) {
    return fail(IdentityError::io, "loading the CA bundle " + config_.ca_bundle_file.string() + " failed: " + ossl::drain_errors());
  }
  ossl::X509Stack untrusted(sk_X509_new_null());
  for (std::size_t i = 1; i < chain->size(); ++i) {
    if (!untrusted || sk_X509_push(untrusted.get(), (*chain)[i].get()) <= 0) {
      return fail(IdentityError::crypto, "building the certificate stack failed: " + ossl::drain_errors());
    }
    X509_up_ref((*chain)[i].get());
  }
  ossl::X509StoreContext context(X509_STORE_CTX_new());
  if (!context || X509_STORE_CTX_init(context.get(), store.get(), leaf, untrusted.get()) != 1) {
    return fail(IdentityError::crypto, "preparing chain verification failed: " + ossl::drain_errors());
  }
  X509_STORE_CTX_set_purpose(context.get(), X509_PURPOSE_SSL_SERVER);
  X509_VERIFY_PARAM_set_time(X509_STORE_CTX_get0_param(context.get()), SystemClock::to_time_t(now_()));
  if (X509_verify_cert(context.get()) != 1) {
    const int error = X509_STORE_CTX_get_error(context.get());
    ERR_clear_error();
    return fail(IdentityError::untrusted, std::string("the certificate chain does not verify against the CA bundle: ") +
                                              X509_verify_cert_error_string(error));
  }

  Identity identity;
  identity.not_before = to_time_point(X509_get0_notBefore(leaf));
  identity.not_after = to_time_point(X509_get0_notAfter(leaf));
  identity.key = std::move(key);
  identity.leaf = std::move(chain->front());
  identity.chain_pem = std::move(chain_pem);
  return identity;
}

Result<Identity, IdentityError> IdentityManager::enroll() { return request(CredentialKind::bootstrap); }

Result<Identity, IdentityError> IdentityManager::renew() { return request(CredentialKind::renewal); }

Result<Identity, IdentityError> IdentityManager::request(CredentialKind kind) {
  const bool bootstrap = kind == CredentialKind::bootstrap;
  const auto& credential_file = bootstrap ? config_.bootstrap_file : paths_.renewal_credential;
  auto credential = read_credential(credential_file);
  if (!credential) return std::unexpected(credential.error());

  // A new key for every request, written before the CSR leaves so that a crash cannot
  // separate a stored chain from its key.
  // The CSR names the enclave (and its public host), for issuers that take the names from it.
  std::vector<std::string> names = {enclave_dns_name(config_.enclave_id)};
  if (!config_.public_host.empty()) names.push_back(config_.public_host);
  auto generated = crypto::generate_key_and_csr(names.front(), names);
  if (!generated) return fail(IdentityError::crypto, "making the key and CSR failed: " + generated.error().detail);
  const SecretBytes key_pem(std::string_view(generated->private_key_pem));
  wipe_string(generated->private_key_pem);
  auto key = ossl::private_key_from_pem(key_pem.text());
  if (!key) return fail(IdentityError::crypto, "reading the new key failed: " + key.error().detail);
  if (auto written = ossl::write_file_atomically(paths_.next_key, key_pem.view(), 0600); !written) {
    return fail(IdentityError::io, written.error().detail);
  }

  client::HttpRequest http_request;
  http_request.method = "POST";
  http_request.url = config_.csr_url;
  http_request.body = nlohmann::json{{"enclave_id", config_.enclave_id}, {"csr_pem", generated->csr_pem}}.dump();
  http_request.headers.emplace_back("Authorization", std::string(bootstrap ? "Bootstrap " : "Renewal ") + std::string(credential->text()));
  auto response = transport_(http_request);
  wipe_string(http_request.headers.front().second);

  if (!response) {
    return fail(IdentityError::unreachable, "sending the CSR to " + config_.csr_url + " failed: " + response.error().detail);
  }
  if (response->status != 200) return std::unexpected(error_for_status(*response));

  auto csr_response = parse_response(response->body);
  if (!csr_response) return std::unexpected(csr_response.error());
  auto identity = verify(std::move(*key), std::move(csr_response->chain_pem));
  if (!identity) return std::unexpected(identity.error());

  if (auto committed = commit(*identity, csr_response->renewal_credential); !committed) return std::unexpected(committed.error());
  if (bootstrap) {
    std::error_code ec;
    if (!std::filesystem::remove(config_.bootstrap_file, ec) && ec) {
      logging::warn("bootstrap_file_not_removed", {{"path", config_.bootstrap_file.string()}, {"error", ec.message()}});
    }
  }
  return identity;
}

// Stores the renewal credential first, because the one just used is spent, then the chain
// as cert-chain.next.pem, then renames both ".next" files into place (see recover()).
Result<void, IdentityError> IdentityManager::commit(const Identity& identity, const SecretBytes& renewal_credential) {
  if (auto written = ossl::write_file_atomically(paths_.renewal_credential, renewal_credential.view(), 0600); !written) {
    return fail(IdentityError::io, written.error().detail);
  }
  if (auto written = ossl::write_file_atomically(paths_.next_chain, identity.chain_pem, 0600); !written) {
    return fail(IdentityError::io, written.error().detail);
  }
  if (auto renamed = rename_file(paths_.next_key, paths_.key); !renamed) return renamed;
  if (auto renamed = rename_file(paths_.next_chain, paths_.chain); !renamed) return renamed;
  sync_directory(config_.directory);
  return {};
}

SystemClock::time_point IdentityManager::renewal_time(const Identity& identity) const {
  const auto lifetime = std::chrono::duration<double>(identity.not_after - identity.not_before);
  return identity.not_before + std::chrono::duration_cast<SystemClock::duration>(lifetime * config_.renewal_fraction);
}

Result<Identity, IdentityError> with_retries(const std::function<Result<Identity, IdentityError>()>& attempt,
                                             std::chrono::seconds budget,
                                             const std::function<void(std::chrono::seconds)>& sleep,
                                             const TimeSource& now) {
  constexpr std::chrono::seconds max_delay{10};
  const auto deadline = now() + budget;
  std::chrono::seconds delay{1};
  for (int number = 1;; ++number) {
    auto result = attempt();
    if (result || result.error().code != IdentityError::unreachable) return result;

    const auto remaining = std::chrono::duration_cast<std::chrono::seconds>(deadline - now());
    if (remaining <= std::chrono::seconds::zero()) return result;

    const auto wait = std::min({delay, max_delay, remaining});
    logging::warn("csr_retry", {{"attempt", number}, {"error", result.error().detail}, {"retry_in_s", wait.count()}});
    sleep(wait);
    delay *= 2;
  }
}

}  // namespace licensing::enclave
