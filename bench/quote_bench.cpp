// The raw quote time of a TPM: TPM2_Quote with the core's attestation key over PCR 23, in a
// loop, with nothing around it (no event log, no gRPC, no HTTP). It runs on the state
// directory of a stopped licensing-core, so it measures the same TPM that served the
// attestations. Prints one JSON object.
//
//   bench_quote --state DATA_DIR/tpm [--count 200]
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <iostream>
#include <vector>

#include "common/logging.hpp"
#include "tpm/attestation_key.hpp"
#include "tpm/swtpm_process.hpp"
#include "tpm/tpm_context.hpp"

int main(int argc, char** argv) {
  std::string state;
  int count = 200;
  CLI::App app{"bench_quote: raw TPM2_Quote latency with the core's attestation key"};
  app.add_option("--state", state, "licensing-core's DATA_DIR/tpm (the core must be stopped)")->required();
  app.add_option("--count", count, "Quotes to time")->check(CLI::Range(1, 100000));
  CLI11_PARSE(app, argc, argv);
  licensing::logging::init("bench_quote", "warn");  // stdout carries only the result

  licensing::tpm::SwtpmOptions options;
  options.state_directory = std::filesystem::path(state) / "swtpm";
  auto swtpm = licensing::tpm::SwtpmProcess::start(options);
  if (!swtpm) {
    std::cerr << "error: cannot start swtpm on " << state << ": " << swtpm.error().detail << "\n";
    return 1;
  }
  auto tpm = licensing::tpm::TpmContext::open(swtpm->tcti_config());
  if (!tpm) {
    std::cerr << "error: cannot open the TPM: " << tpm.error().detail << "\n";
    return 1;
  }
  auto key = licensing::tpm::AttestationKey::load_or_create(*tpm, state);
  if (!key) {
    std::cerr << "error: cannot load the attestation key: " << key.error().detail << "\n";
    return 1;
  }

  const std::array<std::uint32_t, 1> pcrs = {23};
  std::array<std::uint8_t, 32> qualifying_data{};
  std::vector<double> milliseconds;
  milliseconds.reserve(static_cast<std::size_t>(count));
  for (int index = 0; index < count; ++index) {
    qualifying_data[0] = static_cast<std::uint8_t>(index);
    const auto started = std::chrono::steady_clock::now();
    auto quote = key->quote(*tpm, qualifying_data, pcrs);
    const auto elapsed = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count();
    if (!quote) {
      std::cerr << "error: quote " << index << " failed: " << quote.error().detail << "\n";
      return 1;
    }
    milliseconds.push_back(elapsed);
  }
  std::sort(milliseconds.begin(), milliseconds.end());
  const auto percentile = [&](double fraction) {
    return milliseconds[std::min(milliseconds.size() - 1, static_cast<std::size_t>(fraction * milliseconds.size()))];
  };
  double total = 0;
  for (const double value : milliseconds) total += value;
  std::cout << nlohmann::json{{"quotes", count},
                              {"median_ms", percentile(0.5)},
                              {"p99_ms", percentile(0.99)},
                              {"quotes_per_s", 1000.0 * count / total}}
                   .dump()
            << "\n";
  return 0;
}
