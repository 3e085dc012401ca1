#include "tpm/event_log.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <string>
#include <system_error>

#include "common/json.hpp"
#include "common/logging.hpp"

namespace licensing::tpm {
namespace {

constexpr std::size_t max_id_length = 256;
// The longest log the attestor reads, 64 MiB; about 200,000 events.
constexpr std::size_t max_log_bytes = 64U << 20;

std::string errno_text(int error) { return std::error_code(error, std::generic_category()).message(); }

bool is_lower_hex_digest(const std::string& text) {
  return text.size() == 64 &&
         std::all_of(text.begin(), text.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

std::optional<std::string> id_problem(const std::string& name, const std::string& value) {
  if (value.empty() || value.size() > max_id_length) return name + " must be 1 to 256 bytes";
  const bool has_forbidden = std::any_of(value.begin(), value.end(), [](char c) {
    const auto byte = static_cast<unsigned char>(c);
    return c == '|' || byte < 0x20 || byte == 0x7F;
  });
  if (has_forbidden) return name + " contains '|' or a control character";
  return std::nullopt;
}

// Owns a file descriptor.
class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }

 private:
  int fd_;
};

TpmResult<void> write_all(int fd, std::string_view bytes, const std::filesystem::path& path) {
  while (!bytes.empty()) {
    const ssize_t written = ::write(fd, bytes.data(), bytes.size());
    if (written < 0 && errno == EINTR) continue;
    if (written <= 0) return fail(TpmError::io, "write " + path.string() + ": " + errno_text(errno));
    bytes.remove_prefix(static_cast<std::size_t>(written));
  }
  return {};
}

}  // namespace

std::optional<std::string> event_problem(const Event& event) {
  if (event.seq == 0) return "seq must be at least 1";
  if (auto problem = id_problem("enclave_id", event.enclave_id)) return problem;
  if (auto problem = id_problem("owner", event.owner)) return problem;
  if (!is_lower_hex_digest(event.certificate_sha256)) return "certificate_sha256 is not 64 lowercase hex digits";
  if (!is_lower_hex_digest(event.image_sha256)) return "image_sha256 is not 64 lowercase hex digits";
  return std::nullopt;
}

Digest event_digest(const Event& event) {
  const std::string text = "enclave-event-v1|" + std::to_string(event.seq) + "|" + event.enclave_id + "|" +
                           event.owner + "|" + event.certificate_sha256 + "|" + event.image_sha256;
  return crypto::ossl::sha256(text);
}

Digest replay_events(std::span<const Event> events) {
  Digest pcr{};
  for (const auto& event : events) {
    const Digest digest = event_digest(event);
    std::vector<std::uint8_t> input(pcr.begin(), pcr.end());
    input.insert(input.end(), digest.begin(), digest.end());
    pcr = crypto::ossl::sha256(input);
  }
  return pcr;
}

nlohmann::json event_to_json(const Event& event) {
  return {
      {"seq", event.seq},
      {"enclave_id", event.enclave_id},
      {"owner", event.owner},
      {"certificate_sha256", event.certificate_sha256},
      {"image_sha256", event.image_sha256},
      {"digest", crypto::ossl::to_hex(event_digest(event))},
  };
}

std::expected<Event, std::string> event_from_json(const nlohmann::json& value) {
  if (!value.is_object()) return std::unexpected("an event is not a JSON object");
  if (!value.contains("seq") || !value["seq"].is_number_unsigned()) {
    return std::unexpected("an event has no unsigned integer \"seq\"");
  }
  for (const char* field : {"enclave_id", "owner", "certificate_sha256", "image_sha256", "digest"}) {
    if (!value.contains(field) || !value[field].is_string()) {
      return std::unexpected(std::string("an event has no string \"") + field + "\"");
    }
  }

  Event event{
      .seq = value["seq"].get<std::uint64_t>(),
      .enclave_id = value["enclave_id"].get<std::string>(),
      .owner = value["owner"].get<std::string>(),
      .certificate_sha256 = value["certificate_sha256"].get<std::string>(),
      .image_sha256 = value["image_sha256"].get<std::string>(),
  };
  if (auto problem = event_problem(event)) return std::unexpected("event " + std::to_string(event.seq) + ": " + *problem);

  const std::string expected = crypto::ossl::to_hex(event_digest(event));
  const std::string seen = value["digest"].get<std::string>();
  if (!constant_time_equal(expected, seen)) {
    return std::unexpected("event " + std::to_string(event.seq) + ": digest expected " + expected + ", seen " + seen);
  }
  return event;
}

TpmResult<EventLogFile> EventLogFile::open(const std::filesystem::path& path) {
  EventLogFile log;
  log.path_ = path;

  Fd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (fd.get() < 0) return fail(TpmError::io, "open " + path.string() + ": " + errno_text(errno));

  std::string contents;
  char buffer[8192];
  while (true) {
    const ssize_t count = ::read(fd.get(), buffer, sizeof(buffer));
    if (count < 0 && errno == EINTR) continue;
    if (count < 0) return fail(TpmError::io, "read " + path.string() + ": " + errno_text(errno));
    if (count == 0) break;
    contents.append(buffer, static_cast<std::size_t>(count));
    if (contents.size() > max_log_bytes) return fail(TpmError::state_invalid, path.string() + " is above 64 MiB");
  }

  // A last line without '\n' is an append that never completed; its event was never
  // extended, so cutting it off restores the state before the append.
  const std::size_t complete = contents.empty() ? 0 : contents.rfind('\n') + 1;
  if (complete != contents.size()) {
    logging::warn("event_log_torn_line_removed", {{"path", path.string()}, {"bytes", contents.size() - complete}});
    if (::ftruncate(fd.get(), static_cast<off_t>(complete)) != 0 || ::fsync(fd.get()) != 0) {
      return fail(TpmError::io, "truncate " + path.string() + ": " + errno_text(errno));
    }
    contents.resize(complete);
  }

  std::size_t start = 0;
  while (start < contents.size()) {
    const std::size_t end = contents.find('\n', start);
    const std::string_view line(contents.data() + start, end - start);
    start = end + 1;

    auto parsed = json::parse_strict(line, 4);
    if (!parsed) return fail(TpmError::state_invalid, path.string() + ": a line is not JSON: " + parsed.error().detail);
    auto event = event_from_json(*parsed);
    if (!event) return fail(TpmError::state_invalid, path.string() + ": " + event.error());
    if (event->seq != log.events_.size() + 1) {
      return fail(TpmError::state_invalid, path.string() + ": seq " + std::to_string(event->seq) + " follows " +
                                               std::to_string(log.events_.size()));
    }
    log.events_.push_back(std::move(*event));
  }
  return log;
}

TpmResult<Event> EventLogFile::append(Event event) {
  event.seq = events_.size() + 1;
  if (auto problem = event_problem(event)) return fail(TpmError::invalid_argument, *problem);

  Fd fd(::open(path_.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC | O_NOFOLLOW));
  if (fd.get() < 0) return fail(TpmError::io, "open " + path_.string() + ": " + errno_text(errno));
  const off_t size_before = ::lseek(fd.get(), 0, SEEK_END);
  if (size_before < 0) return fail(TpmError::io, "seek " + path_.string() + ": " + errno_text(errno));

  const std::string line = event_to_json(event).dump() + "\n";
  if (auto written = write_all(fd.get(), line, path_); !written) {
    // Cut a partly written line off now, so a later append does not follow it.
    if (::ftruncate(fd.get(), size_before) != 0) logging::error("event_log_truncate_failed", {{"path", path_.string()}});
    return std::unexpected(written.error());
  }
  if (::fsync(fd.get()) != 0) return fail(TpmError::io, "fsync " + path_.string() + ": " + errno_text(errno));

  events_.push_back(event);
  return event;
}

}  // namespace licensing::tpm
