// The attestation evidence a client receives for one enclave, as JSON:
//
//   {"enclave_id", "nonce",
//    "quote": {"attest", "signature", "pcrs": {"sha256": {"23": hex, ...}}},
//    "event_log": [{"seq", "enclave_id", "owner", "certificate_sha256", "image_sha256", "digest"}],
//    "attestation_key": {"public_key_pem", "public_area", "name", "fingerprint"},
//    "ek_certificate_pem",            (only when the TPM has one)
//    "certificate_chain_pem": [leaf, issuing CA, ...]}
//
// Binary fields (nonce, attest, signature, public_area) are base64url without padding
// (RFC 4648, section 5). PCR values and the AK name are lowercase hex.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tpm/attestation_key.hpp"
#include "tpm/event_log.hpp"

namespace licensing::tpm {

// The byte string "enclave-attestation-v1", without terminator.
inline constexpr std::string_view qualifying_data_label = "enclave-attestation-v1";
inline constexpr std::size_t min_nonce_size = 16;
inline constexpr std::size_t max_nonce_size = 64;

// SHA-256(label || nonce || SHA-256(certificate DER)): the extraData of TPM2_Quote that ties
// the quote to the client's nonce and to one certificate.
Digest attestation_qualifying_data(std::span<const std::uint8_t> nonce, std::span<const std::uint8_t> certificate_der);

// One quote with what a verifier needs beside it.
struct Quote {
  std::vector<std::uint8_t> attest;     // marshalled TPMS_ATTEST, the exact bytes the AK signed
  std::vector<std::uint8_t> signature;  // marshalled TPMT_SIGNATURE
  std::vector<std::uint32_t> pcrs;      // the quoted SHA-256 PCRs, ascending, as in the quote's selection
  std::vector<Digest> pcr_values;       // their values, same order; their SHA-256 is the quote's pcrDigest
  std::vector<Event> events;            // the log that replays to the event PCR's value
};

nlohmann::json attestation_evidence(std::string_view enclave_id, std::span<const std::uint8_t> nonce,
                                    const Quote& quote, const AkPublicInfo& attestation_key,
                                    const std::optional<std::string>& ek_certificate_pem,
                                    const std::vector<std::string>& certificate_chain_pem);

}  // namespace licensing::tpm
