// A hook called with every certificate issued to an enclave, so that a measurement (a TPM
// event log entry) can be recorded for it.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "common/error.hpp"

namespace licensing::core {

// A certificate that is about to be handed to an enclave.
struct IssuedEnclaveCertificate {
  std::string_view enclave_id;
  std::string_view owner_id;
  std::span<const std::uint8_t> der;  // the leaf certificate
  std::string_view chain_pem;         // leaf, then the issuing CA
};

enum class MeasurementError {
  unavailable,  // the TPM cannot be reached, or is in dictionary-attack lockout
  failed,       // the event log could not be written, or the TPM rejected the extend
};

class CertificateObserver {
 public:
  virtual ~CertificateObserver() = default;
  // Records the certificate before it is returned to the enclave. An error withholds the
  // certificate, so an enclave never serves one that was not recorded.
  virtual Result<void, MeasurementError> on_enclave_certificate(const IssuedEnclaveCertificate& issued) = 0;
  // Checks that a measurement can be recorded now, before a single-use credential is spent
  // on a certificate that would then be withheld.
  virtual Result<void, MeasurementError> ready() { return {}; }
};

// Records nothing.
class NoCertificateObserver final : public CertificateObserver {
 public:
  Result<void, MeasurementError> on_enclave_certificate(const IssuedEnclaveCertificate&) override { return {}; }
};

}  // namespace licensing::core
