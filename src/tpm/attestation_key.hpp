// The attestation key (AK): a restricted ECC P-256 signing key (ECDSA, SHA-256) created
// under the endorsement key, and TPM2_Quote with it.
//
// Parent: the RSA 2048 EK from the TCG EK Credential Profile template L-1, recreated with
// TPM2_CreatePrimary in the endorsement hierarchy (the same key swtpm_setup certifies), and
// authorized with a policy session running TPM2_PolicySecret(endorsement). The hierarchy's
// authValue is assumed empty.
//
// Storage: the AK's TPM2B_PUBLIC and TPM2B_PRIVATE blobs in `<directory>/ak.pub` and
// `ak.priv`, its 32-byte random authValue in `ak.auth` (0600). Each open loads the blobs
// under the EK again, so nothing is written to the TPM's persistent handles. The private blob
// is wrapped by the EK and usable only in the TPM that made it.
#pragma once

#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include "common/secret.hpp"
#include "tpm/tpm_context.hpp"

namespace licensing::tpm {

struct AkPublicInfo {
  std::vector<std::uint8_t> public_area;  // marshalled TPMT_PUBLIC
  std::vector<std::uint8_t> name;         // 0x000B || SHA-256(public_area)
  std::string public_key_pem;
  std::string fingerprint;  // "sha256:" + hex of SHA-256 over the DER SubjectPublicKeyInfo
};

struct SignedQuote {
  std::vector<std::uint8_t> attest;     // marshalled TPMS_ATTEST, the exact bytes the AK signed
  std::vector<std::uint8_t> signature;  // marshalled TPMT_SIGNATURE
};

class AttestationKey {
 public:
  // Loads the AK from `directory`, or creates it there when none of its three files exist.
  // A partial set of files is state_invalid; a wrong authValue in ak.auth shows only at the
  // first quote (auth_failed), because TPM2_Load does not check it.
  static TpmResult<AttestationKey> load_or_create(TpmContext& tpm, const std::filesystem::path& directory);

  const AkPublicInfo& info() const { return info_; }

  // TPM2_Sign of a digest with ECDSA SHA-256. `validation` is the TPM2_Hash ticket that a
  // restricted key requires; the TPM issues none for data that starts with
  // TPM_GENERATED_VALUE, so this cannot forge a quote. Returns a marshalled TPMT_SIGNATURE.
  TpmResult<std::vector<std::uint8_t>> sign_digest(TpmContext& tpm, const TPM2B_DIGEST& digest,
                                                   const TPMT_TK_HASHCHECK& validation);

  // Marks the loaded object as gone, after a TPM Reset or Restart flushed it.
  void forget_loaded_object() { handle_.forget(); }

  // TPM2_Quote over `pcrs` (SHA-256 bank, each below 24) with ECDSA SHA-256 and
  // `qualifying_data` as extraData (at most 64 bytes), authorized with an HMAC session.
  // Does not compare PCR values with anything; the attestor does.
  TpmResult<SignedQuote> quote(TpmContext& tpm, std::span<const std::uint8_t> qualifying_data,
                               std::span<const std::uint32_t> pcrs);

 private:
  AttestationKey() = default;

  ScopedHandle handle_;
  SecretBytes auth_;
  AkPublicInfo info_;
};

// Recreates the EK (template L-1) as a transient object; the caller's handle flushes it.
TpmResult<ScopedHandle> create_endorsement_key(TpmContext& tpm, std::vector<std::uint8_t>* name = nullptr);

}  // namespace licensing::tpm
