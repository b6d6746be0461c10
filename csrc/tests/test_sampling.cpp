// The selector, the RNG contract, logprobs, dtypes and the candidate extraction.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "tokenwire/batch_sampler.h"
#include "tokenwire/kernels.h"
#include "tokenwire/rng.h"

using namespace tokenwire;

namespace {
std::vector<float> random_rows(int64_t rows, int64_t vocab, uint32_t seed) {
  std::mt19937 g(seed);
  std::normal_distribution<float> d(0.0f, 3.0f);
  std::vector<float> x(rows * vocab);
  for (auto& v : x) v = d(g);
  return x;
}

uint16_t to_bf16(float f) {
  uint32_t b;
  std::memcpy(&b, &f, 4);
  return static_cast<uint16_t>(b >> 16);
}
}  // namespace

TEST(Rng, PhiloxIsAPureFunctionOfSeedStreamPosition) {
  EXPECT_EQ(uniform01(7, 0, 3), uniform01(7, 0, 3));
  EXPECT_NE(uniform01(7, 0, 3), uniform01(7, 0, 4));
  EXPECT_NE(uniform01(7, 0, 3), uniform01(8, 0, 3));
  EXPECT_NE(uniform01(7, 0, 3), uniform01(7, 1, 3));
  double mean = 0;
  for (int i = 0; i < 10000; ++i) mean += uniform01(1, 0, i);
  EXPECT_NEAR(mean / 10000, 0.5, 0.01);
}

TEST(Kernels, TopCandidatesHoldTheTrueTopK) {
  const int64_t V = 50000;
  auto x = random_rows(1, V, 3);
  LogitsView v{x.data(), DType::kFloat32, 1, V, V};
  std::vector<float> sorted(x);
  std::sort(sorted.begin(), sorted.end(), std::greater<float>());
  for (int64_t k : {1, 5, 50, 1000, 20000}) {
    std::vector<Candidate> out;
    std::vector<float> buf;
    kernels::top_candidates(RowRef(v, 0), V, k, {}, nullptr, out, buf);
    std::sort(out.begin(), out.end(), ranks_before);
    ASSERT_GE(out.size(), static_cast<size_t>(k));
    for (int64_t i = 0; i < k; ++i) EXPECT_EQ(out[i].logit, sorted[i]) << "k=" << k << " i=" << i;
  }
}

TEST(Kernels, LogSumExpAndCount) {
  auto x = random_rows(1, 10007, 5);
  double m = -1e30, s = 0;
  for (float v : x) m = std::max<double>(m, v);
  for (float v : x) s += std::exp(v - m);
  EXPECT_NEAR(kernels::log_sum_exp(x.data(), 10007), m + std::log(s), 1e-5);
  int64_t c = 0;
  for (float v : x) c += v > 1.0f;
  EXPECT_EQ(kernels::count_greater(x.data(), 10007, 1.0f), c);
}

TEST(Sampling, SameSeedSameTokensWhateverTheBatch) {
  const int64_t V = 1000;
  auto x = random_rows(4, V, 11);
  SamplingParams p;
  p.top_k = 40;
  p.temperature = 0.9f;
  p.seed = 1234;
  auto run = [&](int batch_pos, int threads) {
    BatchSampler s(V, threads);
    std::vector<int32_t> slots;
    SamplingParams other;
    other.seed = 99;
    for (int i = 0; i < 4; ++i) slots.push_back(s.add(i == batch_pos ? p : other, {1, 2, 3}));
    std::vector<int32_t> got;
    for (int step = 0; step < 20; ++step) {
      std::vector<float> rows(4 * V);
      for (int i = 0; i < 4; ++i) std::copy(x.begin() + step % 4 * V, x.begin() + (step % 4 + 1) * V, rows.begin() + i * V);
      LogitsView v{rows.data(), DType::kFloat32, 4, V, V};
      std::vector<int32_t> ids(4), ranks(4);
      std::vector<float> lps(4);
      s.step(v, slots.data(), StepOutputs{ids.data(), lps.data(), ranks.data(), nullptr, nullptr, 0}, true);
      got.push_back(ids[batch_pos]);
    }
    return got;
  };
  const auto ref = run(0, 1);
  EXPECT_EQ(run(3, 1), ref);
  EXPECT_EQ(run(2, 2), ref);
}

TEST(Sampling, ProcessedAndRawLogprobs) {
  std::vector<float> row = {0.0f, 1.0f, 2.0f, 3.0f};
  const double lse = std::log(std::exp(0.0) + std::exp(1.0) + std::exp(2.0) + std::exp(3.0));
  for (auto mode : {LogprobsMode::kProcessed, LogprobsMode::kRaw}) {
    BatchSampler s(4, 1);
    SamplingParams p;
    p.greedy = true;
    p.logprobs = true;
    p.top_logprobs = 2;
    p.logprobs_mode = mode;
    const int32_t slot = s.add(p, {});
    LogitsView v{row.data(), DType::kFloat32, 1, 4, 4};
    int32_t id, rank, top_ids[3];
    float lp, top_lps[3];
    s.step(v, &slot, StepOutputs{&id, &lp, &rank, top_ids, top_lps, 3}, true);
    EXPECT_EQ(id, 3);
    EXPECT_EQ(rank, 1);
    EXPECT_NEAR(lp, 3 - lse, 1e-6);
    EXPECT_EQ(top_ids[0], 3);
    EXPECT_EQ(top_ids[1], 2);
    EXPECT_EQ(top_ids[2], -1);  // the row asked for 2
    EXPECT_NEAR(top_lps[1], 2 - lse, 1e-6);
  }
}

TEST(Sampling, HalfPrecisionRowsGiveTheSameTokens) {
  const int64_t V = 5000;
  auto x = random_rows(2, V, 17);
  std::vector<uint16_t> h(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    h[i] = to_bf16(x[i]);
    x[i] = bf16_to_float(h[i]);  // the same values, exactly
  }
  SamplingParams p;
  p.top_k = 20;
  p.top_p = 0.8;
  p.seed = 5;
  p.repetition_penalty = 1.3f;
  std::vector<int32_t> ids32(2), ids16(2), ranks(2);
  std::vector<float> lps(2);
  for (auto [data, dtype, ids] : {std::tuple{static_cast<const void*>(x.data()), DType::kFloat32, &ids32},
                                  std::tuple{static_cast<const void*>(h.data()), DType::kBFloat16, &ids16}}) {
    BatchSampler s(V, 1);
    std::vector<int32_t> slots = {s.add(p, {1, 2, 3}), s.add(p, {4})};
    LogitsView v{data, dtype, 2, V, V};
    s.step(v, slots.data(), StepOutputs{ids->data(), lps.data(), ranks.data(), nullptr, nullptr, 0}, true);
  }
  EXPECT_EQ(ids32, ids16);
}

TEST(Sampling, Float16Conversion) {
  EXPECT_EQ(f16_to_float(0x3c00), 1.0f);
  EXPECT_EQ(f16_to_float(0xc000), -2.0f);
  EXPECT_EQ(f16_to_float(0x0001), std::ldexp(1.0f, -24));  // smallest subnormal
  EXPECT_TRUE(std::isinf(f16_to_float(0xfc00)) && f16_to_float(0xfc00) < 0);
  EXPECT_TRUE(std::isnan(f16_to_float(0x7e00)));
}
