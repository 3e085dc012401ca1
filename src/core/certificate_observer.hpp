// A hook called with every certificate issued to an enclave, so that a measurement (a TPM
// event log entry) can be recorded for it.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>

namespace licensing::core {

class CertificateObserver {
 public:
  virtual ~CertificateObserver() = default;
  // Called after the certificate was signed and before it is returned to the enclave.
  // `der` is the leaf certificate.
  virtual void on_enclave_certificate(std::string_view enclave_id, std::string_view owner_id,
                                      std::span<const std::uint8_t> der) = 0;
};

// Records nothing.
class NoCertificateObserver final : public CertificateObserver {
 public:
  void on_enclave_certificate(std::string_view, std::string_view, std::span<const std::uint8_t>) override {}
};

}  // namespace licensing::core
