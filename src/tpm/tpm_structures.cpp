#include "tpm/tpm_structures.hpp"

#include <openssl/ecdsa.h>
#include <tss2/tss2_mu.h>

#include <algorithm>

namespace licensing::tpm {
namespace {

// TCG EK Credential Profile 2.0, B.3.3: PolicySecret(TPM_RH_ENDORSEMENT) with SHA-256.
constexpr std::uint8_t ek_policy[32] = {0x83, 0x71, 0x97, 0x67, 0x44, 0x84, 0xB3, 0xF8, 0x1A, 0x90, 0xCC,
                                        0x8D, 0x46, 0xA5, 0xD7, 0x24, 0xFD, 0x52, 0xD7, 0x6E, 0x06, 0x52,
                                        0x0B, 0x64, 0xF2, 0xA1, 0xDA, 0x1B, 0x33, 0x14, 0x69, 0xAA};

template <typename T, auto Marshal>
std::vector<std::uint8_t> marshal(const T& value) {
  std::vector<std::uint8_t> buffer(sizeof(T) + 64);
  std::size_t offset = 0;
  if (Marshal(&value, buffer.data(), buffer.size(), &offset) != TSS2_RC_SUCCESS) return {};
  buffer.resize(offset);
  return buffer;
}

template <typename T, auto Unmarshal>
std::optional<T> unmarshal(std::span<const std::uint8_t> bytes) {
  T value{};
  std::size_t offset = 0;
  if (Unmarshal(bytes.data(), bytes.size(), &offset, &value) != TSS2_RC_SUCCESS) return std::nullopt;
  if (offset != bytes.size()) return std::nullopt;
  return value;
}

}  // namespace

TPMT_PUBLIC attestation_key_template() {
  TPMT_PUBLIC area{};
  area.type = TPM2_ALG_ECC;
  area.nameAlg = TPM2_ALG_SHA256;
  area.objectAttributes = attestation_key_required_attributes | TPMA_OBJECT_USERWITHAUTH;
  area.parameters.eccDetail.symmetric.algorithm = TPM2_ALG_NULL;
  area.parameters.eccDetail.scheme.scheme = TPM2_ALG_ECDSA;
  area.parameters.eccDetail.scheme.details.ecdsa.hashAlg = TPM2_ALG_SHA256;
  area.parameters.eccDetail.curveID = TPM2_ECC_NIST_P256;
  area.parameters.eccDetail.kdf.scheme = TPM2_ALG_NULL;
  return area;
}

TPMT_PUBLIC endorsement_key_template() {
  TPMT_PUBLIC area{};
  area.type = TPM2_ALG_RSA;
  area.nameAlg = TPM2_ALG_SHA256;
  area.objectAttributes = TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT | TPMA_OBJECT_SENSITIVEDATAORIGIN |
                          TPMA_OBJECT_ADMINWITHPOLICY | TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_DECRYPT;
  area.authPolicy.size = sizeof(ek_policy);
  std::copy(std::begin(ek_policy), std::end(ek_policy), area.authPolicy.buffer);
  area.parameters.rsaDetail.symmetric.algorithm = TPM2_ALG_AES;
  area.parameters.rsaDetail.symmetric.keyBits.aes = 128;
  area.parameters.rsaDetail.symmetric.mode.aes = TPM2_ALG_CFB;
  area.parameters.rsaDetail.scheme.scheme = TPM2_ALG_NULL;
  area.parameters.rsaDetail.keyBits = 2048;
  area.parameters.rsaDetail.exponent = 0;
  // The template's unique field is 256 zero bytes.
  area.unique.rsa.size = 256;
  return area;
}

std::vector<std::uint8_t> marshal_public(const TPMT_PUBLIC& area) {
  return marshal<TPMT_PUBLIC, Tss2_MU_TPMT_PUBLIC_Marshal>(area);
}

std::optional<TPMT_PUBLIC> unmarshal_public(std::span<const std::uint8_t> bytes) {
  return unmarshal<TPMT_PUBLIC, Tss2_MU_TPMT_PUBLIC_Unmarshal>(bytes);
}

std::vector<std::uint8_t> marshal_attest(const TPMS_ATTEST& attest) {
  return marshal<TPMS_ATTEST, Tss2_MU_TPMS_ATTEST_Marshal>(attest);
}

std::optional<TPMS_ATTEST> unmarshal_attest(std::span<const std::uint8_t> bytes) {
  return unmarshal<TPMS_ATTEST, Tss2_MU_TPMS_ATTEST_Unmarshal>(bytes);
}

std::vector<std::uint8_t> marshal_signature(const TPMT_SIGNATURE& signature) {
  return marshal<TPMT_SIGNATURE, Tss2_MU_TPMT_SIGNATURE_Marshal>(signature);
}

std::optional<TPMT_SIGNATURE> unmarshal_signature(std::span<const std::uint8_t> bytes) {
  return unmarshal<TPMT_SIGNATURE, Tss2_MU_TPMT_SIGNATURE_Unmarshal>(bytes);
}

std::vector<std::uint8_t> object_name(std::span<const std::uint8_t> marshalled_public) {
  const auto digest = crypto::ossl::sha256(marshalled_public);
  std::vector<std::uint8_t> name = {static_cast<std::uint8_t>(TPM2_ALG_SHA256 >> 8),
                                    static_cast<std::uint8_t>(TPM2_ALG_SHA256 & 0xFF)};
  name.insert(name.end(), digest.begin(), digest.end());
  return name;
}

Result<crypto::ossl::Pkey, crypto::ossl::CryptoError> p256_public_key(const TPMT_PUBLIC& area) {
  using crypto::ossl::CryptoError;
  if (area.type != TPM2_ALG_ECC) return fail(CryptoError::invalid, "the public area is not an ECC key");
  if (area.parameters.eccDetail.curveID != TPM2_ECC_NIST_P256) {
    return fail(CryptoError::invalid, "the ECC key is not on curve NIST P-256");
  }

  const auto& point = area.unique.ecc;
  if (point.x.size != 32 || point.y.size != 32) {
    return fail(CryptoError::invalid, "the ECC point coordinates are not 32 bytes each");
  }
  return crypto::ossl::p256_public_key(std::span(point.x.buffer, 32), std::span(point.y.buffer, 32));
}

std::optional<std::vector<std::uint8_t>> public_key_der(EVP_PKEY* key) {
  unsigned char* der = nullptr;
  const int length = i2d_PUBKEY(key, &der);
  if (length <= 0) {
    crypto::ossl::drain_errors();
    return std::nullopt;
  }
  std::vector<std::uint8_t> bytes(der, der + length);
  OPENSSL_free(der);
  return bytes;
}

std::string public_key_fingerprint(EVP_PKEY* key) {
  const auto der = public_key_der(key);
  if (!der) return {};
  return "sha256:" + crypto::ossl::to_hex(crypto::ossl::sha256(*der));
}

std::optional<std::vector<std::uint8_t>> ecdsa_signature_der(const TPMS_SIGNATURE_ECDSA& signature) {
  if (signature.signatureR.size == 0 || signature.signatureR.size > 32) return std::nullopt;
  if (signature.signatureS.size == 0 || signature.signatureS.size > 32) return std::nullopt;

  crypto::ossl::BigNum r(BN_bin2bn(signature.signatureR.buffer, signature.signatureR.size, nullptr));
  crypto::ossl::BigNum s(BN_bin2bn(signature.signatureS.buffer, signature.signatureS.size, nullptr));
  crypto::ossl::EcdsaSig value(ECDSA_SIG_new());
  if (!r || !s || !value) return std::nullopt;
  if (ECDSA_SIG_set0(value.get(), r.get(), s.get()) != 1) return std::nullopt;
  // ECDSA_SIG_set0 took ownership of both numbers.
  r.release();
  s.release();

  unsigned char* der = nullptr;
  const int length = i2d_ECDSA_SIG(value.get(), &der);
  if (length <= 0) return std::nullopt;
  std::vector<std::uint8_t> bytes(der, der + length);
  OPENSSL_free(der);
  return bytes;
}

crypto::ossl::Sha256Digest pcr_digest(std::span<const crypto::ossl::Sha256Digest> values) {
  std::vector<std::uint8_t> concatenated;
  concatenated.reserve(values.size() * 32);
  for (const auto& value : values) concatenated.insert(concatenated.end(), value.begin(), value.end());
  return crypto::ossl::sha256(concatenated);
}

}  // namespace licensing::tpm
