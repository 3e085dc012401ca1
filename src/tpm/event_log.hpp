// The measured event log: one event per issued enclave certificate, each extended into
// one PCR of the SHA-256 bank. Replaying the log from the PCR's value after a reset
// (32 zero bytes) with pcr = SHA-256(pcr || digest) gives the PCR value.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "tpm/tpm_context.hpp"

namespace licensing::tpm {

struct Event {
  std::uint64_t seq = 0;  // 1 for the first event, then contiguous
  std::string enclave_id;
  std::string owner;               // the user's id, never the username
  std::string certificate_sha256;  // lowercase hex of SHA-256 over the certificate's DER
  std::string image_sha256;        // lowercase hex of the enclave image's SHA-256

  bool operator==(const Event&) const = default;
};

// Returns what makes `event` unusable, or nullopt: ids must be 1 to 256 bytes without '|'
// or control characters (so the digest text has one reading), digests 64 lowercase hex.
std::optional<std::string> event_problem(const Event& event);

// SHA-256 of the UTF-8 text
// "enclave-event-v1|<seq>|<enclave_id>|<owner>|<certificate_sha256>|<image_sha256>".
Digest event_digest(const Event& event);

// The PCR value after extending every event's digest, in order, into 32 zero bytes.
Digest replay_events(std::span<const Event> events);

// {"seq", "enclave_id", "owner", "certificate_sha256", "image_sha256", "digest"}.
nlohmann::json event_to_json(const Event& event);

// Parses one event object and checks its fields with event_problem and its "digest"
// against event_digest. Returns the reason on failure.
std::expected<Event, std::string> event_from_json(const nlohmann::json& value);

// The log on disk: JSON lines, one event each, appended with O_APPEND and fsync.
//
// Crash contract: append() makes the line durable before the caller extends the PCR.
// A crash during the write leaves a last line without '\n', which open() cuts off (that
// event was never extended). A crash between append() and the extension leaves the PCR
// one event behind the log, which the attestor repairs at start.
class EventLogFile {
 public:
  // Opens or creates `path` (mode 0600), reads every event and checks that seq runs 1, 2, ...
  static TpmResult<EventLogFile> open(const std::filesystem::path& path);

  const std::vector<Event>& events() const { return events_; }

  // Assigns the next seq to `event`, writes it and fsyncs. Rejects an invalid event with
  // invalid_argument before writing anything.
  TpmResult<Event> append(Event event);

 private:
  std::filesystem::path path_;
  std::vector<Event> events_;
};

}  // namespace licensing::tpm
