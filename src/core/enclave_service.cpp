#include "core/enclave_service.hpp"

#include <fmt/core.h>
#include <openssl/err.h>

#include "common/logging.hpp"
#include "core/bootstrap.hpp"
#include "crypto/openssl.hpp"

namespace licensing::core {
namespace {

using store::EnclaveState;
using SystemClock = std::chrono::system_clock;

constexpr std::size_t kMaxIdempotencyKeyBytes = 128;
constexpr std::size_t kMaxCsrBytes = 16 * 1024;

std::unexpected<Error<EnclaveError>> store_failure(const Error<store::StoreError>& error) {
  logging::error("enclave_store_failed", {{"detail", error.detail}});
  if (error.code == store::StoreError::unavailable) return fail(EnclaveError::unavailable, "the database is unavailable");
  return fail(EnclaveError::internal, "the database rejected the operation");
}

std::int64_t unix_seconds(SystemClock::time_point at) {
  return std::chrono::duration_cast<std::chrono::seconds>(at.time_since_epoch()).count();
}

void to_message(const store::Enclave& enclave, licensing::v1::Enclave* message) {
  message->set_id(enclave.id);
  message->set_owner_id(enclave.owner_id);
  message->set_state(std::string(store::to_string(enclave.state)));
  message->set_endpoint(enclave.endpoint);
  message->set_created_at(unix_seconds(enclave.created_at));
  message->set_failure_reason(enclave.failure_reason);
}

// Checks the CSR before a credential is spent on it: PEM, a P-256 key, a valid
// self-signature.
Result<void, EnclaveError> check_p256_csr(const std::string& csr_pem) {
  if (csr_pem.empty() || csr_pem.size() > kMaxCsrBytes) {
    return fail(EnclaveError::invalid_argument, "csr_pem must be 1 byte to 16 KiB");
  }
  auto request = crypto::ossl::request_from_pem(csr_pem);
  if (!request) return fail(EnclaveError::invalid_argument, "csr_pem is not a PEM certificate request");
  EVP_PKEY* key = X509_REQ_get0_pubkey(request->get());
  if (key == nullptr || !crypto::ossl::is_p256(key)) {
    ERR_clear_error();
    return fail(EnclaveError::invalid_argument, "the CSR key must be EC P-256");
  }
  if (X509_REQ_verify(request->get(), key) != 1) {
    ERR_clear_error();
    return fail(EnclaveError::invalid_argument, "the CSR self-signature does not verify");
  }
  return {};
}

}  // namespace

// The host of an https://host:port endpoint, or empty when it has another form.
static std::string endpoint_host(std::string_view endpoint) {
  constexpr std::string_view scheme = "https://";
  if (!endpoint.starts_with(scheme)) return {};
  const auto authority = endpoint.substr(scheme.size(), endpoint.find('/', scheme.size()) - scheme.size());
  const auto colon = authority.rfind(':');
  return std::string(colon == std::string_view::npos ? authority : authority.substr(0, colon));
}

std::string enclave_dns_name(std::string_view enclave_id) {
  return std::string(enclave_id) + ".enclaves.licensing.internal";
}

grpc::Status to_status(const Error<EnclaveError>& error) {
  switch (error.code) {
    case EnclaveError::invalid_argument: return {grpc::StatusCode::INVALID_ARGUMENT, error.detail};
    case EnclaveError::not_found: return {grpc::StatusCode::NOT_FOUND, error.detail};
    case EnclaveError::quota_exceeded: return {grpc::StatusCode::FAILED_PRECONDITION, error.detail};
    case EnclaveError::not_ready: return {grpc::StatusCode::FAILED_PRECONDITION, error.detail};
    case EnclaveError::unauthenticated: return {grpc::StatusCode::UNAUTHENTICATED, error.detail};
    case EnclaveError::no_free_port: return {grpc::StatusCode::RESOURCE_EXHAUSTED, error.detail};
    case EnclaveError::unavailable: return {grpc::StatusCode::UNAVAILABLE, error.detail};
    case EnclaveError::internal: return {grpc::StatusCode::INTERNAL, error.detail};
  }
  return {grpc::StatusCode::INTERNAL, error.detail};
}

EnclaveManager::EnclaveManager(store::Store& store, Provisioner& provisioner, crypto::CertificateAuthority& authority,
                               const KeyHolder& keys, TokenPolicy token_policy, EnclavePolicy policy,
                               CertificateObserver& observer)
    : store_(store),
      provisioner_(provisioner),
      authority_(authority),
      builtin_issuer_(std::make_unique<BuiltinIssuer>(authority)),
      issuer_(builtin_issuer_.get()),
      keys_(keys),
      token_policy_(std::move(token_policy)),
      policy_(std::move(policy)),
      observer_(observer) {}

EnclaveManager::EnclaveManager(store::Store& store, Provisioner& provisioner, crypto::CertificateAuthority& authority,
                               EnclaveIssuer& issuer, const KeyHolder& keys, TokenPolicy token_policy,
                               EnclavePolicy policy, CertificateObserver& observer)
    : store_(store),
      provisioner_(provisioner),
      authority_(authority),
      issuer_(&issuer),
      keys_(keys),
      token_policy_(std::move(token_policy)),
      policy_(std::move(policy)),
      observer_(observer) {}

EnclaveManager::~EnclaveManager() { stop(); }

bool EnclaveManager::claim(const std::string& id) {
  std::lock_guard lock(mutex_);
  return busy_.insert(id).second;
}

void EnclaveManager::release(const std::string& id) {
  std::lock_guard lock(mutex_);
  busy_.erase(id);
}

Result<store::Enclave, EnclaveError> EnclaveManager::find_owned(const std::string& owner_id,
                                                                const std::string& enclave_id) {
  if (!is_uuid(enclave_id)) return fail(EnclaveError::invalid_argument, "enclave_id must be a lowercase UUID");
  if (!is_user_id(owner_id)) return fail(EnclaveError::invalid_argument, "owner_id must be 1 to 64 characters of [A-Za-z0-9._-]");
  auto found = store_.find_enclave(enclave_id);
  if (!found) return store_failure(found.error());
  // Another owner's enclave is reported exactly like a missing one.
  if (!*found || (*found)->owner_id != owner_id) return fail(EnclaveError::not_found, "no such enclave");
  return std::move(**found);
}

Result<std::string, EnclaveError> EnclaveManager::launch(const store::Enclave& enclave, bool was_ready) {
  InstanceConfig config;
  config.enclave_id = enclave.id;
  config.owner_id = enclave.owner_id;
  config.port = enclave.port;
  config.csr_url = policy_.csr_url;
  config.issuer = token_policy_.issuer;
  config.jwks_json = keys_.get()->jwks().dump();
  config.ca_bundle_pem = authority_.root_pem();
  if (!config.ca_bundle_pem.ends_with('\n')) config.ca_bundle_pem += '\n';
  config.ca_bundle_pem += policy_.extra_ca_bundle_pem;
  config.require_client_certificate = policy_.require_client_certificate;

  const auto now = SystemClock::now();
  // An instance that never passed its health check may have died before it stored the
  // certificate it was issued, so it gets a fresh bootstrap credential too.
  // An instance whose private directory does not outlive it (a pod's in-memory volume)
  // always starts without a key, so it always needs one.
  const bool has_valid_certificate = enclave.certificate_not_after && *enclave.certificate_not_after > now &&
                                     provisioner_.keeps_private_directory();
  const bool confirmed =
      was_ready || (enclave.state != store::EnclaveState::requested && enclave.state != store::EnclaveState::starting);
  if (!has_valid_certificate || !confirmed) {
    NewCredential credential = make_credential();
    if (credential.credential.empty()) return fail(EnclaveError::internal, "the random number generator failed");
    auto stored = store_.insert_enclave_credential({credential.hash_hex, enclave.id, store::CredentialKind::bootstrap,
                                                    now, now + policy_.bootstrap_lifetime});
    if (!stored) return store_failure(stored.error());
    config.bootstrap_credential = std::move(credential.credential);
  }

  auto instance = provisioner_.start(config);
  if (!instance) {
    logging::error("enclave_start_failed", {{"enclave_id", enclave.id}, {"detail", instance.error().detail}});
    return fail(EnclaveError::internal, instance.error().detail);
  }
  {
    std::lock_guard lock(mutex_);
    watches_[enclave.id].starting_since = std::chrono::steady_clock::now();
  }
  return std::move(*instance);
}

Result<store::Enclave, EnclaveError> EnclaveManager::fail_enclave(const store::Enclave& enclave,
                                                                  const std::string& reason) {
  logging::warn("enclave_failed", {{"enclave_id", enclave.id}, {"reason", reason}});
  auto stopped = provisioner_.stop(enclave.id);
  if (!stopped) logging::error("enclave_stop_failed", {{"enclave_id", enclave.id}, {"detail", stopped.error().detail}});
  auto failed = store_.transition_enclave(enclave.id, enclave.state, EnclaveState::failed,
                                          {.failure_reason = reason}, SystemClock::now());
  if (!failed) return store_failure(failed.error());
  return std::move(*failed);
}

Result<store::Enclave, EnclaveError> EnclaveManager::provision(const std::string& owner_id,
                                                               const std::string& idempotency_key) {
  if (!is_user_id(owner_id)) return fail(EnclaveError::invalid_argument, "owner_id must be 1 to 64 characters of [A-Za-z0-9._-]");
  if (idempotency_key.size() > kMaxIdempotencyKeyBytes) {
    return fail(EnclaveError::invalid_argument, "idempotency_key is longer than 128 bytes");
  }
  if (policy_.csr_url.empty()) {
    return fail(EnclaveError::not_ready, "licensing-core was started without --csr-url, so enclaves cannot get certificates");
  }
  const std::string id = random_uuid();
  if (id.empty()) return fail(EnclaveError::internal, "the random number generator failed");

  const auto now = SystemClock::now();
  store::Enclave record{.id = id,
                        .owner_id = owner_id,
                        .state = EnclaveState::requested,
                        .endpoint = {},
                        .port = 0,
                        .instance = {},
                        .failure_reason = {},
                        .idempotency_key = idempotency_key,
                        .certificate_not_after = std::nullopt,
                        .created_at = now,
                        .updated_at = now};
  // Claimed before the insert, so the monitor never starts this record a second time.
  claim(id);
  auto inserted = store_.insert_enclave(record, policy_.quota, policy_.ports);
  if (!inserted) {
    release(id);
    return store_failure(inserted.error());
  }
  switch (inserted->outcome) {
    case store::EnclaveInsertOutcome::existing: release(id); return std::move(*inserted->enclave);
    case store::EnclaveInsertOutcome::quota_exceeded:
      release(id);
      return fail(EnclaveError::quota_exceeded, fmt::format("the owner has {} live enclave(s), the quota", policy_.quota));
    case store::EnclaveInsertOutcome::no_free_port:
      release(id);
      logging::error("enclave_ports_exhausted", {{"first", policy_.ports.first}, {"last", policy_.ports.last}});
      return fail(EnclaveError::no_free_port, "every enclave port is in use; delete enclaves or widen the port range");
    case store::EnclaveInsertOutcome::created: break;
  }
  const store::Enclave created = std::move(*inserted->enclave);
  logging::info("enclave_requested", {{"enclave_id", id}, {"owner_id", owner_id}, {"port", created.port}});

  auto instance = launch(created);
  if (!instance) {
    auto failed = fail_enclave(created, instance.error().detail);
    release(id);
    return failed;
  }
  auto starting = store_.transition_enclave(
      id, EnclaveState::requested, EnclaveState::starting,
      {.endpoint = provisioner_.endpoint(id, created.port), .instance = *instance}, SystemClock::now());
  release(id);
  if (!starting) return store_failure(starting.error());
  wake_.notify_all();
  return std::move(*starting);
}

Result<store::Enclave, EnclaveError> EnclaveManager::get(const std::string& owner_id, const std::string& enclave_id) {
  return find_owned(owner_id, enclave_id);
}

Result<std::vector<store::Enclave>, EnclaveError> EnclaveManager::list(const std::string& owner_id) {
  if (!is_user_id(owner_id)) return fail(EnclaveError::invalid_argument, "owner_id must be 1 to 64 characters of [A-Za-z0-9._-]");
  auto listed = store_.list_enclaves(owner_id);
  if (!listed) return store_failure(listed.error());
  std::vector<store::Enclave> visible;
  for (auto& enclave : *listed) {
    if (enclave.state != EnclaveState::deleted) visible.push_back(std::move(enclave));
  }
  return visible;
}

Result<store::Enclave, EnclaveError> EnclaveManager::finish_delete(store::Enclave enclave) {
  auto removed = provisioner_.remove(enclave.id);
  if (!removed) {
    logging::error("enclave_remove_failed", {{"enclave_id", enclave.id}, {"detail", removed.error().detail}});
    return fail(EnclaveError::internal, "removing the enclave's instance failed; deletion resumes at the next start");
  }
  auto deleted = store_.transition_enclave(enclave.id, EnclaveState::deleting, EnclaveState::deleted, {}, SystemClock::now());
  if (!deleted) return store_failure(deleted.error());
  {
    std::lock_guard lock(mutex_);
    watches_.erase(enclave.id);
  }
  logging::info("enclave_deleted", {{"enclave_id", enclave.id}});
  return std::move(*deleted);
}

Result<store::Enclave, EnclaveError> EnclaveManager::remove(const std::string& owner_id, const std::string& enclave_id) {
  auto enclave = find_owned(owner_id, enclave_id);
  if (!enclave) return enclave;
  if (enclave->state == EnclaveState::deleted) return enclave;

  // The monitor may move the record concurrently (starting to ready, say); a few retries
  // with a fresh read settle that.
  for (int attempt = 0; attempt < 5; ++attempt) {
    if (!claim(enclave_id)) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      continue;
    }
    if (enclave->state != EnclaveState::deleting) {
      auto deleting =
          store_.transition_enclave(enclave_id, enclave->state, EnclaveState::deleting, {}, SystemClock::now());
      if (!deleting && deleting.error().code == store::StoreError::conflict) {
        release(enclave_id);
        enclave = find_owned(owner_id, enclave_id);
        if (!enclave || enclave->state == EnclaveState::deleted) return enclave;
        continue;
      }
      if (!deleting) {
        release(enclave_id);
        return store_failure(deleting.error());
      }
      enclave = std::move(*deleting);
    }
    auto deleted = finish_delete(std::move(*enclave));
    release(enclave_id);
    return deleted;
  }
  return fail(EnclaveError::unavailable, "the enclave is busy; retry the deletion");
}

Result<licensing::v1::MintAccessTokenResponse, EnclaveError> EnclaveManager::mint_token(const std::string& owner_id,
                                                                                        const std::string& enclave_id,
                                                                                        const std::string& session_id) {
  if (!is_user_id(session_id)) return fail(EnclaveError::invalid_argument, "session_id must be 1 to 64 characters of [A-Za-z0-9._-]");
  auto enclave = find_owned(owner_id, enclave_id);
  if (!enclave) return std::unexpected(enclave.error());
  if (enclave->state != EnclaveState::ready) {
    return fail(EnclaveError::not_ready, fmt::format("the enclave is {}, not ready", store::to_string(enclave->state)));
  }

  const std::string token_id = random_uuid();
  if (token_id.empty()) return fail(EnclaveError::internal, "the random number generator failed");
  const auto now = unix_seconds(SystemClock::now());
  const auto lifetime = token_policy_.access_token_lifetime.count();
  const nlohmann::json claims = {
      {"iss", token_policy_.issuer}, {"sub", owner_id},        {"aud", enclave_id},
      {"iat", now},                  {"nbf", now},             {"exp", now + lifetime},
      {"jti", token_id},             {"sid", session_id},
  };
  auto token = keys_.get()->sign(claims);
  if (!token) {
    logging::error("token_signing_failed", {{"error", crypto::to_string(token.error().code)}});
    return fail(EnclaveError::internal, "token signing failed");
  }
  licensing::v1::MintAccessTokenResponse response;
  response.set_access_token(*token);
  response.set_expires_in(lifetime);
  logging::debug("enclave_token_minted", {{"enclave_id", enclave_id}, {"sub", owner_id}, {"jti", token_id}});
  return response;
}

EnclaveCertificateRequest EnclaveManager::certificate_request(const store::Enclave& enclave, const std::string& csr_pem) const {
  EnclaveCertificateRequest request;
  request.enclave_id = enclave.id;
  request.csr_pem = csr_pem;
  request.dns_names = {enclave_dns_name(enclave.id)};
  request.ip_addresses = provisioner_.certificate_ip_addresses();
  // Clients check that the certificate names the host of the endpoint they connect to:
  // an ingress host name on Kubernetes, an address (already listed) for local processes.
  if (const auto host = endpoint_host(provisioner_.endpoint(enclave.id, enclave.port));
      !host.empty() && host.find_first_not_of("0123456789.:[]") != std::string::npos && host != request.dns_names.front()) {
    request.dns_names.push_back(host);
  }
  request.lifetime = policy_.certificate_lifetime;
  return request;
}

Result<licensing::v1::SignEnclaveCsrResponse, EnclaveError> EnclaveManager::sign_csr(const std::string& enclave_id,
                                                                                     const std::string& credential,
                                                                                     const std::string& csr_pem,
                                                                                     std::string_view credential_kind) {
  if (!is_uuid(enclave_id)) return fail(EnclaveError::invalid_argument, "enclave_id must be a lowercase UUID");
  if (auto checked = check_p256_csr(csr_pem); !checked) return std::unexpected(checked.error());
  if (!is_credential_shaped(credential)) return fail(EnclaveError::unauthenticated, "invalid enclave credential");

  // A TPM that cannot record the measurement now answers 503 before the credential is
  // spent, so the enclave retries with the same credential once the TPM is back.
  if (auto ready = observer_.ready(); !ready) {
    logging::warn("enclave_certificate_deferred", {{"enclave_id", enclave_id}, {"detail", ready.error().detail}});
    return fail(EnclaveError::unavailable, "the certificate cannot be measured now: " + ready.error().detail);
  }

  // An issuer that takes the names from the CSR checks them before the credential is spent,
  // so a CSR with wrong names does not cost the enclave its single-use credential.
  if (auto known = store_.find_enclave(enclave_id); known && *known) {
    if (auto checked = issuer_->check(certificate_request(**known, csr_pem)); !checked) {
      logging::warn("enclave_csr_rejected", {{"enclave_id", enclave_id}, {"detail", checked.error().detail}});
      return fail(EnclaveError::invalid_argument, checked.error().detail);
    }
  }

  const auto now = SystemClock::now();
  auto consumed = store_.consume_enclave_credential(credential_hash(credential), enclave_id, now);
  if (!consumed) return store_failure(consumed.error());
  if (consumed->outcome != store::CredentialOutcome::consumed) {
    const char* outcome = consumed->outcome == store::CredentialOutcome::used      ? "used"
                          : consumed->outcome == store::CredentialOutcome::expired ? "expired"
                                                                                   : "unknown";
    logging::warn("enclave_credential_rejected", {{"enclave_id", enclave_id}, {"outcome", outcome}});
    return fail(EnclaveError::unauthenticated, "invalid enclave credential");
  }
  const std::string_view consumed_kind = consumed->kind == store::CredentialKind::bootstrap ? "bootstrap" : "renewal";
  if (!credential_kind.empty() && credential_kind != consumed_kind) {
    // The credential is used up all the same: presenting it under the wrong scheme is misuse.
    logging::warn("enclave_credential_rejected", {{"enclave_id", enclave_id}, {"outcome", "wrong_scheme"}});
    return fail(EnclaveError::unauthenticated, "invalid enclave credential");
  }

  auto enclave = store_.find_enclave(enclave_id);
  if (!enclave) return store_failure(enclave.error());
  if (!*enclave || ((*enclave)->state != EnclaveState::starting && (*enclave)->state != EnclaveState::ready)) {
    return fail(EnclaveError::not_ready, "the enclave is not starting or ready");
  }

  const EnclaveCertificateRequest request = certificate_request(**enclave, csr_pem);
  auto issued = issuer_->issue(request);
  if (!issued) {
    logging::error("enclave_certificate_failed", {{"enclave_id", enclave_id}, {"detail", issued.error().detail}});
    const IssuerError code = issued.error().code;
    return fail(code == IssuerError::invalid_csr                                    ? EnclaveError::invalid_argument
                : code == IssuerError::timed_out || code == IssuerError::unavailable ? EnclaveError::unavailable
                                                                                     : EnclaveError::internal,
                std::string(to_string(code)));
  }

  // A certificate that cannot be measured is never handed out. The TPM was checked before
  // the credential was spent, so this happens only when it fails in between; the
  // credential is then used up and the enclave ends failed.
  auto leaf = crypto::ossl::certificate_from_pem(issued->certificate_pem);
  if (!leaf) return fail(EnclaveError::internal, "the issued certificate does not parse");
  auto der = crypto::ossl::certificate_to_der(leaf->get());
  if (!der) return fail(EnclaveError::internal, "the issued certificate does not encode");
  auto measured = observer_.on_enclave_certificate({enclave_id, (*enclave)->owner_id, *der, issued->chain_pem});
  if (!measured) {
    logging::error("enclave_certificate_unmeasured", {{"enclave_id", enclave_id}, {"detail", measured.error().detail}});
    return fail(measured.error().code == MeasurementError::unavailable ? EnclaveError::unavailable : EnclaveError::internal,
                "the certificate could not be measured: " + measured.error().detail);
  }

  auto recorded = store_.set_enclave_certificate(enclave_id, issued->not_after, now);
  if (!recorded) return store_failure(recorded.error());
  NewCredential renewal = make_credential();
  if (renewal.credential.empty()) return fail(EnclaveError::internal, "the random number generator failed");
  auto stored = store_.insert_enclave_credential(
      {renewal.hash_hex, enclave_id, store::CredentialKind::renewal, now, issued->not_after});
  if (!stored) return store_failure(stored.error());

  logging::info("enclave_certificate_issued", {{"enclave_id", enclave_id},
                                               {"serial", issued->serial_hex},
                                               {"credential", consumed->kind == store::CredentialKind::bootstrap
                                                                  ? "bootstrap"
                                                                  : "renewal"}});

  licensing::v1::SignEnclaveCsrResponse response;
  response.set_certificate_chain_pem(issued->chain_pem);
  response.set_renewal_credential(std::string(renewal.credential.text()));
  response.set_not_after(unix_seconds(issued->not_after));
  wake_.notify_all();
  return response;
}

Result<licensing::v1::IssueClientCertificateResponse, EnclaveError> EnclaveManager::issue_client_certificate(
    const std::string& owner_id, const std::string& csr_pem) {
  if (!is_user_id(owner_id)) return fail(EnclaveError::invalid_argument, "owner_id must be 1 to 64 characters of [A-Za-z0-9._-]");
  if (auto checked = check_p256_csr(csr_pem); !checked) return std::unexpected(checked.error());

  crypto::ClientCertificateRequest request;
  request.csr_pem = csr_pem;
  request.user_id = owner_id;
  request.lifetime = std::chrono::hours(24);
  auto issued = authority_.issue_client_certificate(request);
  if (!issued) {
    const bool bad_input = issued.error().code == crypto::CertificateError::invalid_csr ||
                           issued.error().code == crypto::CertificateError::invalid_request;
    return fail(bad_input ? EnclaveError::invalid_argument : EnclaveError::internal,
                std::string(crypto::to_string(issued.error().code)));
  }
  licensing::v1::IssueClientCertificateResponse response;
  response.set_certificate_chain_pem(issued->chain_pem);
  response.set_not_after(unix_seconds(issued->not_after));
  return response;
}

// --- gRPC ---

grpc::Status EnclaveServiceImpl::ProvisionEnclave(grpc::ServerContext*,
                                                  const licensing::v1::ProvisionEnclaveRequest* request,
                                                  licensing::v1::Enclave* response) {
  auto enclave = manager_.provision(request->owner_id(), request->idempotency_key());
  if (!enclave) return to_status(enclave.error());
  to_message(*enclave, response);
  return grpc::Status::OK;
}

grpc::Status EnclaveServiceImpl::GetEnclave(grpc::ServerContext*, const licensing::v1::GetEnclaveRequest* request,
                                            licensing::v1::Enclave* response) {
  auto enclave = manager_.get(request->owner_id(), request->enclave_id());
  if (!enclave) return to_status(enclave.error());
  to_message(*enclave, response);
  return grpc::Status::OK;
}

grpc::Status EnclaveServiceImpl::ListEnclaves(grpc::ServerContext*, const licensing::v1::ListEnclavesRequest* request,
                                              licensing::v1::ListEnclavesResponse* response) {
  auto enclaves = manager_.list(request->owner_id());
  if (!enclaves) return to_status(enclaves.error());
  for (const auto& enclave : *enclaves) to_message(enclave, response->add_enclaves());
  return grpc::Status::OK;
}

grpc::Status EnclaveServiceImpl::DeleteEnclave(grpc::ServerContext*, const licensing::v1::DeleteEnclaveRequest* request,
                                               licensing::v1::Enclave* response) {
  auto enclave = manager_.remove(request->owner_id(), request->enclave_id());
  if (!enclave) return to_status(enclave.error());
  to_message(*enclave, response);
  return grpc::Status::OK;
}

grpc::Status EnclaveServiceImpl::MintEnclaveToken(grpc::ServerContext*,
                                                  const licensing::v1::MintEnclaveTokenRequest* request,
                                                  licensing::v1::MintAccessTokenResponse* response) {
  auto token = manager_.mint_token(request->owner_id(), request->enclave_id(), request->session_id());
  if (!token) return to_status(token.error());
  *response = std::move(*token);
  return grpc::Status::OK;
}

grpc::Status EnclaveServiceImpl::SignEnclaveCsr(grpc::ServerContext*, const licensing::v1::SignEnclaveCsrRequest* request,
                                                licensing::v1::SignEnclaveCsrResponse* response) {
  auto signed_csr =
      manager_.sign_csr(request->enclave_id(), request->credential(), request->csr_pem(), request->credential_kind());
  if (!signed_csr) return to_status(signed_csr.error());
  *response = std::move(*signed_csr);
  return grpc::Status::OK;
}

grpc::Status EnclaveServiceImpl::IssueClientCertificate(grpc::ServerContext*,
                                                        const licensing::v1::IssueClientCertificateRequest* request,
                                                        licensing::v1::IssueClientCertificateResponse* response) {
  auto issued = manager_.issue_client_certificate(request->owner_id(), request->csr_pem());
  if (!issued) return to_status(issued.error());
  *response = std::move(*issued);
  return grpc::Status::OK;
}

}  // namespace licensing::core
