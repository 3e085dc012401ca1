// The quote verifier against tampered evidence. A real quote from swtpm is the baseline;
// cases that need a validly signed but wrong TPMS_ATTEST are re-signed by a software
// P-256 key presented and pinned as the AK, so each check is reached on its own.
#include <gtest/gtest.h>
#include <openssl/ecdsa.h>
#include <tss2/tss2_mu.h>

#include "common/base64url.hpp"
#include "tpm/quote_verifier.hpp"
#include "tpm/tpm_structures.hpp"
#include "tpm_fixture.hpp"

namespace licensing::tpm::testing {
namespace {

using Bytes = std::vector<std::uint8_t>;

const std::string image_a = std::string(64, 'a');
const std::string image_b = std::string(64, 'b');

// A P-256 key in software with a TPMT_PUBLIC claiming to be an AK.
struct SoftwareSigner {
  crypto::ossl::Pkey key = crypto::ossl::generate_p256_key();
  TPMT_PUBLIC area{};
  std::string fingerprint;

  explicit SoftwareSigner(TPMA_OBJECT attributes = attestation_key_template().objectAttributes) {
    area = attestation_key_template();
    area.objectAttributes = attributes;
    auto coordinates = crypto::ossl::p256_coordinates(key.get());
    area.unique.ecc.x.size = 32;
    area.unique.ecc.y.size = 32;
    std::copy(coordinates->first.begin(), coordinates->first.end(), area.unique.ecc.x.buffer);
    std::copy(coordinates->second.begin(), coordinates->second.end(), area.unique.ecc.y.buffer);
    fingerprint = public_key_fingerprint(key.get());
  }

  Bytes sign(const Bytes& message, TPM2_ALG_ID hash = TPM2_ALG_SHA256) const {
    crypto::ossl::MdContext context(EVP_MD_CTX_new());
    EVP_DigestSignInit(context.get(), nullptr, EVP_sha256(), nullptr, key.get());
    std::size_t length = 0;
    EVP_DigestSign(context.get(), nullptr, &length, message.data(), message.size());
    Bytes der(length);
    EVP_DigestSign(context.get(), der.data(), &length, message.data(), message.size());
    der.resize(length);

    const unsigned char* cursor = der.data();
    crypto::ossl::EcdsaSig parsed(d2i_ECDSA_SIG(nullptr, &cursor, static_cast<long>(der.size())));
    TPMT_SIGNATURE signature{};
    signature.sigAlg = TPM2_ALG_ECDSA;
    signature.signature.ecdsa.hash = hash;
    signature.signature.ecdsa.signatureR.size =
        static_cast<UINT16>(BN_bn2bin(ECDSA_SIG_get0_r(parsed.get()), signature.signature.ecdsa.signatureR.buffer));
    signature.signature.ecdsa.signatureS.size =
        static_cast<UINT16>(BN_bn2bin(ECDSA_SIG_get0_s(parsed.get()), signature.signature.ecdsa.signatureS.buffer));
    return marshal_signature(signature);
  }

  // Replaces the evidence's AK with this key and signs `attest` with it.
  void present(nlohmann::json& evidence, const TPMS_ATTEST& attest) const {
    const Bytes area_bytes = marshal_public(area);
    auto pem = crypto::ossl::public_key_to_pem(key.get());
    evidence["attestation_key"] = {{"public_key_pem", *pem},
                                   {"public_area", base64url::encode(area_bytes)},
                                   {"name", crypto::ossl::to_hex(object_name(area_bytes))},
                                   {"fingerprint", fingerprint}};
    TPMS_ATTEST signed_attest = attest;
    const Bytes name = object_name(area_bytes);
    signed_attest.qualifiedSigner.size = static_cast<UINT16>(name.size());
    std::copy(name.begin(), name.end(), signed_attest.qualifiedSigner.name);
    const Bytes attest_bytes = marshal_attest(signed_attest);
    evidence["quote"]["attest"] = base64url::encode(attest_bytes);
    evidence["quote"]["signature"] = base64url::encode(sign(attest_bytes));
  }
};

Bytes decode(const nlohmann::json& value) { return *base64url::decode(value.get<std::string>()); }

class VerifierTest : public TpmTest {
 protected:
  void SetUp() override {
    TpmTest::SetUp();
    if (HasFatalFailure()) return;
    attestor_ = open_attestor();
    ASSERT_TRUE(attestor_->measure("enclave-a", "user-1", sha256_hex(certificate_a_), image_a));
    ASSERT_TRUE(attestor_->measure("enclave-b", "user-2", sha256_hex(certificate_b_), image_b));
    ASSERT_TRUE(attestor_->measure("enclave-c", "user-3", sha256_hex(certificate_bytes("enclave-c")), image_a));
    evidence_ = evidence_for(nonce_, certificate_a_);
    policy_.trusted_ak_fingerprints = {attestor_->attestation_key().fingerprint};
  }

  void TearDown() override {
    // The attestor flushes its TPM objects, so it goes before swtpm stops.
    attestor_.reset();
    TpmTest::TearDown();
  }

  nlohmann::json evidence_for(const Bytes& nonce, const Bytes& certificate) {
    auto quote = attestor_->quote(nonce, certificate);
    EXPECT_TRUE(quote.has_value()) << quote.error().detail;
    return attestation_evidence("enclave-a", nonce, *quote, attestor_->attestation_key(),
                                attestor_->ek_certificate_pem(), {});
  }

  Result<VerifiedQuote, QuoteError> verify(const nlohmann::json& evidence) const {
    return verify_attestation(evidence, {.enclave_id = "enclave-a", .nonce = nonce_, .certificate_der = certificate_a_},
                              policy_);
  }

  TPMS_ATTEST attest() const { return *unmarshal_attest(decode(evidence_["quote"]["attest"])); }

  // Presents `signer` as the AK, pins it, and signs `modified` with it.
  void resign(const SoftwareSigner& signer, const TPMS_ATTEST& modified) {
    signer.present(evidence_, modified);
    policy_.trusted_ak_fingerprints = {signer.fingerprint};
  }

  void expect_error(QuoteError code) const {
    auto result = verify(evidence_);
    ASSERT_FALSE(result.has_value()) << "expected " << to_string(code);
    EXPECT_EQ(result.error().code, code) << result.error().detail;
    EXPECT_EQ(result.error().detail.rfind(std::string(to_string(code)) + ": ", 0), 0U) << result.error().detail;
  }

  std::unique_ptr<Attestor> attestor_;
  const Bytes certificate_a_ = certificate_bytes("enclave-a");
  const Bytes certificate_b_ = certificate_bytes("enclave-b");
  const Bytes nonce_ = nonce_bytes(0xA5);
  nlohmann::json evidence_;
  QuotePolicy policy_;
};

TEST_F(VerifierTest, UntamperedEvidenceVerifies) {
  auto result = verify(evidence_);
  ASSERT_TRUE(result.has_value()) << result.error().detail;
  EXPECT_EQ(result->event.enclave_id, "enclave-a");
  EXPECT_EQ(result->event.seq, 1U);
}

TEST_F(VerifierTest, SoftwareResignedBaselineVerifies) {
  // The software signer is only a valid tool if an unmodified attest passes with it.
  resign(SoftwareSigner(), attest());
  auto result = verify(evidence_);
  EXPECT_TRUE(result.has_value()) << result.error().detail;
}

TEST_F(VerifierTest, FlippedAttestBitIsSignatureInvalid) {
  const Bytes original = decode(evidence_["quote"]["attest"]);
  for (std::size_t position = 0; position < original.size(); position += 7) {
    Bytes changed = original;
    changed[position] ^= static_cast<std::uint8_t>(1U << (position % 8));
    evidence_["quote"]["attest"] = base64url::encode(changed);
    SCOPED_TRACE("attest byte " + std::to_string(position));
    expect_error(QuoteError::signature_invalid);
  }
}

TEST_F(VerifierTest, FlippedSignatureBitIsSignatureInvalid) {
  const Bytes original = decode(evidence_["quote"]["signature"]);
  // TPMT_SIGNATURE: sigAlg (2), hash (2), r size (2), r, s size (2), s; flip inside r and s.
  const std::size_t r_size = (original[4] << 8) | original[5];
  std::vector<std::size_t> positions;
  for (std::size_t i = 0; i < r_size; i += 5) positions.push_back(6 + i);
  for (std::size_t i = 0; i + 8 + r_size < original.size(); i += 5) positions.push_back(8 + r_size + i);
  ASSERT_GT(positions.size(), 10U);
  for (const std::size_t position : positions) {
    Bytes changed = original;
    changed[position] ^= 0x10;
    evidence_["quote"]["signature"] = base64url::encode(changed);
    SCOPED_TRACE("signature byte " + std::to_string(position));
    expect_error(QuoteError::signature_invalid);
  }
}

TEST_F(VerifierTest, TruncatedSignatureIsMalformed) {
  Bytes changed = decode(evidence_["quote"]["signature"]);
  changed.pop_back();
  evidence_["quote"]["signature"] = base64url::encode(changed);
  expect_error(QuoteError::signature_malformed);
}

TEST_F(VerifierTest, WrongMagicSignedByRealAkIsMagicInvalid) {
  // A restricted key signs data that does not start with TPM_GENERATED_VALUE when
  // TPM2_Hash vouches for it, so a forged attest with another magic gets a real signature.
  TPMS_ATTEST forged = attest();
  forged.magic = 0x01020304;
  const Bytes forged_bytes = marshal_attest(forged);
  TPM2B_MAX_BUFFER data{};
  data.size = static_cast<UINT16>(forged_bytes.size());
  std::copy(forged_bytes.begin(), forged_bytes.end(), data.buffer);
  auto& tpm = attestor_->tpm();
  TPM2B_DIGEST* raw_digest = nullptr;
  TPMT_TK_HASHCHECK* raw_ticket = nullptr;
  ASSERT_EQ(Esys_Hash(tpm.esys(), ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &data, TPM2_ALG_SHA256, TPM2_RH_OWNER,
                      &raw_digest, &raw_ticket),
            TSS2_RC_SUCCESS);
  EsysPtr<TPM2B_DIGEST> digest(raw_digest);
  EsysPtr<TPMT_TK_HASHCHECK> ticket(raw_ticket);

  // Sign with the real AK: load it through a second AttestationKey on the same state.
  auto key = AttestationKey::load_or_create(tpm, attestor_state_);
  ASSERT_TRUE(key.has_value()) << key.error().detail;
  auto signed_forgery = key->sign_digest(tpm, *digest, *ticket);
  ASSERT_TRUE(signed_forgery.has_value()) << signed_forgery.error().detail;

  evidence_["quote"]["attest"] = base64url::encode(forged_bytes);
  evidence_["quote"]["signature"] = base64url::encode(*signed_forgery);
  expect_error(QuoteError::magic_invalid);
}

TEST_F(VerifierTest, WrongTypeIsTypeInvalid) {
  TPMS_ATTEST modified = attest();
  modified.type = TPM2_ST_ATTEST_TIME;
  modified.attested.time = TPMS_TIME_ATTEST_INFO{};
  resign(SoftwareSigner(), modified);
  expect_error(QuoteError::type_invalid);
}

TEST_F(VerifierTest, OtherNonceIsExtraDataMismatch) {
  const Bytes other_nonce = nonce_bytes(0x5A);
  evidence_ = evidence_for(other_nonce, certificate_a_);
  evidence_["nonce"] = base64url::encode(nonce_);  // echo the client's nonce, as a replay would
  expect_error(QuoteError::extra_data_mismatch);
}

TEST_F(VerifierTest, EchoedOtherNonceIsNonceMismatch) {
  evidence_["nonce"] = base64url::encode(nonce_bytes(0x5B));
  expect_error(QuoteError::nonce_mismatch);
}

TEST_F(VerifierTest, ReplayedOldQuoteIsExtraDataMismatch) {
  const nlohmann::json old = evidence_;
  const Bytes fresh_nonce = nonce_bytes(0x77, 48);
  auto result = verify_attestation(old, {.enclave_id = "enclave-a", .nonce = fresh_nonce, .certificate_der = certificate_a_},
                                   policy_);
  ASSERT_FALSE(result.has_value());
  // The echoed nonce is the old one, so the first check to fail is the echo.
  EXPECT_EQ(result.error().code, QuoteError::nonce_mismatch);

  nlohmann::json replayed = old;
  replayed["nonce"] = base64url::encode(fresh_nonce);
  result = verify_attestation(replayed, {.enclave_id = "enclave-a", .nonce = fresh_nonce, .certificate_der = certificate_a_},
                              policy_);
  ASSERT_FALSE(result.has_value());
  EXPECT_EQ(result.error().code, QuoteError::extra_data_mismatch) << result.error().detail;
}

TEST_F(VerifierTest, ExtraBytesInExtraDataAreExtraDataMismatch) {
  TPMS_ATTEST modified = attest();
  modified.extraData.buffer[modified.extraData.size] = 0x00;
  modified.extraData.size += 1;
  resign(SoftwareSigner(), modified);
  expect_error(QuoteError::extra_data_mismatch);
}

TEST_F(VerifierTest, OtherPcrSelectionIsSelectionMismatch) {
  TPMS_ATTEST modified = attest();
  modified.attested.quote.pcrSelect.pcrSelections[0].pcrSelect[0] |= 0x01;  // adds PCR 0
  resign(SoftwareSigner(), modified);
  expect_error(QuoteError::pcr_selection_mismatch);

  modified = attest();
  modified.attested.quote.pcrSelect.pcrSelections[0].hash = TPM2_ALG_SHA1;
  resign(SoftwareSigner(), modified);
  expect_error(QuoteError::pcr_selection_mismatch);
}

TEST_F(VerifierTest, PolicyWithBootPcrRejectsEventPcrOnlyQuote) {
  policy_.boot_pcrs[0] = std::string(64, '0');
  expect_error(QuoteError::pcr_selection_mismatch);
}

TEST_F(VerifierTest, SignatureHashMismatchIsSchemeMismatch) {
  Bytes signature = decode(evidence_["quote"]["signature"]);
  signature[2] = 0x00;  // hash: SHA-256 (0x000B) becomes SHA-384 (0x000C)
  signature[3] = 0x0C;
  evidence_["quote"]["signature"] = base64url::encode(signature);
  expect_error(QuoteError::signature_scheme_mismatch);
}

TEST_F(VerifierTest, SignatureAlgorithmMismatchIsSchemeMismatch) {
  Bytes signature = decode(evidence_["quote"]["signature"]);
  signature[0] = 0x00;  // sigAlg: ECDSA (0x0018) becomes ECSCHNORR (0x001C), same layout
  signature[1] = 0x1C;
  evidence_["quote"]["signature"] = base64url::encode(signature);
  expect_error(QuoteError::signature_scheme_mismatch);
}

TEST_F(VerifierTest, UnpinnedAkIsUntrusted) {
  policy_.trusted_ak_fingerprints = {"sha256:" + std::string(64, '0')};
  expect_error(QuoteError::ak_untrusted);
}

TEST_F(VerifierTest, NonRestrictedKeyIsNotAnAttestationKey) {
  SoftwareSigner unrestricted(TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT | TPMA_OBJECT_SENSITIVEDATAORIGIN |
                              TPMA_OBJECT_USERWITHAUTH | TPMA_OBJECT_SIGN_ENCRYPT);
  resign(unrestricted, attest());
  expect_error(QuoteError::ak_not_restricted_signing);
}

TEST_F(VerifierTest, PublicKeyPemOfOtherKeyIsKeyMismatch) {
  SoftwareSigner other;
  evidence_["attestation_key"]["public_key_pem"] = *crypto::ossl::public_key_to_pem(other.key.get());
  expect_error(QuoteError::ak_key_mismatch);
}

TEST_F(VerifierTest, QualifiedSignerOfOtherFormIsNameMismatch) {
  SoftwareSigner signer;
  resign(signer, attest());
  TPMS_ATTEST modified = *unmarshal_attest(decode(evidence_["quote"]["attest"]));
  modified.qualifiedSigner.size = 22;  // a SHA-1 name: 0x0004 and 20 bytes
  modified.qualifiedSigner.name[0] = 0x00;
  modified.qualifiedSigner.name[1] = 0x04;
  const Bytes attest_bytes = marshal_attest(modified);
  evidence_["quote"]["attest"] = base64url::encode(attest_bytes);
  evidence_["quote"]["signature"] = base64url::encode(signer.sign(attest_bytes));
  expect_error(QuoteError::ak_name_mismatch);
}

TEST_F(VerifierTest, OtherEnclavesCertificateIsRejected) {
  // The quote binds enclave B's certificate; the client asked about enclave A with it.
  evidence_ = evidence_for(nonce_, certificate_b_);
  auto result = verify_attestation(evidence_, {.enclave_id = "enclave-a", .nonce = nonce_, .certificate_der = certificate_b_},
                                   policy_);
  ASSERT_FALSE(result.has_value());
  EXPECT_EQ(result.error().code, QuoteError::certificate_event_missing) << result.error().detail;

  // The quote binds enclave A's certificate; B's certificate is substituted at the client.
  evidence_ = evidence_for(nonce_, certificate_a_);
  result = verify_attestation(evidence_, {.enclave_id = "enclave-a", .nonce = nonce_, .certificate_der = certificate_b_},
                              policy_);
  ASSERT_FALSE(result.has_value());
  EXPECT_EQ(result.error().code, QuoteError::extra_data_mismatch) << result.error().detail;
}

TEST_F(VerifierTest, RemovedMiddleEventIsLogMalformed) {
  evidence_["event_log"].erase(1);
  expect_error(QuoteError::event_log_malformed);
}

TEST_F(VerifierTest, RemovedLastEventIsReplayMismatch) {
  evidence_["event_log"].erase(2);
  expect_error(QuoteError::event_log_replay_mismatch);
}

TEST_F(VerifierTest, ReorderedEventsAreLogMalformed) {
  std::swap(evidence_["event_log"][0], evidence_["event_log"][1]);
  expect_error(QuoteError::event_log_malformed);
}

TEST_F(VerifierTest, ReorderedAndRenumberedEventsAreReplayMismatch) {
  // Renumbered and with digests recomputed, the log parses but no longer replays.
  auto first = event_from_json(evidence_["event_log"][0]);
  auto second = event_from_json(evidence_["event_log"][1]);
  std::swap(first->seq, second->seq);
  evidence_["event_log"][0] = event_to_json(*second);
  evidence_["event_log"][1] = event_to_json(*first);
  expect_error(QuoteError::event_log_replay_mismatch);
}

TEST_F(VerifierTest, AlteredEventFieldIsLogMalformed) {
  evidence_["event_log"][0]["owner"] = "user-9";
  expect_error(QuoteError::event_log_malformed);
}

TEST_F(VerifierTest, AlteredEventWithNewDigestIsReplayMismatch) {
  auto event = event_from_json(evidence_["event_log"][0]);
  event->image_sha256 = image_b;
  evidence_["event_log"][0] = event_to_json(*event);
  expect_error(QuoteError::event_log_replay_mismatch);
}

TEST_F(VerifierTest, PcrValueNotMatchingDigestIsDigestMismatch) {
  evidence_["quote"]["pcrs"]["sha256"]["23"] = std::string(64, 'f');
  expect_error(QuoteError::pcr_digest_mismatch);
}

TEST_F(VerifierTest, MissingPcrValueIsValuesMalformed) {
  evidence_["quote"]["pcrs"]["sha256"].erase("23");
  evidence_["quote"]["pcrs"]["sha256"]["22"] = std::string(64, '0');
  expect_error(QuoteError::pcr_values_malformed);
}

TEST_F(VerifierTest, DisallowedImageIsRejected) {
  policy_.allowed_image_sha256 = {image_b};
  expect_error(QuoteError::image_not_allowed);
  policy_.allowed_image_sha256 = {image_b, image_a};
  EXPECT_TRUE(verify(evidence_).has_value());
}

TEST_F(VerifierTest, BootPcrPolicyIsEnforced) {
  auto attestor_with_boot = std::move(attestor_);
  attestor_with_boot.reset();
  attestor_ = open_attestor({0});
  evidence_ = evidence_for(nonce_, certificate_a_);
  const std::string pcr0 = evidence_["quote"]["pcrs"]["sha256"]["0"].get<std::string>();

  policy_.boot_pcrs[0] = pcr0;
  EXPECT_TRUE(verify(evidence_).has_value());
  policy_.boot_pcrs[0] = std::string(64, '1');
  expect_error(QuoteError::boot_pcr_mismatch);
}

TEST_F(VerifierTest, ClockReferenceBoundsAge) {
  // An AK in the endorsement hierarchy sees clockInfo without obfuscation.
  const TPMS_CLOCK_INFO clock = attest().clockInfo;
  ASSERT_EQ(clock.safe, TPM2_YES);
  policy_.clock_reference = ClockReference{.clock_ms = clock.clock / 2, .reset_count = clock.resetCount,
                                           .restart_count = clock.restartCount,
                                           .max_age = std::chrono::milliseconds(clock.clock)};
  auto fresh = verify(evidence_);
  EXPECT_TRUE(fresh.has_value()) << fresh.error().detail;

  policy_.clock_reference->max_age = std::chrono::milliseconds(clock.clock / 2 - 1);
  expect_error(QuoteError::quote_too_old);

  policy_.clock_reference->max_age = std::chrono::milliseconds(clock.clock);
  policy_.clock_reference->reset_count = clock.resetCount + 1;
  expect_error(QuoteError::quote_too_old);

  policy_.clock_reference->reset_count = clock.resetCount;
  policy_.clock_reference->clock_ms = clock.clock + 1;  // a reference newer than the quote
  expect_error(QuoteError::quote_too_old);
}

TEST_F(VerifierTest, WrongEnclaveIdIsMismatch) {
  evidence_["enclave_id"] = "enclave-b";
  expect_error(QuoteError::enclave_id_mismatch);
}

TEST_F(VerifierTest, MissingFieldIsEvidenceMalformed) {
  evidence_["quote"].erase("attest");
  expect_error(QuoteError::evidence_malformed);
}

}  // namespace
}  // namespace licensing::tpm::testing
