// Client-side verification of attestation evidence (format in evidence.hpp). Pure: OpenSSL
// and Tss2_MU only, no TPM and no clock. The checks run in this order, and the first
// failure is returned with its own code:
//
//   1. evidence_malformed        fields missing, of the wrong type, or not base64url/hex
//   2. enclave_id_mismatch       "enclave_id" differs from the enclave the client asked about
//   3. nonce_mismatch            the echoed "nonce" differs from the client's nonce
//   4. ak_public_malformed       public_area is not exactly one TPMT_PUBLIC
//   5. ak_not_restricted_signing objectAttributes lack fixedTPM, fixedParent,
//                                sensitiveDataOrigin, restricted or sign, or has decrypt
//   6. ak_algorithm_unsupported  not ECC NIST P-256 with ECDSA SHA-256 and nameAlg SHA-256
//   7. ak_key_mismatch           public_key_pem, fingerprint or name disagree with public_area
//   8. ak_untrusted              the fingerprint is not in the pinned set
//   9. signature_malformed       signature is not exactly one TPMT_SIGNATURE
//  10. signature_scheme_mismatch sigAlg is not ECDSA or its hash is not SHA-256
//  11. signature_invalid         ECDSA over SHA-256 of the exact attest bytes fails
//  12. attest_malformed          attest is not exactly one TPMS_ATTEST
//  13. magic_invalid             magic is not TPM_GENERATED_VALUE
//  14. type_invalid              type is not TPM_ST_ATTEST_QUOTE
//  15. ak_name_mismatch          qualifiedSigner is not a SHA-256 qualified name
//  16. extra_data_mismatch       extraData is not the expected qualifying data (exact length)
//  17. pcr_selection_mismatch    the quoted selection is not exactly the policy's
//  18. pcr_values_malformed      "pcrs" does not hold exactly the selected SHA-256 values
//  19. pcr_digest_mismatch       pcrDigest is not SHA-256 of the values in selection order
//  20. event_log_malformed       an event does not parse, its digest field is wrong, or seq
//                                does not run 1, 2, ...
//  21. event_log_replay_mismatch the replayed log is not the event PCR's value
//  22. certificate_event_missing no event has this certificate's SHA-256 and enclave id
//  23. image_not_allowed         that event's image is not in the allowed set
//  24. boot_pcr_mismatch         a boot PCR differs from the policy's value
//  25. quote_too_old             the clock check of the policy fails (see ClockReference)
//
// The signature is checked before attest is parsed, so a changed bit anywhere in attest
// yields signature_invalid. Not checked here: the certificate chain to the licensing CA,
// its validity period and SANs, the EK certificate, and whether the TPM is genuine beyond
// the pinned AK.
#pragma once

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.hpp"
#include "tpm/event_log.hpp"

namespace licensing::tpm {

enum class QuoteError {
  evidence_malformed,
  enclave_id_mismatch,
  nonce_mismatch,
  ak_public_malformed,
  ak_not_restricted_signing,
  ak_algorithm_unsupported,
  ak_key_mismatch,
  ak_untrusted,
  signature_malformed,
  signature_scheme_mismatch,
  signature_invalid,
  attest_malformed,
  magic_invalid,
  type_invalid,
  ak_name_mismatch,
  extra_data_mismatch,
  pcr_selection_mismatch,
  pcr_values_malformed,
  pcr_digest_mismatch,
  event_log_malformed,
  event_log_replay_mismatch,
  certificate_event_missing,
  image_not_allowed,
  boot_pcr_mismatch,
  quote_too_old,
};

std::string_view to_string(QuoteError code);

// "Age" is measured on the TPM's own clock (TPMS_CLOCK_INFO.clock, milliseconds the TPM
// has been powered since its clock was last set), because the TPM has no wall time. The
// client records the clock fields of an earlier verified quote from the same TPM. A new
// quote passes only with the same resetCount and restartCount, safe = YES, and
// reference.clock_ms <= clock <= reference.clock_ms + max_age. The fresh nonce already
// shows the quote is newer than the request, so this bounds the time since the reference.
struct ClockReference {
  std::uint64_t clock_ms = 0;
  std::uint32_t reset_count = 0;
  std::uint32_t restart_count = 0;
  std::chrono::milliseconds max_age{0};
};

struct QuotePolicy {
  // Pinned AK fingerprints, "sha256:<lowercase hex of SHA-256 over the DER public key>".
  std::vector<std::string> trusted_ak_fingerprints;
  std::uint32_t event_pcr = 23;
  // Boot PCRs of the SHA-256 bank, index to expected lowercase hex. The quote must select
  // exactly these and the event PCR.
  std::map<std::uint32_t, std::string> boot_pcrs;
  // When not empty, the certificate's event must name one of these image digests.
  std::vector<std::string> allowed_image_sha256;
  std::optional<ClockReference> clock_reference;
};

struct VerificationRequest {
  std::string_view enclave_id;
  std::span<const std::uint8_t> nonce;            // the client's fresh nonce
  std::span<const std::uint8_t> certificate_der;  // the leaf certificate the client will pin
};

struct VerifiedQuote {
  Event event;  // the certificate's event
  std::string ak_fingerprint;
  std::uint64_t clock_ms = 0;
  std::uint32_t reset_count = 0;
  std::uint32_t restart_count = 0;
};

Result<VerifiedQuote, QuoteError> verify_attestation(const nlohmann::json& evidence, const VerificationRequest& request,
                                                     const QuotePolicy& policy);

}  // namespace licensing::tpm
