// The token-mask stage (6b): on its own, in greedy / sampled / beam rows, and its errors.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "tokenwire/batch_sampler.h"
#include "tokenwire/beam.h"
#include "tokenwire/token_mask.h"

using namespace tokenwire;

namespace {
constexpr float kInf = std::numeric_limits<float>::infinity();

std::vector<uint32_t> mask_of(int64_t vocab, const std::vector<int32_t>& allowed, int64_t words = -1) {
  std::vector<uint32_t> m(words < 0 ? (vocab + 31) / 32 : words, 0u);
  for (int32_t t : allowed) m[t / 32] |= 1u << (t % 32);
  return m;
}

std::vector<float> random_row(int64_t vocab, uint32_t seed) {
  std::mt19937 g(seed);
  std::normal_distribution<float> d(0.0f, 3.0f);
  std::vector<float> x(vocab);
  for (auto& v : x) v = d(g);
  return x;
}

struct One {
  int32_t token;
  float logprob;
};

// One step of one row, optionally masked.
One step_one(const SamplingParams& p, const std::vector<float>& row, const std::vector<uint32_t>* mask,
             std::vector<int32_t> prompt = {}) {
  const int64_t V = static_cast<int64_t>(row.size());
  BatchSampler s(V, 1);
  const int32_t slot = s.add(p, prompt);
  LogitsView v{row.data(), DType::kFloat32, 1, V, V};
  TokenMask m;
  if (mask) m = TokenMask{mask->data(), 1, static_cast<int64_t>(mask->size()), nullptr};
  One o{-1, 0};
  int32_t rank = 0;
  s.step(v, &slot, StepOutputs{&o.token, &o.logprob, &rank, nullptr, nullptr, 0}, true, m);
  return o;
}

std::vector<float> premasked(std::vector<float> row, const std::vector<uint32_t>& mask) {
  for (size_t t = 0; t < row.size(); ++t) {
    if (!token_allowed(mask.data(), static_cast<int64_t>(t))) row[t] = -kInf;
  }
  return row;
}

SamplingParams sampled(uint64_t seed) {
  SamplingParams p;
  p.seed = seed;
  p.temperature = 0.8f;
  p.top_k = 20;
  p.top_p = 0.9;
  p.repetition_penalty = 1.3f;
  p.logit_bias = {{3, 2.0f}, {40, -1.0f}};
  p.logprobs = true;
  return p;
}
}  // namespace

TEST(TokenMask, CountAndFirstAllowedRespectTheLimit) {
  const auto m = mask_of(70, {5, 33, 64, 69});
  EXPECT_EQ(count_allowed(m.data(), 70), 4);
  EXPECT_EQ(count_allowed(m.data(), 65), 3);  // 69 is beyond the limit, in the same word
  EXPECT_EQ(count_allowed(m.data(), 64), 2);
  EXPECT_EQ(first_allowed(m.data(), 70), 5);
  EXPECT_EQ(first_allowed(m.data(), 5), -1);
}

TEST(TokenMask, ProcessSetsDisallowedIdsToMinusInfinity) {
  const std::vector<float> row = {1, 5, 3, 4, 2};
  const auto m = mask_of(5, {0, 2, 3});
  for (bool greedy : {true, false}) {
    SamplingParams p;
    p.greedy = greedy;
    BatchSampler s(5, 1);
    const int32_t slot = s.add(p, {});
    LogitsView v{row.data(), DType::kFloat32, 1, 5, 5};
    std::vector<float> out(5);
    s.process(v, &slot, out.data(), 5, TokenMask{m.data(), 1, 1, nullptr});
    EXPECT_EQ(out, (std::vector<float>{1, -kInf, 3, 4, -kInf})) << "greedy=" << greedy;
  }
}

TEST(TokenMask, GreedyPicksTheBestAllowedAndNormalisesOverAllowedIds) {
  const std::vector<float> row = {1, 5, 3, 4, 2};
  SamplingParams p;
  p.greedy = true;
  p.logprobs = true;
  const auto m = mask_of(5, {0, 2, 3});
  const One o = step_one(p, row, &m);
  EXPECT_EQ(o.token, 3);
  const double lse = std::log(std::exp(1.0) + std::exp(3.0) + std::exp(4.0));
  EXPECT_NEAR(o.logprob, 4.0 - lse, 1e-6);
}

TEST(TokenMask, MaskedEqualsPremaskedRowsForGreedyAndSampling) {
  const int64_t V = 3000;
  for (uint32_t seed = 0; seed < 20; ++seed) {
    const auto row = random_row(V, seed);
    std::mt19937 g(seed + 100);
    std::vector<int32_t> allowed;
    const double density = seed % 3 == 0 ? 0.5 : seed % 3 == 1 ? 0.01 : 0.0005;
    std::bernoulli_distribution keep(density);
    for (int32_t t = 0; t < V; ++t) {
      if (keep(g)) allowed.push_back(t);
    }
    if (allowed.empty()) allowed.push_back(static_cast<int32_t>(seed * 37 % V));
    const auto m = mask_of(V, allowed);
    const auto pre = premasked(row, m);
    for (bool greedy : {true, false}) {
      SamplingParams p = sampled(seed);
      p.greedy = greedy;
      const std::vector<int32_t> prompt = {3, 40, allowed[0], 7};
      const One a = step_one(p, row, &m, prompt);
      const One b = step_one(p, pre, nullptr, prompt);
      EXPECT_EQ(a.token, b.token) << "seed " << seed << " greedy " << greedy;
      EXPECT_EQ(a.logprob, b.logprob) << "seed " << seed << " greedy " << greedy;
      EXPECT_TRUE(token_allowed(m.data(), a.token));
    }
  }
}

TEST(TokenMask, EditsBanningEveryAllowedIdFallBackToTheUneditedAllowedIds) {
  const std::vector<float> row = {1, 5, 3, 4, 2};
  const auto m = mask_of(5, {2, 4});
  SamplingParams p;
  p.greedy = true;
  p.logprobs = true;
  p.bad_words = {{2}, {4}};
  const One o = step_one(p, row, &m);
  EXPECT_EQ(o.token, 2);
  EXPECT_NEAR(o.logprob, 3.0 - std::log(std::exp(3.0) + std::exp(2.0)), 1e-6);
  // Only some allowed ids banned: no fallback, the edits hold.
  p.bad_words = {{2}};
  EXPECT_EQ(step_one(p, row, &m).token, 4);
  // Sampling rows too, and an allowed set whose logits are all -inf picks its lowest id.
  p.greedy = false;
  p.bad_words = {{2}, {4}};
  p.top_k = 1;
  EXPECT_EQ(step_one(p, row, &m).token, 2);
  std::vector<float> dead = {1, 5, -kInf, 4, -kInf};
  EXPECT_EQ(step_one(p, dead, &m).token, 2);
}

TEST(TokenMask, InactiveRowsAreUnconstrained) {
  const int64_t V = 100;
  auto x = random_row(V, 1);
  std::vector<float> rows(x);
  rows.insert(rows.end(), x.begin(), x.end());
  SamplingParams p;
  p.greedy = true;
  BatchSampler s(V, 1);
  const int32_t slots[2] = {s.add(p, {}), s.add(p, {})};
  std::vector<uint32_t> m(2 * 4, 0u);  // row 0 allows nothing but is inactive
  m[4] = 1u << 7;                      // row 1 allows id 7 only
  const uint8_t active[2] = {0, 1};
  int32_t ids[2];
  float lps[2];
  int32_t ranks[2];
  LogitsView v{rows.data(), DType::kFloat32, 2, V, V};
  s.step(v, slots, StepOutputs{ids, lps, ranks, nullptr, nullptr, 0}, true, TokenMask{m.data(), 2, 4, active});
  EXPECT_EQ(ids[0], std::max_element(x.begin(), x.end()) - x.begin());
  EXPECT_EQ(ids[1], 7);
}

TEST(TokenMask, BadMasksThrowBeforeAnyRowMoves) {
  const int64_t V = 100;
  auto x = random_row(V, 2);
  std::vector<float> rows(x);
  rows.insert(rows.end(), x.begin(), x.end());
  BatchSampler s(V, 1);
  SamplingParams p;
  const int32_t slots[2] = {s.add(p, {}), s.add(p, {})};
  LogitsView v{rows.data(), DType::kFloat32, 2, V, V};
  int32_t ids[2];
  const StepOutputs out{ids, nullptr, nullptr, nullptr, nullptr, 0};
  auto msg = [&](const TokenMask& m) {
    try {
      s.step(v, slots, out, true, m);
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  std::vector<uint32_t> m(2 * 4, ~0u);
  m[4] = m[5] = m[6] = 0;
  m[7] = 0xfffffff0u;  // row 1: only ids 100-127, all beyond the vocabulary
  EXPECT_NE(msg(TokenMask{m.data(), 2, 4, nullptr}).find("row 1 allows no token"), std::string::npos);
  EXPECT_NE(msg(TokenMask{m.data(), 2, 3, nullptr}).find("needs at least ceil(100 / 32) = 4"), std::string::npos);
  EXPECT_NE(msg(TokenMask{m.data(), 1, 4, nullptr}).find("token_mask has 1 rows"), std::string::npos);
  EXPECT_EQ(s.generated(slots[0]), 0);  // row 0 was fine, but nothing moved
  std::vector<float> out_rows(2 * V);
  EXPECT_THROW(s.process(v, slots, out_rows.data(), V, TokenMask{m.data(), 2, 4, nullptr}), std::invalid_argument);
}

TEST(TokenMask, BeamsOnlyExtendWithAllowedIdsAndKeepUnnormalisedLogProbs) {
  const int64_t V = 8;
  BeamParams bp;
  bp.num_beams = 2;
  bp.max_new_tokens = 1;
  bp.num_return_sequences = 2;
  BeamSearch b(bp, {1}, V);
  Workspace ws;
  std::vector<float> row = {0, 1, 2, 3, 4, 5, 6, 7};
  const auto m = mask_of(V, {1, 2});
  int32_t parents[2], tokens[2];
  b.step(LogitsView{row.data(), DType::kFloat32, 1, V, V}, 0, parents, tokens, ws, TokenMask{m.data(), 1, 1, nullptr});
  EXPECT_EQ(tokens[0], 2);
  EXPECT_EQ(tokens[1], 1);
  double lse = 0;
  for (float v : row) lse += std::exp(v);
  lse = std::log(lse);
  auto h = b.hypotheses();
  ASSERT_EQ(h.size(), 2u);
  EXPECT_NEAR(h[0].score, 2.0 - lse, 1e-5);  // the row's log_softmax, not renormalised over {1, 2}
  EXPECT_NEAR(h[1].score, 1.0 - lse, 1e-5);
}

TEST(TokenMask, BeamFallbackAndErrors) {
  const int64_t V = 8;
  BeamParams bp;
  bp.num_beams = 1;
  bp.max_new_tokens = 3;
  bp.edits.bad_words = {{5}};
  std::vector<float> row = {0, 1, 2, 3, 4, 9, 6, 7};
  int32_t parents[1], tokens[1];
  Workspace ws;
  {
    BeamSearch b(bp, {1}, V);
    const auto m = mask_of(V, {5});  // bad_words bans the only allowed id: it is chosen anyway
    b.step(LogitsView{row.data(), DType::kFloat32, 1, V, V}, 0, parents, tokens, ws, TokenMask{m.data(), 1, 1, nullptr});
    EXPECT_EQ(tokens[0], 5);
  }
  BeamSearch b(bp, {1}, V);
  const std::vector<uint32_t> none = {0u};
  EXPECT_THROW(
      b.step(LogitsView{row.data(), DType::kFloat32, 1, V, V}, 0, parents, tokens, ws, TokenMask{none.data(), 1, 1, nullptr}),
      std::invalid_argument);
  EXPECT_EQ(b.generated(), 0);
  ThreadPool pool(1);
  std::vector<Workspace> wss(1);
  const std::vector<uint32_t> two = {1u, 1u};
  EXPECT_THROW(step_beams({&b}, LogitsView{row.data(), DType::kFloat32, 1, V, V}, pool, wss, parents, tokens,
                          TokenMask{two.data(), 2, 1, nullptr}),
               std::invalid_argument);
}
