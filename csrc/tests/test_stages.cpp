// Table-driven tests of each stage on tiny hand-computed rows (llama.cpp's test-sampling style).
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "tokenwire/batch_sampler.h"

using namespace tokenwire;

namespace {
constexpr float kInf = std::numeric_limits<float>::infinity();

// Runs BatchSampler::process on one float32 row and returns the processed logits.
std::vector<float> process(const SamplingParams& p, std::vector<float> row, std::vector<int32_t> prompt = {},
                           std::vector<int32_t> generated = {}, int64_t vocab = -1) {
  BatchSampler s(vocab < 0 ? static_cast<int64_t>(row.size()) : vocab, 1);
  const int32_t slot = s.add(p, prompt);
  s.append(slot, generated.data(), static_cast<int64_t>(generated.size()));
  LogitsView v{row.data(), DType::kFloat32, 1, static_cast<int64_t>(row.size()), static_cast<int64_t>(row.size())};
  std::vector<float> out(row.size());
  s.process(v, &slot, out.data(), static_cast<int64_t>(row.size()));
  return out;
}

std::vector<float> log(std::vector<float> p) {
  for (auto& x : p) x = x > 0 ? std::log(x) : -kInf;
  return p;
}

void expect_row(const std::vector<float>& got, const std::vector<float>& want, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); ++i) {
    if (std::isinf(want[i])) {
      EXPECT_EQ(got[i], want[i]) << what << " id " << i;
    } else {
      EXPECT_NEAR(got[i], want[i], 1e-5) << what << " id " << i;
    }
  }
}

struct Case {
  std::string name;
  SamplingParams params;
  std::vector<float> row;
  std::vector<int32_t> prompt, generated;
  std::vector<float> want;
};

SamplingParams with(std::function<void(SamplingParams&)> f) {
  SamplingParams p;
  f(p);
  return p;
}
}  // namespace

TEST(Stages, TableOfHandComputedRows) {
  const std::vector<float> r = log({0.1f, 0.2f, 0.3f, 0.4f});
  const std::vector<float> q = log({0.3f, 0.1f, 0.1f, 0.5f});
  const std::vector<Case> cases = {
      {"neutral", {}, {1, 2, 3}, {}, {}, {1, 2, 3}},
      {"logit_bias", with([](auto& p) { p.logit_bias = {{0, 2.0f}, {2, -1.0f}}; }), {1, 2, 3}, {}, {}, {3, 2, 2}},
      {"repetition", with([](auto& p) { p.repetition_penalty = 2.0f; }), {1, -2, 3, 4}, {0, 1}, {1}, {0.5f, -4, 3, 4}},
      {"frequency_presence", with([](auto& p) { p.frequency_penalty = 0.5f; p.presence_penalty = 1.0f; }),
       {1, 2, 3}, {0}, {2, 2}, {1, 2, 3 - 1.0f - 1.0f}},
      {"no_repeat_ngram", with([](auto& p) { p.no_repeat_ngram_size = 2; }), {1, 2, 3, 4}, {1, 2, 1}, {}, {1, 2, -kInf, 4}},
      {"bad_words", with([](auto& p) { p.bad_words = {{3}, {1, 2}, {0, 1}}; }), {1, 2, 3, 4}, {0, 1}, {}, {1, 2, -kInf, -kInf}},
      // issue 19: a one-id bad word equal to an EOS id is dropped (transformers never bans EOS);
      // a longer word ending in EOS still bans it.
      {"bad_word_eos_alone", with([](auto& p) { p.bad_words = {{4}, {2}}; p.eos_token_ids = {4}; }), {1, 2, 3, 4, 5}, {0}, {}, {1, 2, -kInf, 4, 5}},
      {"bad_word_ending_in_eos", with([](auto& p) { p.bad_words = {{1, 4}}; p.eos_token_ids = {4}; }), {1, 2, 3, 4, 5}, {0, 1}, {}, {1, 2, 3, 4, -kInf}},
      {"min_new_tokens", with([](auto& p) { p.min_new_tokens = 2; p.eos_token_ids = {3}; }), {1, 2, 3, 4}, {0}, {1}, {1, 2, 3, -kInf}},
      {"min_new_tokens_reached", with([](auto& p) { p.min_new_tokens = 1; p.eos_token_ids = {3}; }), {1, 2, 3, 4}, {0}, {1}, {1, 2, 3, 4}},
      {"temperature", with([](auto& p) { p.temperature = 0.5f; }), {1, 2, 3}, {}, {}, {2, 4, 6}},
      {"top_k", with([](auto& p) { p.top_k = 2; }), r, {}, {}, {-kInf, -kInf, r[2], r[3]}},
      {"top_k_ties", with([](auto& p) { p.top_k = 2; }), {1, 3, 3, 3}, {}, {}, {-kInf, 3, 3, 3}},
      // top-p 0.6: 0.4 (< 0.6 before it: keep), 0.3 (0.4 before: keep), 0.2 (0.7 before: drop)
      {"top_p", with([](auto& p) { p.top_p = 0.6; }), r, {}, {}, {-kInf, -kInf, r[2], r[3]}},
      // exactly 0.7 before id 1: dropped, as transformers (cumsum <= 1 - p removes)
      {"top_p_exact_boundary", with([](auto& p) { p.top_p = 0.7; }), r, {}, {}, {-kInf, -kInf, r[2], r[3]}},
      {"top_p_past_boundary", with([](auto& p) { p.top_p = 0.71; }), r, {}, {}, {-kInf, r[1], r[2], r[3]}},
      // issue 19: (0.3, 0.1, 0.1, 0.5), top-p 0.8: the float32 cumsum 0.1, 0.2 <= float(1 - 0.8)
      // removes both 0.1s, as transformers' TopPLogitsWarper (a float top_p kept one of them)
      {"top_p_float32_boundary", with([](auto& p) { p.top_p = 0.8; }), q, {}, {}, {q[0], -kInf, -kInf, q[3]}},
      // min-p 0.6: keep p >= 0.24
      {"min_p", with([](auto& p) { p.min_p = 0.6; }), r, {}, {}, {-kInf, -kInf, r[2], r[3]}},
      {"greedy_skips_warpers", with([](auto& p) { p.greedy = true; p.top_k = 1; p.temperature = 0.5f; }), r, {}, {}, r},
  };
  for (const auto& c : cases) expect_row(process(c.params, c.row, c.prompt, c.generated), c.want, c.name);
}

TEST(Stages, TypicalMatchesDefinition) {
  // p = (0.1, 0.2, 0.3, 0.4): H = 1.2799; |-log p - H| = (1.023, 0.330, 0.076, 0.364)
  // order: id2 (0.3), id1 (0.2, 0.3 before), id3 (0.4, 0.5 before), id0
  const std::vector<float> r = log({0.1f, 0.2f, 0.3f, 0.4f});
  SamplingParams p;
  p.typical_p = 0.45;
  expect_row(process(p, r), {-kInf, r[1], r[2], -kInf}, "typical 0.45");
  p.typical_p = 0.55;
  expect_row(process(p, r), {-kInf, r[1], r[2], r[3]}, "typical 0.55");
}

TEST(Stages, VocabularyGuardHidesIdsBeyondTheTokenizer) {
  SamplingParams p;
  p.logit_bias = {{3, 100.0f}};
  auto out = process(p, {1, 2, 3, 50}, {}, {}, /*vocab=*/3);
  expect_row(out, {1, 2, 3, -kInf}, "guard");
  // Greedy never picks the id beyond the tokenizer even when its logit is the largest.
  BatchSampler s(3, 1);
  SamplingParams g;
  g.greedy = true;
  const int32_t slot = s.add(g, {});
  std::vector<float> row = {1, 2, 3, 50};
  LogitsView v{row.data(), DType::kFloat32, 1, 4, 4};
  int32_t id = -1;
  float lp = 0;
  int32_t rank = 0;
  s.step(v, &slot, StepOutputs{&id, &lp, &rank, nullptr, nullptr, 0}, true);
  EXPECT_EQ(id, 2);
}

TEST(Stages, NeutralValuesLeaveStagesOut) {
  SamplingParams p;
  EXPECT_EQ(Chain::build(p).stage_names(), std::vector<std::string>{"categorical"});
  p.top_k = 50;
  p.top_p = 0.9;
  p.repetition_penalty = 1.1f;
  EXPECT_EQ(Chain::build(p).stage_names(),
            (std::vector<std::string>{"repetition_penalty", "top_k", "top_p", "categorical"}));
  p.greedy = true;
  EXPECT_EQ(Chain::build(p).stage_names(), (std::vector<std::string>{"repetition_penalty", "greedy"}));
}
