#include "tpm/attestation_key.hpp"

#include <tss2/tss2_mu.h>

#include <algorithm>
#include <system_error>

#include "common/logging.hpp"
#include "tpm/tpm_structures.hpp"

namespace licensing::tpm {
namespace {

constexpr std::size_t auth_size = 32;
constexpr std::size_t max_blob_bytes = 4096;

struct KeyFiles {
  std::filesystem::path public_blob;
  std::filesystem::path private_blob;
  std::filesystem::path auth;
};

KeyFiles key_files(const std::filesystem::path& directory) {
  return {directory / "ak.pub", directory / "ak.priv", directory / "ak.auth"};
}

template <typename T, auto Marshal>
std::vector<std::uint8_t> marshal_blob(const T& value) {
  std::vector<std::uint8_t> buffer(sizeof(T) + 64);
  std::size_t offset = 0;
  if (Marshal(&value, buffer.data(), buffer.size(), &offset) != TSS2_RC_SUCCESS) return {};
  buffer.resize(offset);
  return buffer;
}

template <typename T, auto Unmarshal>
TpmResult<T> read_blob(const std::filesystem::path& path) {
  auto contents = crypto::ossl::read_public_file(path, max_blob_bytes);
  if (!contents) return fail(TpmError::state_invalid, "cannot read " + path.string() + ": " + contents.error().detail);

  T value{};
  std::size_t offset = 0;
  const auto* bytes = reinterpret_cast<const std::uint8_t*>(contents->data());
  if (Unmarshal(bytes, contents->size(), &offset, &value) != TSS2_RC_SUCCESS || offset != contents->size()) {
    return fail(TpmError::state_invalid, path.string() + " does not unmarshal");
  }
  return value;
}

TpmResult<void> write_file(const std::filesystem::path& path, std::span<const std::uint8_t> bytes) {
  auto written = crypto::ossl::write_file_atomically(path, bytes, 0600);
  if (!written) return fail(TpmError::io, written.error().detail);
  return {};
}

TpmResult<AkPublicInfo> describe(const TPMT_PUBLIC& area) {
  AkPublicInfo info;
  info.public_area = marshal_public(area);
  info.name = object_name(info.public_area);

  auto key = p256_public_key(area);
  if (!key) return fail(TpmError::state_invalid, "the AK public area: " + key.error().detail);
  auto pem = crypto::ossl::public_key_to_pem(key->get());
  if (!pem) return fail(TpmError::state_invalid, "the AK public key: " + pem.error().detail);
  info.public_key_pem = *pem;
  info.fingerprint = public_key_fingerprint(key->get());
  return info;
}

// Checks that a loaded public area is an AK made from our template, so a swapped ak.pub
// cannot turn an unrestricted key into the "attestation key".
TpmResult<void> check_template(const TPMT_PUBLIC& area) {
  const TPMT_PUBLIC expected = attestation_key_template();
  if (area.type != expected.type || area.nameAlg != expected.nameAlg ||
      area.objectAttributes != expected.objectAttributes ||
      area.parameters.eccDetail.curveID != expected.parameters.eccDetail.curveID ||
      area.parameters.eccDetail.scheme.scheme != expected.parameters.eccDetail.scheme.scheme ||
      area.parameters.eccDetail.scheme.details.ecdsa.hashAlg !=
          expected.parameters.eccDetail.scheme.details.ecdsa.hashAlg) {
    return fail(TpmError::state_invalid, "ak.pub is not a restricted ECC P-256 ECDSA SHA-256 signing key");
  }
  return {};
}

TpmResult<ScopedHandle> load_under_ek(TpmContext& tpm, const TPM2B_PUBLIC& public_blob,
                                      const TPM2B_PRIVATE& private_blob) {
  auto ek = create_endorsement_key(tpm);
  if (!ek) return std::unexpected(ek.error());
  auto session = tpm.start_endorsement_policy_session();
  if (!session) return std::unexpected(session.error());

  ESYS_TR handle = ESYS_TR_NONE;
  const TSS2_RC rc = Esys_Load(tpm.esys(), ek->get(), session->get(), ESYS_TR_NONE, ESYS_TR_NONE, &private_blob,
                               &public_blob, &handle);
  if (rc != TSS2_RC_SUCCESS) return std::unexpected(error_from_rc(rc, "TPM2_Load(AK)"));
  return ScopedHandle(tpm.esys(), handle, ScopedHandle::Release::flush);
}

}  // namespace

TpmResult<ScopedHandle> create_endorsement_key(TpmContext& tpm, std::vector<std::uint8_t>* name) {
  TPM2B_SENSITIVE_CREATE sensitive{};
  TPM2B_PUBLIC in_public{};
  in_public.publicArea = endorsement_key_template();
  TPM2B_DATA outside_info{};
  TPML_PCR_SELECTION creation_pcrs{};

  ESYS_TR handle = ESYS_TR_NONE;
  TPM2B_PUBLIC* raw_public = nullptr;
  TPM2B_CREATION_DATA* raw_creation_data = nullptr;
  TPM2B_DIGEST* raw_creation_hash = nullptr;
  TPMT_TK_CREATION* raw_ticket = nullptr;
  const TSS2_RC rc =
      Esys_CreatePrimary(tpm.esys(), ESYS_TR_RH_ENDORSEMENT, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &sensitive,
                         &in_public, &outside_info, &creation_pcrs, &handle, &raw_public, &raw_creation_data,
                         &raw_creation_hash, &raw_ticket);
  EsysPtr<TPM2B_PUBLIC> out_public(raw_public);
  EsysPtr<TPM2B_CREATION_DATA> creation_data(raw_creation_data);
  EsysPtr<TPM2B_DIGEST> creation_hash(raw_creation_hash);
  EsysPtr<TPMT_TK_CREATION> ticket(raw_ticket);
  if (rc != TSS2_RC_SUCCESS) return std::unexpected(error_from_rc(rc, "TPM2_CreatePrimary(EK)"));

  ScopedHandle ek(tpm.esys(), handle, ScopedHandle::Release::flush);
  if (name != nullptr) *name = object_name(marshal_public(out_public->publicArea));
  return ek;
}

TpmResult<AttestationKey> AttestationKey::load_or_create(TpmContext& tpm, const std::filesystem::path& directory) {
  if (auto made = crypto::ossl::ensure_private_directory(directory); !made) {
    return fail(TpmError::io, made.error().detail);
  }
  const KeyFiles files = key_files(directory);
  AttestationKey key;

  // ak.auth is written last, so without it no usable AK exists and a new one is made.
  if (!std::filesystem::exists(files.auth)) {
    key.auth_ = SecretBytes(auth_size);
    if (!crypto::ossl::random_bytes(std::span(key.auth_.data(), key.auth_.size()))) {
      return fail(TpmError::command_failed, "the random number generator failed");
    }

    auto ek = create_endorsement_key(tpm);
    if (!ek) return std::unexpected(ek.error());
    auto session = tpm.start_endorsement_policy_session();
    if (!session) return std::unexpected(session.error());

    TPM2B_SENSITIVE_CREATE sensitive{};
    sensitive.sensitive.userAuth.size = auth_size;
    std::copy_n(key.auth_.data(), auth_size, sensitive.sensitive.userAuth.buffer);
    TPM2B_PUBLIC in_public{};
    in_public.publicArea = attestation_key_template();
    TPM2B_DATA outside_info{};
    TPML_PCR_SELECTION creation_pcrs{};

    TPM2B_PRIVATE* raw_private = nullptr;
    TPM2B_PUBLIC* raw_public = nullptr;
    TPM2B_CREATION_DATA* raw_creation_data = nullptr;
    TPM2B_DIGEST* raw_creation_hash = nullptr;
    TPMT_TK_CREATION* raw_ticket = nullptr;
    const TSS2_RC rc = Esys_Create(tpm.esys(), ek->get(), session->get(), ESYS_TR_NONE, ESYS_TR_NONE, &sensitive,
                                   &in_public, &outside_info, &creation_pcrs, &raw_private, &raw_public,
                                   &raw_creation_data, &raw_creation_hash, &raw_ticket);
    OPENSSL_cleanse(&sensitive, sizeof(sensitive));
    EsysPtr<TPM2B_PRIVATE> out_private(raw_private);
    EsysPtr<TPM2B_PUBLIC> out_public(raw_public);
    EsysPtr<TPM2B_CREATION_DATA> creation_data(raw_creation_data);
    EsysPtr<TPM2B_DIGEST> creation_hash(raw_creation_hash);
    EsysPtr<TPMT_TK_CREATION> ticket(raw_ticket);
    if (rc != TSS2_RC_SUCCESS) return std::unexpected(error_from_rc(rc, "TPM2_Create(AK)"));

    const auto public_bytes = marshal_blob<TPM2B_PUBLIC, Tss2_MU_TPM2B_PUBLIC_Marshal>(*out_public);
    const auto private_bytes = marshal_blob<TPM2B_PRIVATE, Tss2_MU_TPM2B_PRIVATE_Marshal>(*out_private);
    if (auto written = write_file(files.public_blob, public_bytes); !written) return std::unexpected(written.error());
    if (auto written = write_file(files.private_blob, private_bytes); !written) return std::unexpected(written.error());
    if (auto written = write_file(files.auth, key.auth_.view()); !written) return std::unexpected(written.error());
    logging::info("attestation_key_created", {{"directory", directory.string()}});
  } else {
    auto auth = crypto::ossl::read_private_file(files.auth, 64);
    if (!auth) return fail(TpmError::state_invalid, "cannot read " + files.auth.string() + ": " + auth.error().detail);
    if (auth->size() != auth_size) return fail(TpmError::state_invalid, files.auth.string() + " is not 32 bytes");
    key.auth_ = std::move(*auth);
  }

  auto public_blob = read_blob<TPM2B_PUBLIC, Tss2_MU_TPM2B_PUBLIC_Unmarshal>(files.public_blob);
  if (!public_blob) return std::unexpected(public_blob.error());
  auto private_blob = read_blob<TPM2B_PRIVATE, Tss2_MU_TPM2B_PRIVATE_Unmarshal>(files.private_blob);
  if (!private_blob) return std::unexpected(private_blob.error());
  if (auto checked = check_template(public_blob->publicArea); !checked) return std::unexpected(checked.error());

  auto handle = load_under_ek(tpm, *public_blob, *private_blob);
  if (!handle) return std::unexpected(handle.error());
  key.handle_ = std::move(*handle);

  TPM2B_AUTH auth_value{};
  auth_value.size = auth_size;
  std::copy_n(key.auth_.data(), auth_size, auth_value.buffer);
  const TSS2_RC rc = Esys_TR_SetAuth(tpm.esys(), key.handle_.get(), &auth_value);
  OPENSSL_cleanse(&auth_value, sizeof(auth_value));
  if (rc != TSS2_RC_SUCCESS) return std::unexpected(error_from_rc(rc, "Esys_TR_SetAuth(AK)"));

  auto info = describe(public_blob->publicArea);
  if (!info) return std::unexpected(info.error());
  key.info_ = std::move(*info);
  return key;
}

TpmResult<SignedQuote> AttestationKey::quote(TpmContext& tpm, std::span<const std::uint8_t> qualifying_data,
                                             std::span<const std::uint32_t> pcrs) {
  if (qualifying_data.size() > 64) return fail(TpmError::invalid_argument, "qualifying data is above 64 bytes");

  TPM2B_DATA qualifying{};
  qualifying.size = static_cast<std::uint16_t>(qualifying_data.size());
  std::copy(qualifying_data.begin(), qualifying_data.end(), qualifying.buffer);

  TPMT_SIG_SCHEME scheme{};
  scheme.scheme = TPM2_ALG_ECDSA;
  scheme.details.ecdsa.hashAlg = TPM2_ALG_SHA256;

  TPML_PCR_SELECTION selection{};
  selection.count = 1;
  selection.pcrSelections[0].hash = TPM2_ALG_SHA256;
  selection.pcrSelections[0].sizeofSelect = 3;
  for (const std::uint32_t index : pcrs) {
    if (index >= 24) return fail(TpmError::invalid_argument, "PCR index " + std::to_string(index) + " is above 23");
    selection.pcrSelections[0].pcrSelect[index / 8] |= static_cast<std::uint8_t>(1U << (index % 8));
  }

  auto session = tpm.start_hmac_session();
  if (!session) return std::unexpected(session.error());

  TPM2B_ATTEST* raw_attest = nullptr;
  TPMT_SIGNATURE* raw_signature = nullptr;
  const TSS2_RC rc = Esys_Quote(tpm.esys(), handle_.get(), session->get(), ESYS_TR_NONE, ESYS_TR_NONE, &qualifying,
                                &scheme, &selection, &raw_attest, &raw_signature);
  EsysPtr<TPM2B_ATTEST> attest(raw_attest);
  EsysPtr<TPMT_SIGNATURE> signature(raw_signature);
  if (rc != TSS2_RC_SUCCESS) return std::unexpected(error_from_rc(rc, "TPM2_Quote"));

  SignedQuote quote;
  quote.attest.assign(attest->attestationData, attest->attestationData + attest->size);
  quote.signature = marshal_signature(*signature);
  return quote;
}

TpmResult<std::vector<std::uint8_t>> AttestationKey::sign_digest(TpmContext& tpm, const TPM2B_DIGEST& digest,
                                                                  const TPMT_TK_HASHCHECK& validation) {
  TPMT_SIG_SCHEME scheme{};
  scheme.scheme = TPM2_ALG_ECDSA;
  scheme.details.ecdsa.hashAlg = TPM2_ALG_SHA256;

  auto session = tpm.start_hmac_session();
  if (!session) return std::unexpected(session.error());

  TPMT_SIGNATURE* raw_signature = nullptr;
  const TSS2_RC rc = Esys_Sign(tpm.esys(), handle_.get(), session->get(), ESYS_TR_NONE, ESYS_TR_NONE, &digest, &scheme,
                               &validation, &raw_signature);
  EsysPtr<TPMT_SIGNATURE> signature(raw_signature);
  if (rc != TSS2_RC_SUCCESS) return std::unexpected(error_from_rc(rc, "TPM2_Sign"));
  return marshal_signature(*signature);
}

}  // namespace licensing::tpm
