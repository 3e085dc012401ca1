// TPM attestation in licensing-core: the measurement of every enclave certificate into the
// TPM's event log and PCR, and the quotes that clients verify before they connect.
//
// The TPM is reached through a TCTI configuration ("device:/dev/tpmrm0", "swtpm:host=...,
// port=..."), or, when none is given, through an swtpm that the core provisions (with an
// EK certificate from swtpm's local CA) and runs itself with its state in the data
// directory. A TPM that is lost (unreachable, restarted) is opened again on the next call,
// so the service recovers when the TPM does.
#pragma once

#include <nlohmann/json.hpp>

#include <atomic>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "core/certificate_observer.hpp"
#include "core/enclave_service.hpp"
#include "licensing.grpc.pb.h"
#include "tpm/attestor.hpp"
#include "tpm/swtpm_process.hpp"

namespace licensing::core {

struct AttestationConfig {
  // Files of the TPM layer: the AK, the event log, the enclave certificates and, for the
  // embedded swtpm, its state ("swtpm/").
  std::filesystem::path state_directory;
  // Empty: run an embedded swtpm.
  std::string tcti;
  std::uint32_t event_pcr = 23;
  // The SHA-256 (lowercase hex) of the enclave executable or image that runs the
  // certificate's key; called at each measurement.
  std::function<std::string()> image_sha256;
};

// Counts of refused attestations, by reason, since the start.
struct AttestationCounters {
  std::atomic<std::uint64_t> quotes{0};
  std::atomic<std::uint64_t> tpm_unreachable{0};
  std::atomic<std::uint64_t> tpm_lockout{0};
  std::atomic<std::uint64_t> pcr_mismatch{0};
  std::atomic<std::uint64_t> tpm_failed{0};
};

class TpmAttestation final : public CertificateObserver {
 public:
  // Opens the TPM (starting the embedded swtpm when configured) and the attestor. Fails
  // when the TPM cannot be opened at all, so that licensing-core does not start without
  // its attestation key.
  static tpm::TpmResult<std::unique_ptr<TpmAttestation>> open(AttestationConfig config);
  ~TpmAttestation() override;

  Result<void, MeasurementError> on_enclave_certificate(const IssuedEnclaveCertificate& issued) override;
  // Opens the TPM when an earlier call lost it; unavailable when it cannot be opened.
  Result<void, MeasurementError> ready() override;

  // The attestation document for `enclave_id`'s current certificate, bound to `nonce`.
  // invalid_argument: a nonce outside 16 to 64 bytes, or no certificate yet.
  tpm::TpmResult<nlohmann::json> attest(const std::string& enclave_id, std::span<const std::uint8_t> nonce);

  // The AK's public information, known even while the TPM is unreachable.
  const tpm::AkPublicInfo& attestation_key() const { return key_; }
  const std::optional<std::string>& ek_certificate_pem() const { return ek_certificate_pem_; }
  const AttestationCounters& counters() const { return counters_; }

 private:
  explicit TpmAttestation(AttestationConfig config) : config_(std::move(config)) {}

  // The attestor, opened again when an earlier call lost the TPM; called with mutex_ held.
  tpm::TpmResult<tpm::Attestor*> attestor();
  tpm::TpmResult<void> start_embedded_swtpm();
  // Drops the attestor after an error that means the TPM connection is gone.
  void note_failure(const Error<tpm::TpmError>& error);
  std::filesystem::path certificate_file(const std::string& enclave_id) const;

  AttestationConfig config_;
  std::mutex mutex_;
  std::optional<tpm::SwtpmProcess> swtpm_;
  std::unique_ptr<tpm::Attestor> attestor_;
  std::chrono::steady_clock::time_point next_open_{};
  tpm::AkPublicInfo key_;
  std::optional<std::string> ek_certificate_pem_;
  AttestationCounters counters_;
};

// The gRPC face of TpmAttestation. Ownership is checked through the enclave manager, so
// another owner's enclave and an unknown id are both NOT_FOUND.
class AttestationServiceImpl final : public licensing::v1::AttestationService::Service {
 public:
  AttestationServiceImpl(TpmAttestation& attestation, EnclaveManager& enclaves)
      : attestation_(attestation), enclaves_(enclaves) {}

  grpc::Status GetAttestation(grpc::ServerContext* context, const licensing::v1::GetAttestationRequest* request,
                              licensing::v1::GetAttestationResponse* response) override;
  grpc::Status GetAttestationKey(grpc::ServerContext* context, const licensing::v1::GetAttestationKeyRequest* request,
                                 licensing::v1::AttestationKey* response) override;

 private:
  TpmAttestation& attestation_;
  EnclaveManager& enclaves_;
};

// The status for a TPM failure: UNAVAILABLE with the reason as the message's first word.
grpc::Status tpm_status(const Error<tpm::TpmError>& error);

}  // namespace licensing::core
