#include "tpm/attestor.hpp"

#include <algorithm>
#include <set>

#include "common/json.hpp"
#include "common/logging.hpp"
#include "tpm/tpm_structures.hpp"

namespace licensing::tpm {
namespace {

std::filesystem::path counters_path(const AttestorOptions& options) { return options.state_directory / "pcr_state.json"; }

std::string hex(const Digest& digest) { return crypto::ossl::to_hex(digest); }

}  // namespace

TpmResult<std::unique_ptr<Attestor>> Attestor::open(TpmContext tpm, AttestorOptions options) {
  if (options.event_pcr >= 24) return fail(TpmError::invalid_argument, "event_pcr is above 23");
  for (const std::uint32_t index : options.boot_pcrs) {
    if (index >= 24 || index == options.event_pcr) {
      return fail(TpmError::invalid_argument,
                  "boot_pcrs contains " + std::to_string(index) + ", which is above 23 or the event PCR");
    }
  }
  if (auto made = crypto::ossl::ensure_private_directory(options.state_directory); !made) {
    return fail(TpmError::io, made.error().detail);
  }

  auto key = AttestationKey::load_or_create(tpm, options.state_directory);
  if (!key) return std::unexpected(key.error());
  auto log = EventLogFile::open(options.state_directory / "events.jsonl");
  if (!log) return std::unexpected(log.error());

  auto ek_certificate = tpm.read_ek_certificate_pem();
  std::unique_ptr<Attestor> attestor(new Attestor(std::move(tpm), std::move(*key), std::move(*log), std::move(options)));
  if (ek_certificate) {
    attestor->ek_certificate_pem_ = std::move(*ek_certificate);
  } else {
    logging::info("ek_certificate_unavailable", {{"detail", ek_certificate.error().detail}});
  }

  std::lock_guard lock(attestor->mutex_);
  if (auto synchronized = attestor->synchronize(); !synchronized) return std::unexpected(synchronized.error());
  logging::info("attestor_opened", {{"events", attestor->log_.events().size()},
                                    {"pcr", attestor->options_.event_pcr},
                                    {"ak_fingerprint", attestor->key_.info().fingerprint}});
  return attestor;
}

std::optional<ClockCounters> Attestor::stored_counters() const {
  auto contents = crypto::ossl::read_public_file(counters_path(options_), 4096);
  if (!contents) return std::nullopt;
  auto parsed = json::parse_strict(*contents, 2);
  if (!parsed || !parsed->is_object()) return std::nullopt;

  const auto& value = *parsed;
  for (const char* field : {"pcr", "reset_count", "restart_count"}) {
    if (!value.contains(field) || !value[field].is_number_unsigned()) return std::nullopt;
  }
  // Counters stored for another PCR say nothing about this one.
  if (value["pcr"].get<std::uint32_t>() != options_.event_pcr) return std::nullopt;
  return ClockCounters{.reset_count = value["reset_count"].get<std::uint32_t>(),
                       .restart_count = value["restart_count"].get<std::uint32_t>()};
}

TpmResult<void> Attestor::store_counters(const ClockCounters& counters) {
  const nlohmann::json value = {
      {"pcr", options_.event_pcr},
      {"reset_count", counters.reset_count},
      {"restart_count", counters.restart_count},
  };
  auto written = crypto::ossl::write_file_atomically(counters_path(options_), value.dump(), 0600);
  if (!written) return fail(TpmError::io, written.error().detail);
  return {};
}

TpmResult<bool> Attestor::synchronize() {
  const std::uint32_t pcr_index = options_.event_pcr;
  const std::uint32_t selection[] = {pcr_index};
  const auto& events = log_.events();

  auto clock = tpm_.read_clock();
  if (!clock) return std::unexpected(clock.error());
  auto values = tpm_.read_pcrs(selection);
  if (!values) return std::unexpected(values.error());
  const Digest pcr = values->front();
  const Digest expected = replay_events(events);

  const auto stored = stored_counters();
  const bool boot_changed = !stored || !stored->same_boot(*clock);
  if (pcr == expected) {
    if (auto written = store_counters(*clock); !written) return std::unexpected(written.error());
    return boot_changed;
  }

  if (boot_changed) {
    // After a TPM Reset or Restart the PCR starts from zero and none of its old extensions
    // remain, so the whole log is extended again.
    if (pcr != Digest{}) {
      if (auto reset = tpm_.reset_pcr(pcr_index); !reset) return std::unexpected(reset.error());
    }
    for (const auto& event : events) {
      if (auto extended = tpm_.extend_pcr(pcr_index, event_digest(event)); !extended) {
        return std::unexpected(extended.error());
      }
    }
    logging::info("event_log_reextended", {{"pcr", pcr_index},
                                           {"events", events.size()},
                                           {"reset_count", clock->reset_count},
                                           {"restart_count", clock->restart_count}});
  } else if (!events.empty() && pcr == replay_events(std::span(events).first(events.size() - 1))) {
    if (auto extended = tpm_.extend_pcr(pcr_index, event_digest(events.back())); !extended) {
      return std::unexpected(extended.error());
    }
    logging::warn("event_log_last_extension_repaired", {{"pcr", pcr_index}, {"seq", events.back().seq}});
  } else {
    logging::error("pcr_mismatch", {{"pcr", pcr_index}, {"expected", hex(expected)}, {"seen", hex(pcr)}});
    return fail(TpmError::pcr_mismatch, "PCR " + std::to_string(pcr_index) + " does not equal the replayed log of " +
                                            std::to_string(events.size()) + " events: expected " + hex(expected) +
                                            ", seen " + hex(pcr));
  }

  auto after = tpm_.read_pcrs(selection);
  if (!after) return std::unexpected(after.error());
  if (after->front() != expected) {
    return fail(TpmError::pcr_mismatch, "PCR " + std::to_string(pcr_index) + " after repair: expected " +
                                            hex(expected) + ", seen " + hex(after->front()));
  }
  if (auto written = store_counters(*clock); !written) return std::unexpected(written.error());
  return boot_changed;
}

TpmResult<Event> Attestor::measure(std::string enclave_id, std::string owner, std::string certificate_sha256,
                                   std::string image_sha256) {
  std::lock_guard lock(mutex_);

  // The log is durable before the PCR moves: a crash in between leaves the PCR one event
  // behind, which synchronize() repairs.
  auto event = log_.append(Event{.seq = 0,
                                 .enclave_id = std::move(enclave_id),
                                 .owner = std::move(owner),
                                 .certificate_sha256 = std::move(certificate_sha256),
                                 .image_sha256 = std::move(image_sha256)});
  if (!event) return event;
  if (auto extended = tpm_.extend_pcr(options_.event_pcr, event_digest(*event)); !extended) {
    return std::unexpected(extended.error());
  }
  logging::info("event_measured", {{"seq", event->seq}, {"enclave_id", event->enclave_id}});
  return event;
}

TpmResult<Quote> Attestor::quote(std::span<const std::uint8_t> nonce, std::span<const std::uint8_t> certificate_der) {
  if (nonce.size() < min_nonce_size || nonce.size() > max_nonce_size) {
    return fail(TpmError::invalid_argument, "the nonce is " + std::to_string(nonce.size()) + " bytes, not 16 to 64");
  }
  const std::string certificate_sha256 = hex(crypto::ossl::sha256(certificate_der));

  std::lock_guard lock(mutex_);
  const auto& events = log_.events();
  const bool measured = std::any_of(events.begin(), events.end(), [&](const Event& event) {
    return event.certificate_sha256 == certificate_sha256;
  });
  if (!measured) {
    return fail(TpmError::invalid_argument, "certificate " + certificate_sha256 + " has not been measured");
  }

  std::set<std::uint32_t> ordered(options_.boot_pcrs.begin(), options_.boot_pcrs.end());
  ordered.insert(options_.event_pcr);
  const std::vector<std::uint32_t> pcrs(ordered.begin(), ordered.end());
  const auto event_position = static_cast<std::size_t>(std::distance(ordered.begin(), ordered.find(options_.event_pcr)));

  auto values = tpm_.read_pcrs(pcrs);
  if (!values) return std::unexpected(values.error());
  if ((*values)[event_position] != replay_events(events)) {
    // A TPM reset since the last check is repaired here; anything else is refused.
    auto restarted = synchronize();
    if (!restarted) return std::unexpected(restarted.error());
    if (*restarted) {
      // TPM2_Startup flushed the AK, so it is loaded again from its blobs.
      key_.forget_loaded_object();
      auto key = AttestationKey::load_or_create(tpm_, options_.state_directory);
      if (!key) return std::unexpected(key.error());
      key_ = std::move(*key);
    }
    values = tpm_.read_pcrs(pcrs);
    if (!values) return std::unexpected(values.error());
  }

  const Digest qualifying_data = attestation_qualifying_data(nonce, certificate_der);
  auto signed_quote = key_.quote(tpm_, qualifying_data, pcrs);
  if (!signed_quote) return std::unexpected(signed_quote.error());

  // The values were read before TPM2_Quote. An extension in between would make the quoted
  // digest differ from them, and the client's check fail, so it is refused here.
  const auto attest = unmarshal_attest(signed_quote->attest);
  if (!attest) return fail(TpmError::command_failed, "the TPM returned a TPMS_ATTEST that does not unmarshal");
  const Digest digest = pcr_digest(*values);
  const auto& quoted = attest->attested.quote.pcrDigest;
  if (quoted.size != digest.size() || !std::equal(digest.begin(), digest.end(), quoted.buffer)) {
    return fail(TpmError::pcr_mismatch, "the PCR values changed between TPM2_PCR_Read and TPM2_Quote");
  }

  return Quote{.attest = std::move(signed_quote->attest),
               .signature = std::move(signed_quote->signature),
               .pcrs = pcrs,
               .pcr_values = std::move(*values),
               .events = events};
}

std::vector<Event> Attestor::events() const {
  std::lock_guard lock(mutex_);
  return log_.events();
}

}  // namespace licensing::tpm
