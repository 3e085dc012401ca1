// An ESAPI connection to one TPM 2.0 through the TCTI loader, with RAII for the ESYS
// context, the TCTI context and every ESYS_TR, and one closed error enum for the TPM side.
//
// The code assumes no resource manager sits between it and the TPM (swtpm's socket
// interface has none), so every transient object and session is flushed by its owner.
// One TpmContext is not safe for concurrent use: callers serialize access.
#pragma once

#include <tss2/tss2_esys.h>
#include <tss2/tss2_tcti.h>

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.hpp"
#include "crypto/openssl.hpp"

namespace licensing::tpm {

enum class TpmError {
  unreachable,       // the TCTI cannot reach the TPM (no process, connection refused or lost)
  lockout,           // the TPM is in dictionary-attack lockout (TPM2_RC_LOCKOUT)
  auth_failed,       // an authorization value or HMAC was wrong (TPM2_RC_AUTH_FAIL, TPM2_RC_BAD_AUTH)
  failure,           // the TPM is in failure mode (TPM2_RC_FAILURE)
  busy,              // the TPM asks to retry later (TPM2_RC_RETRY, TPM2_RC_TESTING, TPM2_RC_YIELDED)
  command_failed,    // any other TPM or TSS error; the detail carries Tss2_RC_Decode's text
  invalid_argument,  // a caller's input was rejected before reaching the TPM
  pcr_mismatch,      // the PCR value does not equal the replayed event log, so nothing is quoted
  state_invalid,     // a stored file (event log, key blobs, counters) is missing a part or does not parse
  io,                // reading or writing a state file failed
  process_failed,    // swtpm or swtpm_setup could not be started or exited with an error
};

std::string_view to_string(TpmError code);

template <typename T>
using TpmResult = Result<T, TpmError>;

// Maps a TSS2 return code to a TpmError, with "<command>: <Tss2_RC_Decode text>" as detail.
Error<TpmError> error_from_rc(TSS2_RC rc, std::string_view command);

// The 32 bytes of a SHA-256 digest or PCR value.
using Digest = crypto::ossl::Sha256Digest;

// One owned ESYS_TR. On destruction a transient object or session is flushed from the TPM;
// a persistent object, PCR or NV handle only drops ESAPI's metadata (Esys_TR_Close).
// A ScopedHandle must not outlive the TpmContext whose ESYS_CONTEXT it holds.
class ScopedHandle {
 public:
  enum class Release { flush, close };

  ScopedHandle() = default;
  ScopedHandle(ESYS_CONTEXT* esys, ESYS_TR handle, Release release) : esys_(esys), handle_(handle), release_(release) {}
  ScopedHandle(ScopedHandle&& other) noexcept;
  ScopedHandle& operator=(ScopedHandle&& other) noexcept;
  ScopedHandle(const ScopedHandle&) = delete;
  ScopedHandle& operator=(const ScopedHandle&) = delete;
  ~ScopedHandle() { reset(); }

  ESYS_TR get() const { return handle_; }
  explicit operator bool() const { return handle_ != ESYS_TR_NONE; }
  // Flushes or closes now; a failure is logged, because a destructor cannot report it.
  void reset();
  // Drops ESAPI's metadata without a TPM command, for a handle the TPM already forgot
  // (after TPM2_Startup). Flushing it instead could hit a new object with the same number.
  void forget();

 private:
  ESYS_CONTEXT* esys_ = nullptr;
  ESYS_TR handle_ = ESYS_TR_NONE;
  Release release_ = Release::flush;
};

// TPMS_TIME_INFO counters (TPM 2.0 Part 2, 10.11.1 TPMS_CLOCK_INFO) that tell a TPM Reset
// or Restart, after which PCR values start again from zero.
struct ClockCounters {
  std::uint64_t clock_ms = 0;
  std::uint32_t reset_count = 0;
  std::uint32_t restart_count = 0;
  bool safe = false;

  bool same_boot(const ClockCounters& other) const {
    return reset_count == other.reset_count && restart_count == other.restart_count;
  }
};

class TpmContext {
 public:
  // Opens `tcti_config` with the TCTI loader, for example "swtpm:host=127.0.0.1,port=2321"
  // or "device:/dev/tpmrm0", and checks with TPM2_GetCapability that a TPM answers.
  // Returns unreachable when nothing answers.
  static TpmResult<TpmContext> open(const std::string& tcti_config);

  TpmContext(TpmContext&&) noexcept = default;
  TpmContext& operator=(TpmContext&&) noexcept = default;
  TpmContext(const TpmContext&) = delete;
  TpmContext& operator=(const TpmContext&) = delete;
  ~TpmContext();

  ESYS_CONTEXT* esys() const { return esys_.get(); }

  // Starts an unsalted, unbound HMAC session with SHA-256, so an object's authValue never
  // crosses the TCTI in clear. Parameters are not encrypted.
  TpmResult<ScopedHandle> start_hmac_session();
  // Starts a policy session and satisfies the EK's policy, TPM2_PolicySecret on the
  // endorsement hierarchy (TCG EK Credential Profile 2.0, B.3.3). The policy digest is
  // consumed by one command, so each command under the EK needs a new session.
  TpmResult<ScopedHandle> start_endorsement_policy_session();

  TpmResult<ClockCounters> read_clock();
  // Reads PCRs of the SHA-256 bank in the order of `indices` (each below 24).
  TpmResult<std::vector<Digest>> read_pcrs(std::span<const std::uint32_t> indices);
  TpmResult<void> extend_pcr(std::uint32_t index, const Digest& digest);
  // TPM2_PCR_Reset; the PC Client profile allows it from locality 0 for PCR 16 and 23 only.
  TpmResult<void> reset_pcr(std::uint32_t index);
  // Reads the RSA 2048 EK certificate from NV index 0x01C00002 (TCG EK Credential Profile
  // 2.0, 2.2.1.4) with owner authorization and returns it as PEM.
  TpmResult<std::string> read_ek_certificate_pem();

 private:
  struct TctiDeleter {
    void operator()(TSS2_TCTI_CONTEXT* tcti) const;
  };
  struct EsysDeleter {
    void operator()(ESYS_CONTEXT* esys) const;
  };

  TpmContext() = default;

  // Declared in this order so the ESYS context is finalized before its TCTI.
  std::unique_ptr<TSS2_TCTI_CONTEXT, TctiDeleter> tcti_;
  std::unique_ptr<ESYS_CONTEXT, EsysDeleter> esys_;
};

// Owns a buffer that ESAPI allocated (TPM2B_*, TPML_*, TPMT_* outputs): frees it with Esys_Free.
struct EsysFree {
  void operator()(void* pointer) const { Esys_Free(pointer); }
};
template <typename T>
using EsysPtr = std::unique_ptr<T, EsysFree>;

}  // namespace licensing::tpm
