#include "tpm_fixture.hpp"

#include <unistd.h>

#include <mutex>

namespace licensing::tpm::testing {
namespace {

std::filesystem::path run_root() {
  return std::filesystem::temp_directory_path() / ("licensing-tpm-test-" + std::to_string(::getpid()));
}

// Manufactures one TPM state per test program; each test copies it.
const std::filesystem::path& template_state() {
  static std::once_flag once;
  static std::filesystem::path state;
  std::call_once(once, [] {
    const auto candidate = run_root() / "template";
    auto provisioned = provision_swtpm({.state_directory = candidate, .ca_directory = run_root() / "localca"});
    if (provisioned) {
      state = candidate;
    } else {
      ADD_FAILURE() << "swtpm_setup: " << provisioned.error().detail;
    }
  });
  return state;
}

struct RunRootCleanup {
  ~RunRootCleanup() {
    std::error_code ignored;
    std::filesystem::remove_all(run_root(), ignored);
  }
} cleanup_at_exit;

}  // namespace

void TpmTest::SetUp() {
  const auto& source = template_state();
  ASSERT_FALSE(source.empty());

  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  directory_ = run_root() / (std::string(info->test_suite_name()) + "." + info->name());
  tpm_state_ = directory_ / "tpm";
  attestor_state_ = directory_ / "attestor";
  std::filesystem::remove_all(directory_);
  std::filesystem::create_directories(tpm_state_);
  std::filesystem::permissions(directory_, std::filesystem::perms::owner_all);
  std::filesystem::permissions(tpm_state_, std::filesystem::perms::owner_all);
  std::filesystem::copy_file(source / "tpm2-00.permall", tpm_state_ / "tpm2-00.permall");

  auto started = SwtpmProcess::start({.state_directory = tpm_state_});
  ASSERT_TRUE(started.has_value()) << started.error().detail;
  swtpm_ = std::make_unique<SwtpmProcess>(std::move(*started));
}

void TpmTest::TearDown() {
  swtpm_.reset();
  std::error_code ignored;
  std::filesystem::remove_all(directory_, ignored);
}

void TpmTest::restart_swtpm() {
  swtpm_.reset();
  auto started = SwtpmProcess::start({.state_directory = tpm_state_});
  ASSERT_TRUE(started.has_value()) << started.error().detail;
  swtpm_ = std::make_unique<SwtpmProcess>(std::move(*started));
}

TpmContext TpmTest::open_context() {
  auto context = TpmContext::open(swtpm_->tcti_config());
  if (!context) throw std::runtime_error("TpmContext::open: " + context.error().detail);
  return std::move(*context);
}

std::unique_ptr<Attestor> TpmTest::open_attestor(std::vector<std::uint32_t> boot_pcrs) {
  auto attestor = Attestor::open(open_context(), {.state_directory = attestor_state_, .event_pcr = 23,
                                                  .boot_pcrs = std::move(boot_pcrs)});
  if (!attestor) throw std::runtime_error("Attestor::open: " + attestor.error().detail);
  return std::move(*attestor);
}

std::vector<std::uint8_t> certificate_bytes(const std::string& label) {
  const std::string text = "certificate DER stand-in: " + label;
  return {text.begin(), text.end()};
}

std::string sha256_hex(const std::vector<std::uint8_t>& bytes) {
  return crypto::ossl::to_hex(crypto::ossl::sha256(bytes));
}

std::vector<std::uint8_t> nonce_bytes(std::uint8_t fill, std::size_t size) {
  std::vector<std::uint8_t> nonce(size, fill);
  nonce[0] = static_cast<std::uint8_t>(size);
  return nonce;
}

}  // namespace licensing::tpm::testing
