// Test fixture: every test gets its own swtpm on 127.0.0.1 with a fresh state directory
// under /tmp. Manufacturing with swtpm_setup (EK, EK certificate, platform certificate)
// runs once per test program into a template directory, and each test starts from a
// copy of that freshly manufactured state, so no test sees another's PCRs, keys or
// dictionary-attack counter.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "tpm/attestor.hpp"
#include "tpm/swtpm_process.hpp"

namespace licensing::tpm::testing {

class TpmTest : public ::testing::Test {
 protected:
  void SetUp() override;
  void TearDown() override;

  // Stops swtpm and starts it again on the same state: a TPM Reset with PCRs at zero.
  void restart_swtpm();
  TpmContext open_context();
  std::unique_ptr<Attestor> open_attestor(std::vector<std::uint32_t> boot_pcrs = {});

  std::filesystem::path directory_;        // this test's scratch directory
  std::filesystem::path tpm_state_;        // swtpm's state
  std::filesystem::path attestor_state_;   // the attestor's AK, log and counters
  std::unique_ptr<SwtpmProcess> swtpm_;
};

// Stand-ins for DER certificates: the attestor and the verifier only hash the bytes.
std::vector<std::uint8_t> certificate_bytes(const std::string& label);
std::string sha256_hex(const std::vector<std::uint8_t>& bytes);
std::vector<std::uint8_t> nonce_bytes(std::uint8_t fill, std::size_t size = 32);

}  // namespace licensing::tpm::testing
