#include "core/attestation.hpp"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <thread>

#include "common/base64url.hpp"
#include "common/logging.hpp"
#include "crypto/openssl.hpp"

namespace licensing::core {
namespace {

namespace fs = std::filesystem;
using tpm::TpmError;

constexpr auto reopen_interval = std::chrono::seconds(1);

// Checks that an enclave id can be a file name. The enclave manager accepts only UUIDs,
// and this check keeps any other text out of a path all the same.
bool safe_file_name(std::string_view name) {
  return !name.empty() && name.size() <= 64 && name.find_first_not_of("0123456789abcdef-") == std::string_view::npos;
}

std::optional<std::string> read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

// Splits a PEM bundle into its certificates, each with its BEGIN and END lines.
std::vector<std::string> split_pem(std::string_view bundle) {
  constexpr std::string_view end_marker = "-----END CERTIFICATE-----";
  std::vector<std::string> certificates;
  std::size_t position = 0;
  for (;;) {
    const auto begin = bundle.find("-----BEGIN CERTIFICATE-----", position);
    if (begin == std::string_view::npos) break;
    const auto end = bundle.find(end_marker, begin);
    if (end == std::string_view::npos) break;
    certificates.emplace_back(bundle.substr(begin, end + end_marker.size() - begin));
    certificates.back() += "\n";
    position = end + end_marker.size();
  }
  return certificates;
}

// An swtpm left running by a licensing-core that was killed still holds the state
// directory's lock. It is stopped when its pid file names a live swtpm on that directory.
void stop_leftover_swtpm(const fs::path& state, const fs::path& pid_file) {
  const auto text = read_text(pid_file);
  if (!text) return;
  pid_t pid = 0;
  try {
    pid = static_cast<pid_t>(std::stol(*text));
  } catch (const std::exception&) {
    return;
  }
  if (pid <= 1) return;
  const auto command_line = read_text(fs::path("/proc") / std::to_string(pid) / "cmdline");
  if (!command_line || command_line->find("swtpm") == std::string::npos ||
      command_line->find(state.string()) == std::string::npos) {
    return;
  }
  logging::warn("swtpm_leftover_stopped", {{"pid", pid}});
  ::kill(pid, SIGTERM);
  for (int attempt = 0; attempt < 50 && ::kill(pid, 0) == 0; ++attempt) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  if (::kill(pid, 0) == 0) ::kill(pid, SIGKILL);
}

}  // namespace

tpm::TpmResult<std::unique_ptr<TpmAttestation>> TpmAttestation::open(AttestationConfig config) {
  std::error_code error;
  fs::create_directories(config.state_directory / "certificates", error);
  if (error) return fail(TpmError::io, "creating " + config.state_directory.string() + ": " + error.message());
  fs::permissions(config.state_directory, fs::perms::owner_all, fs::perm_options::replace, error);
  fs::permissions(config.state_directory / "certificates", fs::perms::owner_all, fs::perm_options::replace, error);

  std::unique_ptr<TpmAttestation> attestation(new TpmAttestation(std::move(config)));
  std::lock_guard lock(attestation->mutex_);
  if (attestation->config_.tcti.empty()) {
    auto started = attestation->start_embedded_swtpm();
    if (!started) return std::unexpected(started.error());
  }
  auto opened = attestation->attestor();
  if (!opened) return std::unexpected(opened.error());
  attestation->key_ = (*opened)->attestation_key();
  attestation->ek_certificate_pem_ = (*opened)->ek_certificate_pem();
  return attestation;
}

TpmAttestation::~TpmAttestation() {
  attestor_.reset();
  if (swtpm_) {
    swtpm_->stop();
    std::error_code error;
    fs::remove(config_.state_directory / "swtpm.pid", error);
  }
}

tpm::TpmResult<void> TpmAttestation::start_embedded_swtpm() {
  const fs::path state = fs::absolute(config_.state_directory / "swtpm");
  const fs::path pid_file = config_.state_directory / "swtpm.pid";
  stop_leftover_swtpm(state, pid_file);

  // swtpm_setup runs once: it leaves the permanent state (seeds, EK, its certificate).
  if (!fs::exists(state / "tpm2-00.permall")) {
    tpm::SwtpmSetupOptions setup;
    setup.state_directory = state;
    auto provisioned = tpm::provision_swtpm(setup);
    if (!provisioned) return provisioned;
    logging::info("swtpm_provisioned", {{"directory", state.string()}});
  }
  tpm::SwtpmOptions options;
  options.state_directory = state;
  auto started = tpm::SwtpmProcess::start(options);
  if (!started) return std::unexpected(started.error());
  swtpm_.emplace(std::move(*started));
  config_.tcti = swtpm_->tcti_config();

  const std::string pid_text = std::to_string(swtpm_->pid()) + "\n";
  auto written = crypto::ossl::write_file_atomically(pid_file, pid_text, 0600);
  if (!written) logging::warn("swtpm_pid_file_failed", {{"detail", written.error().detail}});
  return {};
}

tpm::TpmResult<tpm::Attestor*> TpmAttestation::attestor() {
  if (attestor_) return attestor_.get();
  // A lost TPM is tried again at most once a second, so a burst of requests does not
  // turn into a burst of connection attempts.
  const auto now = std::chrono::steady_clock::now();
  if (now < next_open_) return fail(TpmError::unreachable, "the TPM was unreachable less than a second ago");
  next_open_ = now + reopen_interval;

  if (swtpm_ && swtpm_->exited()) {
    // The embedded swtpm exited: start it again on the same state.
    logging::warn("swtpm_restarting", {});
    swtpm_.reset();
    auto started = start_embedded_swtpm();
    if (!started) return std::unexpected(started.error());
  }

  auto context = tpm::TpmContext::open(config_.tcti);
  if (!context) return std::unexpected(context.error());
  tpm::AttestorOptions options;
  options.state_directory = config_.state_directory;
  options.event_pcr = config_.event_pcr;
  auto opened = tpm::Attestor::open(std::move(*context), options);
  if (!opened) return std::unexpected(opened.error());
  attestor_ = std::move(*opened);
  logging::info("tpm_opened", {{"fingerprint", attestor_->attestation_key().fingerprint},
                               {"events", attestor_->events().size()}});
  return attestor_.get();
}

void TpmAttestation::note_failure(const Error<TpmError>& error) {
  switch (error.code) {
    case TpmError::unreachable:
    case TpmError::failure:
    case TpmError::command_failed:
      // The connection or the TPM's state is gone; the next call opens the TPM again and
      // brings the PCR back in line with the log.
      attestor_.reset();
      counters_.tpm_unreachable += error.code == TpmError::unreachable ? 1 : 0;
      counters_.tpm_failed += error.code == TpmError::unreachable ? 0 : 1;
      break;
    case TpmError::lockout:
      ++counters_.tpm_lockout;
      break;
    case TpmError::pcr_mismatch:
      ++counters_.pcr_mismatch;
      break;
    default:
      ++counters_.tpm_failed;
      break;
  }
}

fs::path TpmAttestation::certificate_file(const std::string& enclave_id) const {
  return config_.state_directory / "certificates" / (enclave_id + ".pem");
}

Result<void, MeasurementError> TpmAttestation::on_enclave_certificate(const IssuedEnclaveCertificate& issued) {
  const std::string enclave_id(issued.enclave_id);
  if (!safe_file_name(enclave_id)) return fail(MeasurementError::failed, "the enclave id is not a UUID");
  const std::string certificate_sha256 = crypto::ossl::to_hex(crypto::ossl::sha256(issued.der));
  const std::string image_sha256 = config_.image_sha256 ? config_.image_sha256() : std::string();
  if (image_sha256.size() != 64) return fail(MeasurementError::failed, "the enclave image digest is unknown");

  std::lock_guard lock(mutex_);
  auto attestor = this->attestor();
  if (!attestor) {
    note_failure(attestor.error());
    return fail(MeasurementError::unavailable, std::string(tpm::to_string(attestor.error().code)) + ": " +
                                                   attestor.error().detail);
  }
  // The chain is stored first: an event without its certificate is harmless, while a
  // served certificate without its event could never be attested.
  auto stored = crypto::ossl::write_file_atomically(certificate_file(enclave_id), issued.chain_pem, 0600);
  if (!stored) return fail(MeasurementError::failed, stored.error().detail);

  auto measured = (*attestor)->measure(enclave_id, std::string(issued.owner_id), certificate_sha256, image_sha256);
  if (!measured) {
    note_failure(measured.error());
    const bool unavailable = measured.error().code == TpmError::unreachable || measured.error().code == TpmError::lockout;
    return fail(unavailable ? MeasurementError::unavailable : MeasurementError::failed,
                std::string(tpm::to_string(measured.error().code)) + ": " + measured.error().detail);
  }
  logging::info("enclave_certificate_measured", {{"enclave_id", enclave_id},
                                                 {"seq", measured->seq},
                                                 {"certificate_sha256", certificate_sha256},
                                                 {"image_sha256", image_sha256}});
  return {};
}

Result<void, MeasurementError> TpmAttestation::ready() {
  std::lock_guard lock(mutex_);
  auto attestor = this->attestor();
  if (!attestor) {
    note_failure(attestor.error());
    return fail(MeasurementError::unavailable, std::string(tpm::to_string(attestor.error().code)) + ": " +
                                                   attestor.error().detail);
  }
  return {};
}

tpm::TpmResult<nlohmann::json> TpmAttestation::attest(const std::string& enclave_id,
                                                      std::span<const std::uint8_t> nonce) {
  if (nonce.size() < tpm::min_nonce_size || nonce.size() > tpm::max_nonce_size) {
    return fail(TpmError::invalid_argument, "the nonce must be 16 to 64 bytes");
  }
  if (!safe_file_name(enclave_id)) return fail(TpmError::invalid_argument, "the enclave id is not a UUID");
  const auto chain_pem = read_text(certificate_file(enclave_id));
  if (!chain_pem) return fail(TpmError::invalid_argument, "the enclave has no certificate yet");
  const auto chain = split_pem(*chain_pem);
  if (chain.empty()) return fail(TpmError::state_invalid, "the stored certificate chain is empty");
  auto leaf = crypto::ossl::certificate_from_pem(chain.front());
  if (!leaf) return fail(TpmError::state_invalid, "the stored certificate does not parse");
  auto der = crypto::ossl::certificate_to_der(leaf->get());
  if (!der) return fail(TpmError::state_invalid, "the stored certificate does not encode");

  std::lock_guard lock(mutex_);
  auto attestor = this->attestor();
  if (!attestor) {
    note_failure(attestor.error());
    return std::unexpected(attestor.error());
  }
  auto quote = (*attestor)->quote(nonce, *der);
  if (!quote) {
    note_failure(quote.error());
    return std::unexpected(quote.error());
  }
  ++counters_.quotes;
  // NOTE: the document carries the whole event log, which grows by one event per issued
  // certificate until the TPM is reset; nothing compacts it yet.
  return tpm::attestation_evidence(enclave_id, nonce, *quote, (*attestor)->attestation_key(),
                                   (*attestor)->ek_certificate_pem(), chain);
}

grpc::Status tpm_status(const Error<TpmError>& error) {
  std::string reason;
  switch (error.code) {
    case TpmError::unreachable: reason = "tpm_unreachable"; break;
    case TpmError::lockout: reason = "tpm_lockout"; break;
    case TpmError::pcr_mismatch: reason = "pcr_mismatch"; break;
    case TpmError::invalid_argument: return {grpc::StatusCode::FAILED_PRECONDITION, error.detail};
    default: reason = "tpm_failed"; break;
  }
  return {grpc::StatusCode::UNAVAILABLE, reason + ": " + error.detail};
}

grpc::Status AttestationServiceImpl::GetAttestation(grpc::ServerContext*, const licensing::v1::GetAttestationRequest* request,
                                                    licensing::v1::GetAttestationResponse* response) {
  if (request->nonce().size() < tpm::min_nonce_size || request->nonce().size() > tpm::max_nonce_size) {
    return {grpc::StatusCode::INVALID_ARGUMENT, "the nonce must be 16 to 64 bytes"};
  }
  auto enclave = enclaves_.get(request->owner_id(), request->enclave_id());
  if (!enclave) return to_status(enclave.error());
  if (enclave->state != store::EnclaveState::ready && enclave->state != store::EnclaveState::starting) {
    return {grpc::StatusCode::FAILED_PRECONDITION, "the enclave is " + std::string(store::to_string(enclave->state))};
  }

  const auto* bytes = reinterpret_cast<const std::uint8_t*>(request->nonce().data());
  auto evidence = attestation_.attest(enclave->id, {bytes, request->nonce().size()});
  if (!evidence) {
    logging::warn("attestation_refused", {{"enclave_id", enclave->id},
                                          {"reason", tpm::to_string(evidence.error().code)},
                                          {"detail", evidence.error().detail}});
    return tpm_status(evidence.error());
  }
  response->set_evidence_json(evidence->dump());
  return grpc::Status::OK;
}

grpc::Status AttestationServiceImpl::GetAttestationKey(grpc::ServerContext*, const licensing::v1::GetAttestationKeyRequest*,
                                                       licensing::v1::AttestationKey* response) {
  const auto& key = attestation_.attestation_key();
  response->set_public_key_pem(key.public_key_pem);
  response->set_public_area(base64url::encode(key.public_area));
  response->set_name(crypto::ossl::to_hex(key.name));
  response->set_fingerprint(key.fingerprint);
  if (attestation_.ek_certificate_pem()) response->set_ek_certificate_pem(*attestation_.ek_certificate_pem());
  return grpc::Status::OK;
}

}  // namespace licensing::core
