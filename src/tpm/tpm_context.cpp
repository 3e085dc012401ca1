#include "tpm/tpm_context.hpp"

#include <openssl/pem.h>
#include <tss2/tss2_rc.h>
#include <tss2/tss2_tctildr.h>

#include <algorithm>
#include <string>
#include <utility>

#include "common/logging.hpp"

namespace licensing::tpm {
namespace {

// The TPM-layer code without the handle, session or parameter number that a format-one
// response code carries (TPM 2.0 Part 2, 6.6.3 TPM_RC values).
TSS2_RC tpm_code(TSS2_RC rc) {
  if ((rc & TPM2_RC_FMT1) != 0) return rc & (TPM2_RC_FMT1 | 0x3FU);
  return rc & 0xFFFU;
}

constexpr std::uint32_t ek_certificate_nv_index = 0x01C00002;
// Bytes read per TPM2_NV_Read, below every TPM's MAX_NV_BUFFER_SIZE in practice.
constexpr std::uint16_t nv_chunk_size = 512;
// ESAPI's wait for one response, in milliseconds; RSA key generation on a slow TPM fits.
constexpr std::int32_t response_timeout_ms = 60'000;

TPML_PCR_SELECTION sha256_selection(std::span<const std::uint32_t> indices) {
  TPML_PCR_SELECTION selection{};
  selection.count = 1;
  selection.pcrSelections[0].hash = TPM2_ALG_SHA256;
  selection.pcrSelections[0].sizeofSelect = 3;
  for (const std::uint32_t index : indices) {
    selection.pcrSelections[0].pcrSelect[index / 8] |= static_cast<std::uint8_t>(1U << (index % 8));
  }
  return selection;
}

}  // namespace

std::string_view to_string(TpmError code) {
  switch (code) {
    case TpmError::unreachable: return "unreachable";
    case TpmError::lockout: return "lockout";
    case TpmError::auth_failed: return "auth_failed";
    case TpmError::failure: return "failure";
    case TpmError::busy: return "busy";
    case TpmError::command_failed: return "command_failed";
    case TpmError::invalid_argument: return "invalid_argument";
    case TpmError::pcr_mismatch: return "pcr_mismatch";
    case TpmError::state_invalid: return "state_invalid";
    case TpmError::io: return "io";
    case TpmError::process_failed: return "process_failed";
  }
  return "unknown";
}

Error<TpmError> error_from_rc(TSS2_RC rc, std::string_view command) {
  std::string detail = std::string(command) + ": " + Tss2_RC_Decode(rc);
  const TSS2_RC layer = rc & TSS2_RC_LAYER_MASK;
  const TSS2_RC base = rc & ~TSS2_RC_LAYER_MASK;

  TpmError code = TpmError::command_failed;
  if (layer == TSS2_TPM_RC_LAYER || layer == TSS2_RESMGR_TPM_RC_LAYER) {
    switch (tpm_code(rc)) {
      case TPM2_RC_LOCKOUT: code = TpmError::lockout; break;
      case TPM2_RC_AUTH_FAIL:
      case TPM2_RC_BAD_AUTH: code = TpmError::auth_failed; break;
      case TPM2_RC_FAILURE: code = TpmError::failure; break;
      case TPM2_RC_RETRY:
      case TPM2_RC_TESTING:
      case TPM2_RC_YIELDED: code = TpmError::busy; break;
      default: break;
    }
  } else if (base == TSS2_BASE_RC_IO_ERROR || base == TSS2_BASE_RC_NO_CONNECTION) {
    code = TpmError::unreachable;
  } else if (base == TSS2_BASE_RC_RSP_AUTH_FAILED) {
    // ESAPI rejected the response HMAC, which a wrong authValue also causes.
    code = TpmError::auth_failed;
  }
  return Error<TpmError>{code, std::move(detail)};
}

ScopedHandle::ScopedHandle(ScopedHandle&& other) noexcept
    : esys_(std::exchange(other.esys_, nullptr)),
      handle_(std::exchange(other.handle_, ESYS_TR_NONE)),
      release_(other.release_) {}

ScopedHandle& ScopedHandle::operator=(ScopedHandle&& other) noexcept {
  if (this != &other) {
    reset();
    esys_ = std::exchange(other.esys_, nullptr);
    handle_ = std::exchange(other.handle_, ESYS_TR_NONE);
    release_ = other.release_;
  }
  return *this;
}

void ScopedHandle::reset() {
  if (esys_ == nullptr || handle_ == ESYS_TR_NONE) return;

  TSS2_RC rc = TSS2_RC_SUCCESS;
  if (release_ == Release::flush) {
    rc = Esys_FlushContext(esys_, handle_);
  } else {
    rc = Esys_TR_Close(esys_, &handle_);
  }
  if (rc != TSS2_RC_SUCCESS) {
    logging::warn("tpm_handle_release_failed", {{"detail", error_from_rc(rc, "release handle").detail}});
  }
  handle_ = ESYS_TR_NONE;
  esys_ = nullptr;
}

void ScopedHandle::forget() {
  if (esys_ != nullptr && handle_ != ESYS_TR_NONE) Esys_TR_Close(esys_, &handle_);
  handle_ = ESYS_TR_NONE;
  esys_ = nullptr;
}

void TpmContext::TctiDeleter::operator()(TSS2_TCTI_CONTEXT* tcti) const { Tss2_TctiLdr_Finalize(&tcti); }

void TpmContext::EsysDeleter::operator()(ESYS_CONTEXT* esys) const { Esys_Finalize(&esys); }

TpmContext::~TpmContext() = default;

TpmResult<TpmContext> TpmContext::open(const std::string& tcti_config) {
  TpmContext context;

  TSS2_TCTI_CONTEXT* tcti = nullptr;
  TSS2_RC rc = Tss2_TctiLdr_Initialize(tcti_config.c_str(), &tcti);
  if (rc != TSS2_RC_SUCCESS) {
    auto error = error_from_rc(rc, "Tss2_TctiLdr_Initialize(" + tcti_config + ")");
    // The loader reports a refused connection as a generic failure of the TCTI it loaded.
    error.code = TpmError::unreachable;
    return std::unexpected(std::move(error));
  }
  context.tcti_.reset(tcti);

  ESYS_CONTEXT* esys = nullptr;
  rc = Esys_Initialize(&esys, context.tcti_.get(), nullptr);
  if (rc != TSS2_RC_SUCCESS) return std::unexpected(error_from_rc(rc, "Esys_Initialize"));
  context.esys_.reset(esys);
  Esys_SetTimeout(esys, response_timeout_ms);

  TPMI_YES_NO more = TPM2_NO;
  TPMS_CAPABILITY_DATA* raw_capability = nullptr;
  rc = Esys_GetCapability(esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, TPM2_CAP_TPM_PROPERTIES,
                          TPM2_PT_MANUFACTURER, 1, &more, &raw_capability);
  EsysPtr<TPMS_CAPABILITY_DATA> capability(raw_capability);
  if (rc != TSS2_RC_SUCCESS) return std::unexpected(error_from_rc(rc, "TPM2_GetCapability"));
  return context;
}

TpmResult<ScopedHandle> TpmContext::start_hmac_session() {
  const TPMT_SYM_DEF symmetric{.algorithm = TPM2_ALG_NULL, .keyBits = {}, .mode = {}};
  ESYS_TR session = ESYS_TR_NONE;
  const TSS2_RC rc = Esys_StartAuthSession(esys(), ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
                                           ESYS_TR_NONE, nullptr, TPM2_SE_HMAC, &symmetric, TPM2_ALG_SHA256, &session);
  if (rc != TSS2_RC_SUCCESS) return std::unexpected(error_from_rc(rc, "TPM2_StartAuthSession(HMAC)"));
  return ScopedHandle(esys(), session, ScopedHandle::Release::flush);
}

TpmResult<ScopedHandle> TpmContext::start_endorsement_policy_session() {
  const TPMT_SYM_DEF symmetric{.algorithm = TPM2_ALG_NULL, .keyBits = {}, .mode = {}};
  ESYS_TR raw_session = ESYS_TR_NONE;
  TSS2_RC rc = Esys_StartAuthSession(esys(), ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
                                     nullptr, TPM2_SE_POLICY, &symmetric, TPM2_ALG_SHA256, &raw_session);
  if (rc != TSS2_RC_SUCCESS) return std::unexpected(error_from_rc(rc, "TPM2_StartAuthSession(policy)"));
  ScopedHandle session(esys(), raw_session, ScopedHandle::Release::flush);

  TPM2B_TIMEOUT* raw_timeout = nullptr;
  TPMT_TK_AUTH* raw_ticket = nullptr;
  rc = Esys_PolicySecret(esys(), ESYS_TR_RH_ENDORSEMENT, session.get(), ESYS_TR_PASSWORD, ESYS_TR_NONE,
                         ESYS_TR_NONE, nullptr, nullptr, nullptr, 0, &raw_timeout, &raw_ticket);
  EsysPtr<TPM2B_TIMEOUT> timeout(raw_timeout);
  EsysPtr<TPMT_TK_AUTH> ticket(raw_ticket);
  if (rc != TSS2_RC_SUCCESS) return std::unexpected(error_from_rc(rc, "TPM2_PolicySecret(endorsement)"));
  return session;
}

TpmResult<ClockCounters> TpmContext::read_clock() {
  TPMS_TIME_INFO* raw_time = nullptr;
  const TSS2_RC rc = Esys_ReadClock(esys(), ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &raw_time);
  EsysPtr<TPMS_TIME_INFO> time(raw_time);
  if (rc != TSS2_RC_SUCCESS) return std::unexpected(error_from_rc(rc, "TPM2_ReadClock"));
  return ClockCounters{.clock_ms = time->clockInfo.clock,
                       .reset_count = time->clockInfo.resetCount,
                       .restart_count = time->clockInfo.restartCount,
                       .safe = time->clockInfo.safe == TPM2_YES};
}

TpmResult<std::vector<Digest>> TpmContext::read_pcrs(std::span<const std::uint32_t> indices) {
  std::vector<Digest> values;
  values.reserve(indices.size());
  for (const std::uint32_t index : indices) {
    if (index >= 24) return fail(TpmError::invalid_argument, "PCR index " + std::to_string(index) + " is above 23");

    // One PCR per TPM2_PCR_Read, so the order of the output is the order of `indices`.
    const std::uint32_t one[] = {index};
    const TPML_PCR_SELECTION selection = sha256_selection(one);
    std::uint32_t update_counter = 0;
    TPML_PCR_SELECTION* raw_selection_out = nullptr;
    TPML_DIGEST* raw_digests = nullptr;
    const TSS2_RC rc = Esys_PCR_Read(esys(), ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &selection, &update_counter,
                                     &raw_selection_out, &raw_digests);
    EsysPtr<TPML_PCR_SELECTION> selection_out(raw_selection_out);
    EsysPtr<TPML_DIGEST> digests(raw_digests);
    if (rc != TSS2_RC_SUCCESS) return std::unexpected(error_from_rc(rc, "TPM2_PCR_Read"));
    if (digests->count != 1 || digests->digests[0].size != 32) {
      return fail(TpmError::command_failed,
                  "TPM2_PCR_Read returned no SHA-256 value for PCR " + std::to_string(index) +
                      "; the SHA-256 bank may be inactive");
    }

    Digest value{};
    std::copy_n(digests->digests[0].buffer, 32, value.begin());
    values.push_back(value);
  }
  return values;
}

TpmResult<void> TpmContext::extend_pcr(std::uint32_t index, const Digest& digest) {
  if (index >= 24) return fail(TpmError::invalid_argument, "PCR index " + std::to_string(index) + " is above 23");

  TPML_DIGEST_VALUES values{};
  values.count = 1;
  values.digests[0].hashAlg = TPM2_ALG_SHA256;
  std::copy(digest.begin(), digest.end(), values.digests[0].digest.sha256);
  const TSS2_RC rc =
      Esys_PCR_Extend(esys(), ESYS_TR_PCR0 + index, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &values);
  if (rc != TSS2_RC_SUCCESS) return std::unexpected(error_from_rc(rc, "TPM2_PCR_Extend"));
  return {};
}

TpmResult<void> TpmContext::reset_pcr(std::uint32_t index) {
  if (index >= 24) return fail(TpmError::invalid_argument, "PCR index " + std::to_string(index) + " is above 23");

  const TSS2_RC rc = Esys_PCR_Reset(esys(), ESYS_TR_PCR0 + index, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE);
  if (rc != TSS2_RC_SUCCESS) return std::unexpected(error_from_rc(rc, "TPM2_PCR_Reset"));
  return {};
}

TpmResult<std::string> TpmContext::read_ek_certificate_pem() {
  ESYS_TR raw_index = ESYS_TR_NONE;
  TSS2_RC rc = Esys_TR_FromTPMPublic(esys(), ek_certificate_nv_index, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
                                     &raw_index);
  if (rc != TSS2_RC_SUCCESS) return std::unexpected(error_from_rc(rc, "EK certificate NV index 0x01C00002"));
  ScopedHandle index(esys(), raw_index, ScopedHandle::Release::close);

  TPM2B_NV_PUBLIC* raw_public = nullptr;
  TPM2B_NAME* raw_name = nullptr;
  rc = Esys_NV_ReadPublic(esys(), index.get(), ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &raw_public, &raw_name);
  EsysPtr<TPM2B_NV_PUBLIC> nv_public(raw_public);
  EsysPtr<TPM2B_NAME> nv_name(raw_name);
  if (rc != TSS2_RC_SUCCESS) return std::unexpected(error_from_rc(rc, "TPM2_NV_ReadPublic(0x01C00002)"));

  const std::uint16_t total = nv_public->nvPublic.dataSize;
  std::vector<std::uint8_t> der;
  der.reserve(total);
  while (der.size() < total) {
    const auto chunk = static_cast<std::uint16_t>(std::min<std::size_t>(nv_chunk_size, total - der.size()));
    TPM2B_MAX_NV_BUFFER* raw_data = nullptr;
    rc = Esys_NV_Read(esys(), ESYS_TR_RH_OWNER, index.get(), ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, chunk,
                      static_cast<std::uint16_t>(der.size()), &raw_data);
    EsysPtr<TPM2B_MAX_NV_BUFFER> data(raw_data);
    if (rc != TSS2_RC_SUCCESS) return std::unexpected(error_from_rc(rc, "TPM2_NV_Read(0x01C00002)"));
    if (data->size != chunk) return fail(TpmError::command_failed, "TPM2_NV_Read returned a short chunk");
    der.insert(der.end(), data->buffer, data->buffer + data->size);
  }

  // The index is sized to the certificate, but some provisioners pad it: parse one DER
  // certificate from the front and ignore what follows.
  const unsigned char* cursor = der.data();
  crypto::ossl::X509Cert certificate(d2i_X509(nullptr, &cursor, static_cast<long>(der.size())));
  if (!certificate) {
    return fail(TpmError::state_invalid, "the EK certificate in NV does not parse: " + crypto::ossl::drain_errors());
  }
  auto pem = crypto::ossl::certificate_to_pem(certificate.get());
  if (!pem) return fail(TpmError::state_invalid, pem.error().detail);
  return *pem;
}

}  // namespace licensing::tpm
