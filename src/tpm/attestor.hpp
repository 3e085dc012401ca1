// The attestor: measures enclave certificates into a PCR through a persisted event log,
// and quotes that PCR with the attestation key.
//
// State files in `state_directory`: the AK (see attestation_key.hpp), the event log
// `events.jsonl`, and `pcr_state.json`, which stores the PCR index and the TPM's
// resetCount and restartCount of the last time the PCR matched the log.
//
// Start-up and every quote compare the PCR with the replayed log:
//   - equal: nothing to do;
//   - the TPM was reset or restarted since the stored counters (or none are stored): the
//     PCR is reset when it is not zero, and every event is extended again;
//   - the PCR equals the log without its last event: a crash came between the append and
//     the extension, so the last event is extended;
//   - anything else: pcr_mismatch. Someone else extended or reset the PCR, and no quote
//     is made until an operator investigates.
// NOTE: any process that can send TPM commands at locality 0 can reset PCR 16 or 23 and
// extend its own values. The attestor then refuses to quote, but cannot stop the reset.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "tpm/attestation_key.hpp"
#include "tpm/event_log.hpp"
#include "tpm/evidence.hpp"
#include "tpm/tpm_context.hpp"

namespace licensing::tpm {

struct AttestorOptions {
  std::filesystem::path state_directory;
  // The PCR of the SHA-256 bank that contains the event log's extensions. PCR 23 is free for applications
  // in the PC Client profile and resettable from locality 0.
  std::uint32_t event_pcr = 23;
  // PCRs quoted beside the event PCR (firmware and boot measurements, say). The attestor
  // quotes their current values and compares them with nothing; the verifier's policy does.
  std::vector<std::uint32_t> boot_pcrs;
};

class Attestor {
 public:
  // Takes over `tpm`, loads or creates the AK, opens the log and brings the PCR in line
  // with it (see the file comment). Fails with pcr_mismatch when the PCR cannot be explained.
  static TpmResult<std::unique_ptr<Attestor>> open(TpmContext tpm, AttestorOptions options);

  // Appends the event (the log assigns seq) and extends its digest into the event PCR.
  // The hex digests must be lowercase; ids must not contain '|' (invalid_argument).
  TpmResult<Event> measure(std::string enclave_id, std::string owner, std::string certificate_sha256,
                           std::string image_sha256);

  // Quotes the event PCR and the boot PCRs with qualifyingData =
  // attestation_qualifying_data(nonce, certificate_der). The nonce must be 16 to 64 bytes
  // and the certificate must have been measured (invalid_argument otherwise). Refuses with
  // pcr_mismatch when the PCR does not equal the replayed log, or when the PCR values
  // changed between reading them and the quote.
  TpmResult<Quote> quote(std::span<const std::uint8_t> nonce, std::span<const std::uint8_t> certificate_der);

  const AkPublicInfo& attestation_key() const { return key_.info(); }
  // The EK certificate read at open, when the TPM has one.
  const std::optional<std::string>& ek_certificate_pem() const { return ek_certificate_pem_; }
  std::vector<Event> events() const;

  // Direct access to the TPM, for diagnostics and tests. Callers must not use it while
  // another thread calls measure() or quote().
  TpmContext& tpm() { return tpm_; }

 private:
  Attestor(TpmContext tpm, AttestationKey key, EventLogFile log, AttestorOptions options)
      : tpm_(std::move(tpm)), key_(std::move(key)), log_(std::move(log)), options_(std::move(options)) {}

  // Brings the PCR in line with the log; called with mutex_ held. Returns true when the
  // TPM was reset or restarted since the stored counters.
  TpmResult<bool> synchronize();
  TpmResult<void> store_counters(const ClockCounters& counters);
  std::optional<ClockCounters> stored_counters() const;

  mutable std::mutex mutex_;
  TpmContext tpm_;
  AttestationKey key_;
  EventLogFile log_;
  AttestorOptions options_;
  std::optional<std::string> ek_certificate_pem_;
};

}  // namespace licensing::tpm
