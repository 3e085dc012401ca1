// Tests against a real swtpm: TPM access, the attestation key, the measured event log and
// quotes, cross-checked with tpm2_checkquote (tpm2-tools 5.4).
#include <gtest/gtest.h>
#include <tss2/tss2_esys.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>

#include "common/secret.hpp"
#include "tpm/quote_verifier.hpp"
#include "tpm/tpm_structures.hpp"
#include "tpm_fixture.hpp"

namespace licensing::tpm::testing {
namespace {

const std::string image = std::string(64, 'a');

QuotePolicy policy_for(const Attestor& attestor) {
  QuotePolicy policy;
  policy.trusted_ak_fingerprints = {attestor.attestation_key().fingerprint};
  return policy;
}

Result<VerifiedQuote, QuoteError> verify(const Attestor& attestor, const Quote& quote, const std::string& enclave_id,
                                         const std::vector<std::uint8_t>& nonce,
                                         const std::vector<std::uint8_t>& certificate, const QuotePolicy& policy) {
  const auto evidence = attestation_evidence(enclave_id, nonce, quote, attestor.attestation_key(),
                                             attestor.ek_certificate_pem(), {});
  return verify_attestation(evidence, {.enclave_id = enclave_id, .nonce = nonce, .certificate_der = certificate},
                            policy);
}

void write_bytes(const std::filesystem::path& path, std::span<const std::uint8_t> bytes) {
  std::ofstream file(path, std::ios::binary | std::ios::trunc);
  file.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

using AttestorTest = TpmTest;

TEST_F(AttestorTest, QuoteOfMeasuredCertificateVerifies) {
  auto attestor = open_attestor();
  const auto certificate = certificate_bytes("enclave-a");
  auto event = attestor->measure("enclave-a", "user-1", sha256_hex(certificate), image);
  ASSERT_TRUE(event.has_value()) << event.error().detail;
  EXPECT_EQ(event->seq, 1U);
  ASSERT_TRUE(attestor->measure("enclave-b", "user-2", sha256_hex(certificate_bytes("enclave-b")), image));

  const auto nonce = nonce_bytes(0x11);
  auto quote = attestor->quote(nonce, certificate);
  ASSERT_TRUE(quote.has_value()) << quote.error().detail;
  ASSERT_EQ(quote->pcrs, std::vector<std::uint32_t>{23});
  EXPECT_EQ(quote->pcr_values.front(), replay_events(attestor->events()));

  auto verified = verify(*attestor, *quote, "enclave-a", nonce, certificate, policy_for(*attestor));
  ASSERT_TRUE(verified.has_value()) << verified.error().detail;
  EXPECT_EQ(verified->event, *event);
  EXPECT_EQ(verified->ak_fingerprint, attestor->attestation_key().fingerprint);
}

TEST_F(AttestorTest, AttestationKeyIsRestrictedP256UnderEk) {
  auto attestor = open_attestor();
  const auto& key = attestor->attestation_key();
  const auto area = unmarshal_public(key.public_area);
  ASSERT_TRUE(area.has_value());
  EXPECT_EQ(area->type, TPM2_ALG_ECC);
  EXPECT_EQ(area->parameters.eccDetail.curveID, TPM2_ECC_NIST_P256);
  EXPECT_EQ(area->objectAttributes & attestation_key_required_attributes, attestation_key_required_attributes);
  EXPECT_EQ(key.name, object_name(key.public_area));
  EXPECT_EQ(key.fingerprint.rfind("sha256:", 0), 0U);
  EXPECT_EQ(key.fingerprint.size(), 7U + 64U);
  EXPECT_NE(key.public_key_pem.find("BEGIN PUBLIC KEY"), std::string::npos);

  // The EK recreated from template L-1 is the one swtpm_setup persisted and certified.
  std::vector<std::uint8_t> ek_name;
  auto ek = create_endorsement_key(attestor->tpm(), &ek_name);
  ASSERT_TRUE(ek.has_value()) << ek.error().detail;
  ESYS_TR persistent = ESYS_TR_NONE;
  ASSERT_EQ(Esys_TR_FromTPMPublic(attestor->tpm().esys(), 0x81010001, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
                                  &persistent),
            TSS2_RC_SUCCESS);
  ScopedHandle persistent_handle(attestor->tpm().esys(), persistent, ScopedHandle::Release::close);
  TPM2B_NAME* raw_name = nullptr;
  ASSERT_EQ(Esys_TR_GetName(attestor->tpm().esys(), persistent, &raw_name), TSS2_RC_SUCCESS);
  EsysPtr<TPM2B_NAME> persistent_name(raw_name);
  EXPECT_EQ(ek_name, std::vector<std::uint8_t>(persistent_name->name, persistent_name->name + persistent_name->size));

  ASSERT_TRUE(attestor->ek_certificate_pem().has_value());
  EXPECT_NE(attestor->ek_certificate_pem()->find("BEGIN CERTIFICATE"), std::string::npos);
}

TEST_F(AttestorTest, Tpm2CheckquoteAcceptsQuote) {
  auto attestor = open_attestor({0});
  const auto certificate = certificate_bytes("enclave-a");
  ASSERT_TRUE(attestor->measure("enclave-a", "user-1", sha256_hex(certificate), image));
  const auto nonce = nonce_bytes(0x22);
  auto quote = attestor->quote(nonce, certificate);
  ASSERT_TRUE(quote.has_value()) << quote.error().detail;
  ASSERT_EQ(quote->pcrs, (std::vector<std::uint32_t>{0, 23}));

  const auto files = directory_ / "checkquote";
  std::filesystem::create_directories(files);
  {
    std::ofstream pem(files / "ak.pem");
    pem << attestor->attestation_key().public_key_pem;
  }
  write_bytes(files / "attest.bin", quote->attest);
  write_bytes(files / "signature.bin", quote->signature);
  std::vector<std::uint8_t> values;
  for (const auto& value : quote->pcr_values) values.insert(values.end(), value.begin(), value.end());
  write_bytes(files / "pcrs.bin", values);
  const std::string qualifying = crypto::ossl::to_hex(attestation_qualifying_data(nonce, certificate));

  const std::string base = "tpm2_checkquote -u " + (files / "ak.pem").string() + " -m " +
                            (files / "attest.bin").string() + " -s " + (files / "signature.bin").string() + " -f " +
                            (files / "pcrs.bin").string() + " -l sha256:0,23 -g sha256 -q ";
  const std::string log = " > " + (files / "out.txt").string() + " 2>&1";
  EXPECT_EQ(std::system((base + qualifying + log).c_str()), 0);

  // A negative control: the same tool rejects other qualifying data.
  const std::string other = crypto::ossl::to_hex(attestation_qualifying_data(nonce_bytes(0x23), certificate));
  EXPECT_NE(std::system((base + other + log).c_str()), 0);
}

TEST_F(AttestorTest, ForeignExtensionRefusesQuote) {
  auto attestor = open_attestor();
  const auto certificate = certificate_bytes("enclave-a");
  ASSERT_TRUE(attestor->measure("enclave-a", "user-1", sha256_hex(certificate), image));
  ASSERT_TRUE(attestor->tpm().extend_pcr(23, crypto::ossl::sha256(std::string_view("someone else"))));

  auto quote = attestor->quote(nonce_bytes(0x33), certificate);
  ASSERT_FALSE(quote.has_value());
  EXPECT_EQ(quote.error().code, TpmError::pcr_mismatch);
}

TEST_F(AttestorTest, ForeignExtensionRefusesOpen) {
  {
    auto attestor = open_attestor();
    ASSERT_TRUE(attestor->measure("enclave-a", "user-1", sha256_hex(certificate_bytes("a")), image));
    ASSERT_TRUE(attestor->tpm().extend_pcr(23, crypto::ossl::sha256(std::string_view("someone else"))));
  }
  auto reopened = Attestor::open(open_context(), {.state_directory = attestor_state_, .event_pcr = 23, .boot_pcrs = {}});
  ASSERT_FALSE(reopened.has_value());
  EXPECT_EQ(reopened.error().code, TpmError::pcr_mismatch);
}

TEST_F(AttestorTest, TpmResetReextendsLogAndQuotesVerify) {
  const auto certificate = certificate_bytes("enclave-a");
  std::string fingerprint;
  {
    auto attestor = open_attestor();
    ASSERT_TRUE(attestor->measure("enclave-a", "user-1", sha256_hex(certificate), image));
    ASSERT_TRUE(attestor->measure("enclave-b", "user-2", sha256_hex(certificate_bytes("b")), image));
    fingerprint = attestor->attestation_key().fingerprint;
  }
  restart_swtpm();

  {
    auto context = open_context();
    const std::uint32_t pcr[] = {23};
    auto values = context.read_pcrs(pcr);
    ASSERT_TRUE(values.has_value());
    EXPECT_EQ(values->front(), Digest{});
  }

  // The AK is reloaded from its blobs: same fingerprint, and the log is extended again.
  auto attestor = open_attestor();
  EXPECT_EQ(attestor->attestation_key().fingerprint, fingerprint);
  const auto nonce = nonce_bytes(0x44);
  auto quote = attestor->quote(nonce, certificate);
  ASSERT_TRUE(quote.has_value()) << quote.error().detail;
  EXPECT_EQ(quote->pcr_values.front(), replay_events(attestor->events()));
  QuotePolicy policy;
  policy.trusted_ak_fingerprints = {fingerprint};
  auto verified = verify(*attestor, *quote, "enclave-a", nonce, certificate, policy);
  EXPECT_TRUE(verified.has_value()) << verified.error().detail;
}

TEST_F(AttestorTest, ResetWhileOpenIsRepairedAtQuote) {
  auto attestor = open_attestor();
  const auto certificate = certificate_bytes("enclave-a");
  ASSERT_TRUE(attestor->measure("enclave-a", "user-1", sha256_hex(certificate), image));

  // A power cycle and TPM2_Startup(CLEAR) under the open attestor: a TPM Reset, which
  // zeroes the PCR and flushes the loaded AK.
  ASSERT_TRUE(swtpm_->power_cycle());
  ASSERT_EQ(Esys_Startup(attestor->tpm().esys(), TPM2_SU_CLEAR), TSS2_RC_SUCCESS);
  const auto nonce = nonce_bytes(0x45);
  auto quote = attestor->quote(nonce, certificate);
  ASSERT_TRUE(quote.has_value()) << quote.error().detail;
  EXPECT_TRUE(verify(*attestor, *quote, "enclave-a", nonce, certificate, policy_for(*attestor)).has_value());
}

TEST_F(AttestorTest, CrashBeforeExtensionIsRepairedAtOpen) {
  const auto certificate = certificate_bytes("enclave-a");
  {
    auto attestor = open_attestor();
    ASSERT_TRUE(attestor->measure("enclave-a", "user-1", sha256_hex(certificate), image));
  }
  // The state a crash between the log's fsync and TPM2_PCR_Extend leaves: one more event.
  {
    auto log = EventLogFile::open(attestor_state_ / "events.jsonl");
    ASSERT_TRUE(log.has_value());
    ASSERT_TRUE(log->append({.enclave_id = "enclave-b", .owner = "user-2",
                             .certificate_sha256 = sha256_hex(certificate_bytes("b")), .image_sha256 = image}));
  }
  auto attestor = open_attestor();
  const auto nonce = nonce_bytes(0x46);
  auto quote = attestor->quote(nonce, certificate);
  ASSERT_TRUE(quote.has_value()) << quote.error().detail;
  EXPECT_EQ(attestor->events().size(), 2U);
  EXPECT_TRUE(verify(*attestor, *quote, "enclave-a", nonce, certificate, policy_for(*attestor)).has_value());
}

TEST_F(AttestorTest, TornLogLineIsCutOff) {
  {
    auto attestor = open_attestor();
    ASSERT_TRUE(attestor->measure("enclave-a", "user-1", sha256_hex(certificate_bytes("a")), image));
  }
  {
    std::ofstream log(attestor_state_ / "events.jsonl", std::ios::app);
    log << "{\"seq\":2,\"encl";
  }
  auto attestor = open_attestor();
  EXPECT_EQ(attestor->events().size(), 1U);
}

TEST_F(AttestorTest, PersistedKeyQuotesAfterRestart) {
  const auto certificate = certificate_bytes("enclave-a");
  std::string fingerprint;
  std::vector<std::uint8_t> public_area;
  {
    auto attestor = open_attestor();
    ASSERT_TRUE(attestor->measure("enclave-a", "user-1", sha256_hex(certificate), image));
    fingerprint = attestor->attestation_key().fingerprint;
    public_area = attestor->attestation_key().public_area;
  }
  restart_swtpm();
  auto attestor = open_attestor();
  EXPECT_EQ(attestor->attestation_key().fingerprint, fingerprint);
  EXPECT_EQ(attestor->attestation_key().public_area, public_area);
  const auto nonce = nonce_bytes(0x55);
  auto quote = attestor->quote(nonce, certificate);
  ASSERT_TRUE(quote.has_value()) << quote.error().detail;
  QuotePolicy policy;
  policy.trusted_ak_fingerprints = {fingerprint};
  EXPECT_TRUE(verify(*attestor, *quote, "enclave-a", nonce, certificate, policy).has_value());
}

TEST_F(AttestorTest, AuthFileIsPrivate) {
  auto attestor = open_attestor();
  const auto status = std::filesystem::status(attestor_state_ / "ak.auth");
  EXPECT_EQ(status.permissions() & std::filesystem::perms::all, std::filesystem::perms::owner_read |
                                                                    std::filesystem::perms::owner_write);
  EXPECT_EQ(std::filesystem::file_size(attestor_state_ / "ak.auth"), 32U);
}

TEST_F(AttestorTest, WrongAkAuthFailsWithAuthFailed) {
  const auto certificate = certificate_bytes("enclave-a");
  {
    auto attestor = open_attestor();
    ASSERT_TRUE(attestor->measure("enclave-a", "user-1", sha256_hex(certificate), image));
  }
  const std::vector<std::uint8_t> wrong(32, 0x5A);
  ASSERT_TRUE(crypto::ossl::write_file_atomically(attestor_state_ / "ak.auth", wrong, 0600));

  auto attestor = open_attestor();
  auto quote = attestor->quote(nonce_bytes(0x66), certificate);
  ASSERT_FALSE(quote.has_value());
  EXPECT_EQ(quote.error().code, TpmError::auth_failed) << quote.error().detail;
}

TEST_F(AttestorTest, DictionaryAttackLockoutIsReported) {
  const auto certificate = certificate_bytes("enclave-a");
  {
    auto attestor = open_attestor();
    ASSERT_TRUE(attestor->measure("enclave-a", "user-1", sha256_hex(certificate), image));
    // One failure is allowed before lockout, and recovery takes an hour.
    ASSERT_EQ(Esys_DictionaryAttackParameters(attestor->tpm().esys(), ESYS_TR_RH_LOCKOUT, ESYS_TR_PASSWORD,
                                              ESYS_TR_NONE, ESYS_TR_NONE, 1, 3600, 3600),
              TSS2_RC_SUCCESS);
  }
  const std::vector<std::uint8_t> wrong(32, 0x5A);
  ASSERT_TRUE(crypto::ossl::write_file_atomically(attestor_state_ / "ak.auth", wrong, 0600));

  auto attestor = open_attestor();
  auto first = attestor->quote(nonce_bytes(0x67), certificate);
  ASSERT_FALSE(first.has_value());
  EXPECT_EQ(first.error().code, TpmError::auth_failed) << first.error().detail;
  auto second = attestor->quote(nonce_bytes(0x68), certificate);
  ASSERT_FALSE(second.has_value());
  EXPECT_EQ(second.error().code, TpmError::lockout) << second.error().detail;
}

TEST_F(AttestorTest, StoppedTpmIsUnreachable) {
  const std::string tcti = swtpm_->tcti_config();
  swtpm_.reset();
  auto context = TpmContext::open(tcti);
  ASSERT_FALSE(context.has_value());
  EXPECT_EQ(context.error().code, TpmError::unreachable) << context.error().detail;
}

TEST_F(AttestorTest, TpmStoppedMidSessionIsUnreachable) {
  auto attestor = open_attestor();
  const auto certificate = certificate_bytes("enclave-a");
  ASSERT_TRUE(attestor->measure("enclave-a", "user-1", sha256_hex(certificate), image));
  swtpm_.reset();
  auto quote = attestor->quote(nonce_bytes(0x77), certificate);
  ASSERT_FALSE(quote.has_value());
  EXPECT_EQ(quote.error().code, TpmError::unreachable) << quote.error().detail;
}

TEST_F(AttestorTest, UnmeasuredCertificateIsNotQuoted) {
  auto attestor = open_attestor();
  auto quote = attestor->quote(nonce_bytes(0x78), certificate_bytes("never measured"));
  ASSERT_FALSE(quote.has_value());
  EXPECT_EQ(quote.error().code, TpmError::invalid_argument);
}

TEST_F(AttestorTest, ShortNonceIsRejected) {
  auto attestor = open_attestor();
  const auto certificate = certificate_bytes("enclave-a");
  ASSERT_TRUE(attestor->measure("enclave-a", "user-1", sha256_hex(certificate), image));
  auto quote = attestor->quote(nonce_bytes(0x79, 15), certificate);
  ASSERT_FALSE(quote.has_value());
  EXPECT_EQ(quote.error().code, TpmError::invalid_argument);
}

TEST_F(AttestorTest, EventWithSeparatorIsRejected) {
  auto attestor = open_attestor();
  auto event = attestor->measure("enclave|a", "user-1", sha256_hex(certificate_bytes("a")), image);
  ASSERT_FALSE(event.has_value());
  EXPECT_EQ(event.error().code, TpmError::invalid_argument);
  EXPECT_TRUE(attestor->events().empty());
}

}  // namespace
}  // namespace licensing::tpm::testing
