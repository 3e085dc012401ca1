#include "tpm/evidence.hpp"

#include "common/base64url.hpp"

namespace licensing::tpm {

Digest attestation_qualifying_data(std::span<const std::uint8_t> nonce, std::span<const std::uint8_t> certificate_der) {
  const Digest certificate_digest = crypto::ossl::sha256(certificate_der);
  std::vector<std::uint8_t> input(qualifying_data_label.begin(), qualifying_data_label.end());
  input.insert(input.end(), nonce.begin(), nonce.end());
  input.insert(input.end(), certificate_digest.begin(), certificate_digest.end());
  return crypto::ossl::sha256(input);
}

nlohmann::json attestation_evidence(std::string_view enclave_id, std::span<const std::uint8_t> nonce,
                                    const Quote& quote, const AkPublicInfo& attestation_key,
                                    const std::optional<std::string>& ek_certificate_pem,
                                    const std::vector<std::string>& certificate_chain_pem) {
  nlohmann::json pcrs = nlohmann::json::object();
  for (std::size_t i = 0; i < quote.pcrs.size() && i < quote.pcr_values.size(); ++i) {
    pcrs[std::to_string(quote.pcrs[i])] = crypto::ossl::to_hex(quote.pcr_values[i]);
  }
  nlohmann::json events = nlohmann::json::array();
  for (const auto& event : quote.events) events.push_back(event_to_json(event));

  nlohmann::json evidence = {
      {"enclave_id", enclave_id},
      {"nonce", base64url::encode(nonce)},
      {"quote",
       {
           {"attest", base64url::encode(quote.attest)},
           {"signature", base64url::encode(quote.signature)},
           {"pcrs", {{"sha256", pcrs}}},
       }},
      {"event_log", events},
      {"attestation_key",
       {
           {"public_key_pem", attestation_key.public_key_pem},
           {"public_area", base64url::encode(attestation_key.public_area)},
           {"name", crypto::ossl::to_hex(attestation_key.name)},
           {"fingerprint", attestation_key.fingerprint},
       }},
      {"certificate_chain_pem", certificate_chain_pem},
  };
  if (ek_certificate_pem) evidence["ek_certificate_pem"] = *ek_certificate_pem;
  return evidence;
}

}  // namespace licensing::tpm
