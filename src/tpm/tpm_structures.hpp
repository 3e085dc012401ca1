// Pure helpers over TPM 2.0 Part 2 structures: strict marshalling through Tss2_MU, object
// names, the attestation key's and EK's templates, and conversion of TPM keys and
// signatures to OpenSSL. No TPM is needed, so the client-side verifier uses these too.
#pragma once

#include <tss2/tss2_tpm2_types.h>

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "common/error.hpp"
#include "crypto/openssl.hpp"

namespace licensing::tpm {

// The object attributes an attestation key must have (TPM 2.0 Part 2, 8.3 TPMA_OBJECT):
// a restricted signing key whose private part the TPM generated and never exports.
inline constexpr TPMA_OBJECT attestation_key_required_attributes =
    TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT | TPMA_OBJECT_SENSITIVEDATAORIGIN | TPMA_OBJECT_RESTRICTED |
    TPMA_OBJECT_SIGN_ENCRYPT;

// The AK: ECC P-256, ECDSA with SHA-256, nameAlg SHA-256, required attributes plus
// userWithAuth, so its authValue authorizes TPM2_Quote.
TPMT_PUBLIC attestation_key_template();

// The TCG EK Credential Profile 2.0 template L-1 (RSA 2048, AES-128-CFB, policy
// TPM2_PolicySecret(endorsement)), which swtpm_setup also uses for the EK it certifies.
TPMT_PUBLIC endorsement_key_template();

// --- strict marshalling: unmarshalling fails unless the input is consumed exactly ---

std::vector<std::uint8_t> marshal_public(const TPMT_PUBLIC& area);
std::optional<TPMT_PUBLIC> unmarshal_public(std::span<const std::uint8_t> bytes);
std::vector<std::uint8_t> marshal_attest(const TPMS_ATTEST& attest);
std::optional<TPMS_ATTEST> unmarshal_attest(std::span<const std::uint8_t> bytes);
std::vector<std::uint8_t> marshal_signature(const TPMT_SIGNATURE& signature);
std::optional<TPMT_SIGNATURE> unmarshal_signature(std::span<const std::uint8_t> bytes);

// The TPM name of an object with SHA-256 nameAlg: the algorithm id 0x000B, big-endian,
// followed by SHA-256 of the marshalled TPMT_PUBLIC (TPM 2.0 Part 1, 16 Names).
std::vector<std::uint8_t> object_name(std::span<const std::uint8_t> marshalled_public);

// The public key of an ECC P-256 TPMT_PUBLIC. Rejects other types and curves, and points
// that are not on the curve.
Result<crypto::ossl::Pkey, crypto::ossl::CryptoError> p256_public_key(const TPMT_PUBLIC& area);

// "sha256:" + lowercase hex of SHA-256 over the DER SubjectPublicKeyInfo.
std::string public_key_fingerprint(EVP_PKEY* key);
std::optional<std::vector<std::uint8_t>> public_key_der(EVP_PKEY* key);

// DER ECDSA-Sig-Value of a TPMS_SIGNATURE_ECDSA, for EVP_DigestVerify. Rejects r or s
// longer than 32 bytes.
std::optional<std::vector<std::uint8_t>> ecdsa_signature_der(const TPMS_SIGNATURE_ECDSA& signature);

// The SHA-256 of the concatenated PCR values, as TPM2_Quote computes pcrDigest.
crypto::ossl::Sha256Digest pcr_digest(std::span<const crypto::ossl::Sha256Digest> values);

}  // namespace licensing::tpm
