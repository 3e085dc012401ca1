#include "tpm/quote_verifier.hpp"

#include <openssl/pem.h>

#include <algorithm>
#include <set>

#include "common/base64url.hpp"
#include "common/secret.hpp"
#include "tpm/evidence.hpp"
#include "tpm/tpm_structures.hpp"

namespace licensing::tpm {
namespace {

using Bytes = std::vector<std::uint8_t>;
using crypto::ossl::to_hex;

std::unexpected<Error<QuoteError>> reject(QuoteError code, const std::string& message) {
  return fail(code, std::string(to_string(code)) + ": " + message);
}

std::string expected_seen(const std::string& expected, const std::string& seen) {
  return "expected " + expected + ", seen " + seen;
}

// The decoded fields of the evidence, before any of them is trusted.
struct Fields {
  std::string enclave_id;
  Bytes nonce;
  Bytes attest;
  Bytes signature;
  nlohmann::json pcrs;
  nlohmann::json event_log;
  std::string public_key_pem;
  Bytes public_area;
  std::string name;
  std::string fingerprint;
};

const nlohmann::json* member(const nlohmann::json& object, const char* name) {
  if (!object.is_object()) return nullptr;
  const auto found = object.find(name);
  return found == object.end() ? nullptr : &*found;
}

Result<std::string, QuoteError> string_field(const nlohmann::json& object, const char* name, const char* path) {
  const auto* value = member(object, name);
  if (value == nullptr || !value->is_string()) return reject(QuoteError::evidence_malformed, std::string(path) + " is not a string");
  return value->get<std::string>();
}

Result<Bytes, QuoteError> bytes_field(const nlohmann::json& object, const char* name, const char* path) {
  auto text = string_field(object, name, path);
  if (!text) return std::unexpected(text.error());
  auto decoded = base64url::decode(*text);
  if (!decoded) return reject(QuoteError::evidence_malformed, std::string(path) + " is not base64url");
  return std::move(*decoded);
}

Result<Fields, QuoteError> decode_fields(const nlohmann::json& evidence) {
  Fields fields;
  auto enclave_id = string_field(evidence, "enclave_id", "enclave_id");
  if (!enclave_id) return std::unexpected(enclave_id.error());
  fields.enclave_id = std::move(*enclave_id);
  auto nonce = bytes_field(evidence, "nonce", "nonce");
  if (!nonce) return std::unexpected(nonce.error());
  fields.nonce = std::move(*nonce);

  const auto* quote = member(evidence, "quote");
  if (quote == nullptr || !quote->is_object()) return reject(QuoteError::evidence_malformed, "quote is not an object");
  auto attest = bytes_field(*quote, "attest", "quote.attest");
  if (!attest) return std::unexpected(attest.error());
  fields.attest = std::move(*attest);
  auto signature = bytes_field(*quote, "signature", "quote.signature");
  if (!signature) return std::unexpected(signature.error());
  fields.signature = std::move(*signature);
  const auto* pcrs = member(*quote, "pcrs");
  if (pcrs == nullptr || !pcrs->is_object()) return reject(QuoteError::evidence_malformed, "quote.pcrs is not an object");
  fields.pcrs = *pcrs;

  const auto* event_log = member(evidence, "event_log");
  if (event_log == nullptr || !event_log->is_array()) return reject(QuoteError::evidence_malformed, "event_log is not an array");
  fields.event_log = *event_log;

  const auto* key = member(evidence, "attestation_key");
  if (key == nullptr || !key->is_object()) return reject(QuoteError::evidence_malformed, "attestation_key is not an object");
  auto pem = string_field(*key, "public_key_pem", "attestation_key.public_key_pem");
  if (!pem) return std::unexpected(pem.error());
  fields.public_key_pem = std::move(*pem);
  auto area = bytes_field(*key, "public_area", "attestation_key.public_area");
  if (!area) return std::unexpected(area.error());
  fields.public_area = std::move(*area);
  auto name = string_field(*key, "name", "attestation_key.name");
  if (!name) return std::unexpected(name.error());
  fields.name = std::move(*name);
  auto fingerprint = string_field(*key, "fingerprint", "attestation_key.fingerprint");
  if (!fingerprint) return std::unexpected(fingerprint.error());
  fields.fingerprint = std::move(*fingerprint);
  return fields;
}

crypto::ossl::Pkey public_key_from_pem(const std::string& pem) {
  crypto::ossl::Bio bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (!bio) return nullptr;
  crypto::ossl::Pkey key(PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr));
  crypto::ossl::drain_errors();
  return key;
}

bool verify_ecdsa_sha256(EVP_PKEY* key, std::span<const std::uint8_t> der_signature, std::span<const std::uint8_t> message) {
  crypto::ossl::MdContext context(EVP_MD_CTX_new());
  const bool valid = context && EVP_DigestVerifyInit(context.get(), nullptr, EVP_sha256(), nullptr, key) == 1 &&
                     EVP_DigestVerify(context.get(), der_signature.data(), der_signature.size(), message.data(),
                                      message.size()) == 1;
  crypto::ossl::drain_errors();
  return valid;
}

std::string selection_text(const TPML_PCR_SELECTION& selection) {
  std::string text = "[";
  for (std::uint32_t bank = 0; bank < selection.count && bank < TPM2_NUM_PCR_BANKS; ++bank) {
    const auto& entry = selection.pcrSelections[bank];
    text += (bank == 0 ? "" : "; ") + std::string(entry.hash == TPM2_ALG_SHA256 ? "sha256" : "alg " + std::to_string(entry.hash)) + ":";
    for (std::uint32_t index = 0; index < entry.sizeofSelect * 8U; ++index) {
      if ((entry.pcrSelect[index / 8] & (1U << (index % 8))) != 0) text += " " + std::to_string(index);
    }
  }
  return text + "]";
}

bool is_lower_hex_digest(const std::string& text) {
  return text.size() == 64 &&
         std::all_of(text.begin(), text.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

}  // namespace

std::string_view to_string(QuoteError code) {
  switch (code) {
    case QuoteError::evidence_malformed: return "evidence_malformed";
    case QuoteError::enclave_id_mismatch: return "enclave_id_mismatch";
    case QuoteError::nonce_mismatch: return "nonce_mismatch";
    case QuoteError::ak_public_malformed: return "ak_public_malformed";
    case QuoteError::ak_not_restricted_signing: return "ak_not_restricted_signing";
    case QuoteError::ak_algorithm_unsupported: return "ak_algorithm_unsupported";
    case QuoteError::ak_key_mismatch: return "ak_key_mismatch";
    case QuoteError::ak_untrusted: return "ak_untrusted";
    case QuoteError::signature_malformed: return "signature_malformed";
    case QuoteError::signature_scheme_mismatch: return "signature_scheme_mismatch";
    case QuoteError::signature_invalid: return "signature_invalid";
    case QuoteError::attest_malformed: return "attest_malformed";
    case QuoteError::magic_invalid: return "magic_invalid";
    case QuoteError::type_invalid: return "type_invalid";
    case QuoteError::ak_name_mismatch: return "ak_name_mismatch";
    case QuoteError::extra_data_mismatch: return "extra_data_mismatch";
    case QuoteError::pcr_selection_mismatch: return "pcr_selection_mismatch";
    case QuoteError::pcr_values_malformed: return "pcr_values_malformed";
    case QuoteError::pcr_digest_mismatch: return "pcr_digest_mismatch";
    case QuoteError::event_log_malformed: return "event_log_malformed";
    case QuoteError::event_log_replay_mismatch: return "event_log_replay_mismatch";
    case QuoteError::certificate_event_missing: return "certificate_event_missing";
    case QuoteError::image_not_allowed: return "image_not_allowed";
    case QuoteError::boot_pcr_mismatch: return "boot_pcr_mismatch";
    case QuoteError::quote_too_old: return "quote_too_old";
  }
  return "unknown";
}

Result<VerifiedQuote, QuoteError> verify_attestation(const nlohmann::json& evidence, const VerificationRequest& request,
                                                     const QuotePolicy& policy) {
  // 1-3. The evidence decodes, and answers the request the client made.
  auto decoded = decode_fields(evidence);
  if (!decoded) return std::unexpected(decoded.error());
  const Fields& fields = *decoded;

  if (fields.enclave_id != request.enclave_id) {
    return reject(QuoteError::enclave_id_mismatch, expected_seen(std::string(request.enclave_id), fields.enclave_id));
  }

  if (!constant_time_equal(fields.nonce, request.nonce)) {
    return reject(QuoteError::nonce_mismatch, expected_seen(to_hex(request.nonce), to_hex(fields.nonce)));
  }

  // 4. The AK's public area is exactly one TPMT_PUBLIC (Part 2, 12.2.4).
  const auto area = unmarshal_public(fields.public_area);
  if (!area) return reject(QuoteError::ak_public_malformed, "attestation_key.public_area is not one TPMT_PUBLIC");

  // 5. TPMA_OBJECT (Part 2, 8.3): only a restricted signing key that never left the TPM
  // refuses to sign data that starts with TPM_GENERATED_VALUE, which makes its quotes real.
  const TPMA_OBJECT attributes = area->objectAttributes;
  if ((attributes & attestation_key_required_attributes) != attestation_key_required_attributes ||
      (attributes & TPMA_OBJECT_DECRYPT) != 0) {
    char text[64];
    std::snprintf(text, sizeof(text), "objectAttributes 0x%08x", attributes);
    return reject(QuoteError::ak_not_restricted_signing,
                  "expected fixedTPM|fixedParent|sensitiveDataOrigin|restricted|sign without decrypt, seen " +
                      std::string(text));
  }

  // 6. TPMS_ECC_PARMS (Part 2, 12.2.3.6): P-256, ECDSA with SHA-256, and a SHA-256 name.
  const auto& ecc = area->parameters.eccDetail;
  if (area->type != TPM2_ALG_ECC || area->nameAlg != TPM2_ALG_SHA256 || ecc.curveID != TPM2_ECC_NIST_P256 ||
      ecc.scheme.scheme != TPM2_ALG_ECDSA || ecc.scheme.details.ecdsa.hashAlg != TPM2_ALG_SHA256) {
    return reject(QuoteError::ak_algorithm_unsupported,
                  "expected ECC NIST P-256, ECDSA SHA-256, nameAlg SHA-256; seen type " + std::to_string(area->type) +
                      ", curve " + std::to_string(ecc.curveID) + ", scheme " + std::to_string(ecc.scheme.scheme) +
                      ", nameAlg " + std::to_string(area->nameAlg));
  }
  auto key = p256_public_key(*area);
  if (!key) return reject(QuoteError::ak_algorithm_unsupported, "the ECC point: " + key.error().detail);

  // 7. The convenience fields must describe the same key as the public area.
  const std::string fingerprint = public_key_fingerprint(key->get());
  const Bytes name = object_name(fields.public_area);
  const auto pem_key = public_key_from_pem(fields.public_key_pem);
  if (!pem_key || EVP_PKEY_eq(pem_key.get(), key->get()) != 1) {
    crypto::ossl::drain_errors();
    return reject(QuoteError::ak_key_mismatch, "attestation_key.public_key_pem is not the key in public_area");
  }
  if (fields.fingerprint != fingerprint) {
    return reject(QuoteError::ak_key_mismatch, "attestation_key.fingerprint " + expected_seen(fingerprint, fields.fingerprint));
  }
  if (fields.name != to_hex(name)) {
    return reject(QuoteError::ak_key_mismatch, "attestation_key.name " + expected_seen(to_hex(name), fields.name));
  }

  // 8. The AK is pinned.
  const bool trusted = std::find(policy.trusted_ak_fingerprints.begin(), policy.trusted_ak_fingerprints.end(),
                                 fingerprint) != policy.trusted_ak_fingerprints.end();
  if (!trusted) return reject(QuoteError::ak_untrusted, "fingerprint " + fingerprint + " is not pinned");

  // 9-11. TPMT_SIGNATURE (Part 2, 11.3.4): ECDSA with SHA-256 over the exact attest bytes.
  const auto signature = unmarshal_signature(fields.signature);
  if (!signature) return reject(QuoteError::signature_malformed, "quote.signature is not one TPMT_SIGNATURE");
  if (signature->sigAlg != TPM2_ALG_ECDSA || signature->signature.ecdsa.hash != TPM2_ALG_SHA256) {
    return reject(QuoteError::signature_scheme_mismatch,
                  "expected ECDSA (0x0018) with SHA-256 (0x000b), seen sigAlg " + std::to_string(signature->sigAlg) +
                      " with hash " + std::to_string(signature->signature.ecdsa.hash));
  }
  const auto der_signature = ecdsa_signature_der(signature->signature.ecdsa);
  if (!der_signature) return reject(QuoteError::signature_malformed, "r or s is empty or longer than 32 bytes");
  if (!verify_ecdsa_sha256(key->get(), *der_signature, fields.attest)) {
    return reject(QuoteError::signature_invalid, "the ECDSA signature does not verify over quote.attest with the AK");
  }

  // 12-14. TPMS_ATTEST (Part 2, 10.12.12): made by the TPM, and a quote.
  const auto attest = unmarshal_attest(fields.attest);
  if (!attest) return reject(QuoteError::attest_malformed, "quote.attest is not one TPMS_ATTEST");
  if (attest->magic != TPM2_GENERATED_VALUE) {
    char text[64];
    std::snprintf(text, sizeof(text), "expected 0xff544347, seen 0x%08x", attest->magic);
    return reject(QuoteError::magic_invalid, text);
  }
  if (attest->type != TPM2_ST_ATTEST_QUOTE) {
    char text[64];
    std::snprintf(text, sizeof(text), "expected TPM_ST_ATTEST_QUOTE 0x8018, seen 0x%04x", attest->type);
    return reject(QuoteError::type_invalid, text);
  }

  // 15. qualifiedSigner is a SHA-256 qualified name (Part 1, 16.7 Qualified Name): it
  // chains the names of the AK's parents, so it is not the AK's own name.
  // NOTE: the chain through the EK is not recomputed, so only the form is checked here; the
  // pinned AK's signature is what binds the quote to the key.
  const TPM2B_NAME& signer = attest->qualifiedSigner;
  if (signer.size != name.size() || signer.name[0] != name[0] || signer.name[1] != name[1]) {
    return reject(QuoteError::ak_name_mismatch, "qualifiedSigner: expected a 34-byte SHA-256 qualified name, seen " +
                                                    to_hex(std::span(signer.name, signer.size)));
  }

  // 16. extraData binds the client's nonce and the certificate.
  const Digest qualifying_data = attestation_qualifying_data(request.nonce, request.certificate_der);
  const TPM2B_DATA& extra = attest->extraData;
  if (!constant_time_equal(std::span(extra.buffer, extra.size), qualifying_data)) {
    return reject(QuoteError::extra_data_mismatch,
                  "extraData " + expected_seen(to_hex(qualifying_data), to_hex(std::span(extra.buffer, extra.size))));
  }

  // 17. TPMS_QUOTE_INFO.pcrSelect (Part 2, 10.12.1) is exactly one SHA-256 bank with the
  // event PCR and the policy's boot PCRs.
  std::set<std::uint32_t> expected_indices;
  for (const auto& [index, value] : policy.boot_pcrs) expected_indices.insert(index);
  expected_indices.insert(policy.event_pcr);
  TPML_PCR_SELECTION expected_selection{};
  expected_selection.count = 1;
  expected_selection.pcrSelections[0].hash = TPM2_ALG_SHA256;
  expected_selection.pcrSelections[0].sizeofSelect = 3;
  for (const std::uint32_t index : expected_indices) {
    if (index < 24) expected_selection.pcrSelections[0].pcrSelect[index / 8] |= static_cast<std::uint8_t>(1U << (index % 8));
  }
  const TPML_PCR_SELECTION& quoted_selection = attest->attested.quote.pcrSelect;
  const bool same_selection =
      quoted_selection.count == 1 && quoted_selection.pcrSelections[0].hash == TPM2_ALG_SHA256 &&
      quoted_selection.pcrSelections[0].sizeofSelect == 3 &&
      std::equal(quoted_selection.pcrSelections[0].pcrSelect, quoted_selection.pcrSelections[0].pcrSelect + 3,
                 expected_selection.pcrSelections[0].pcrSelect);
  if (!same_selection) {
    return reject(QuoteError::pcr_selection_mismatch,
                  expected_seen(selection_text(expected_selection), selection_text(quoted_selection)));
  }

  // 18. The presented values are exactly the selected PCRs of the SHA-256 bank.
  const auto* bank = member(fields.pcrs, "sha256");
  if (bank == nullptr || !bank->is_object() || fields.pcrs.size() != 1 || bank->size() != expected_indices.size()) {
    return reject(QuoteError::pcr_values_malformed, "quote.pcrs must hold exactly the selected sha256 PCRs");
  }
  std::map<std::uint32_t, Digest> values;
  std::vector<Digest> ordered_values;
  for (const std::uint32_t index : expected_indices) {
    const auto* value = member(*bank, std::to_string(index).c_str());
    if (value == nullptr || !value->is_string() || !is_lower_hex_digest(value->get<std::string>())) {
      return reject(QuoteError::pcr_values_malformed, "quote.pcrs.sha256." + std::to_string(index) + " is not 64 lowercase hex digits");
    }
    Digest digest{};
    const std::string text = value->get<std::string>();
    for (std::size_t i = 0; i < digest.size(); ++i) digest[i] = static_cast<std::uint8_t>(std::stoul(text.substr(2 * i, 2), nullptr, 16));
    values[index] = digest;
    ordered_values.push_back(digest);
  }

  // 19. pcrDigest is SHA-256 over the values in selection order, lowest index first.
  const Digest computed_digest = pcr_digest(ordered_values);
  const TPM2B_DIGEST& quoted_digest = attest->attested.quote.pcrDigest;
  if (!constant_time_equal(std::span(quoted_digest.buffer, quoted_digest.size), computed_digest)) {
    return reject(QuoteError::pcr_digest_mismatch,
                  "pcrDigest " + expected_seen(to_hex(computed_digest), to_hex(std::span(quoted_digest.buffer, quoted_digest.size))));
  }

  // 20. Every event parses, carries its own digest, and seq runs 1, 2, ...
  std::vector<Event> events;
  for (const auto& value : fields.event_log) {
    auto event = event_from_json(value);
    if (!event) return reject(QuoteError::event_log_malformed, event.error());
    if (event->seq != events.size() + 1) {
      return reject(QuoteError::event_log_malformed,
                    "seq " + expected_seen(std::to_string(events.size() + 1), std::to_string(event->seq)));
    }
    events.push_back(std::move(*event));
  }

  // 21. The log replays to the quoted event PCR.
  const Digest replayed = replay_events(events);
  if (replayed != values[policy.event_pcr]) {
    return reject(QuoteError::event_log_replay_mismatch,
                  "PCR " + std::to_string(policy.event_pcr) + " " + expected_seen(to_hex(replayed), to_hex(values[policy.event_pcr])));
  }

  // 22. The certificate was measured for this enclave. A renewed certificate has a later
  // event, so the last match counts.
  const std::string certificate_sha256 = to_hex(crypto::ossl::sha256(request.certificate_der));
  const auto match = std::find_if(events.rbegin(), events.rend(), [&](const Event& event) {
    return event.certificate_sha256 == certificate_sha256 && event.enclave_id == request.enclave_id;
  });
  if (match == events.rend()) {
    return reject(QuoteError::certificate_event_missing,
                  "no event names certificate " + certificate_sha256 + " for enclave " + std::string(request.enclave_id));
  }

  // 23-25. The optional policy.
  if (!policy.allowed_image_sha256.empty() &&
      std::find(policy.allowed_image_sha256.begin(), policy.allowed_image_sha256.end(), match->image_sha256) ==
          policy.allowed_image_sha256.end()) {
    return reject(QuoteError::image_not_allowed, "image " + match->image_sha256 + " is not in the allowed set");
  }

  for (const auto& [index, expected] : policy.boot_pcrs) {
    const std::string seen = to_hex(values[index]);
    if (seen != expected) {
      return reject(QuoteError::boot_pcr_mismatch, "PCR " + std::to_string(index) + " " + expected_seen(expected, seen));
    }
  }

  const TPMS_CLOCK_INFO& clock = attest->clockInfo;
  if (policy.clock_reference) {
    const ClockReference& reference = *policy.clock_reference;
    const auto max_age = static_cast<std::uint64_t>(reference.max_age.count());
    if (clock.resetCount != reference.reset_count || clock.restartCount != reference.restart_count) {
      return reject(QuoteError::quote_too_old,
                    "resetCount/restartCount " +
                        expected_seen(std::to_string(reference.reset_count) + "/" + std::to_string(reference.restart_count),
                                      std::to_string(clock.resetCount) + "/" + std::to_string(clock.restartCount)));
    }
    if (clock.safe != TPM2_YES) return reject(QuoteError::quote_too_old, "clockInfo.safe is NO");
    if (clock.clock < reference.clock_ms || clock.clock - reference.clock_ms > max_age) {
      return reject(QuoteError::quote_too_old,
                    "clock " + expected_seen(std::to_string(reference.clock_ms) + " to " +
                                                 std::to_string(reference.clock_ms + max_age) + " ms",
                                             std::to_string(clock.clock) + " ms"));
    }
  }

  return VerifiedQuote{.event = *match,
                       .ak_fingerprint = fingerprint,
                       .clock_ms = clock.clock,
                       .reset_count = clock.resetCount,
                       .restart_count = clock.restartCount};
}

}  // namespace licensing::tpm
