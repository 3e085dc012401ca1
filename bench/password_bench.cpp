// Time of one Argon2id hash and one verification with the gateway's default parameters:
// the machine's login limit is cores / verification time.
#include <benchmark/benchmark.h>

#include "crypto/password.hpp"

namespace {

void BM_Argon2idHash(benchmark::State& state) {
  const licensing::crypto::Argon2Params params;
  for (auto _ : state) {
    auto hash = licensing::crypto::hash_password("correct horse battery staple", params);
    benchmark::DoNotOptimize(hash);
  }
}
BENCHMARK(BM_Argon2idHash)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_Argon2idVerify(benchmark::State& state) {
  const licensing::crypto::Argon2Params params;
  const auto hash = licensing::crypto::hash_password("correct horse battery staple", params);
  for (auto _ : state) {
    auto check = licensing::crypto::verify_password("correct horse battery staple", *hash, params);
    benchmark::DoNotOptimize(check);
  }
}
BENCHMARK(BM_Argon2idVerify)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
