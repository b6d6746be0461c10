// Beam bookkeeping on hand-made log-prob tables.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "tokenwire/beam.h"

using namespace tokenwire;

namespace {
// Rows of logits whose log_softmax is log(p).
std::vector<float> rows_of(const std::vector<std::vector<float>>& probs) {
  std::vector<float> out;
  for (const auto& r : probs) {
    for (float p : r) out.push_back(std::log(p));
  }
  return out;
}
}  // namespace

TEST(Beam, TwoBeamsEndOnEosAndKeepParentPointers) {
  BeamParams bp;
  bp.num_beams = 2;
  bp.max_new_tokens = 3;
  bp.eos_token_ids = {0};
  bp.length_penalty = 1.0;
  BeamSearch b(bp, {5, 6}, 4);
  Workspace ws;
  int32_t parents[2], tokens[2];
  // Step 1 (one row): tokens 1 (0.5) and 2 (0.3).
  auto r1 = rows_of({{0.1f, 0.5f, 0.3f, 0.1f}});
  b.step(LogitsView{r1.data(), DType::kFloat32, 1, 4, 4}, 0, parents, tokens, ws);
  EXPECT_EQ(tokens[0], 1);
  EXPECT_EQ(tokens[1], 2);
  EXPECT_EQ(parents[0], 0);
  EXPECT_EQ(parents[1], 0);
  // Step 2: beam 0 (after 1) says EOS 0.9; beam 1 (after 2) says 3 with 0.9.
  auto r2 = rows_of({{0.9f, 0.04f, 0.03f, 0.03f}, {0.05f, 0.025f, 0.025f, 0.9f}});
  b.step(LogitsView{r2.data(), DType::kFloat32, 2, 4, 4}, 0, parents, tokens, ws);
  // Candidates: [1,0] 0.45 (EOS, finished), [2,3] 0.27, [1,1] 0.02, ...
  EXPECT_EQ(tokens[0], 3);
  EXPECT_EQ(parents[0], 1);
  ASSERT_FALSE(b.done());
  auto r3 = rows_of({{0.9f, 0.04f, 0.03f, 0.03f}, {0.9f, 0.04f, 0.03f, 0.03f}});
  b.step(LogitsView{r3.data(), DType::kFloat32, 2, 4, 4}, 0, parents, tokens, ws);
  EXPECT_TRUE(b.done());  // max_new_tokens
  auto hyps = b.hypotheses();
  ASSERT_EQ(hyps.size(), 1u);
  EXPECT_EQ(hyps[0].tokens, (std::vector<int32_t>{1, 0}));
  EXPECT_NEAR(hyps[0].score, std::log(0.45) / 2.0, 1e-6);
}

TEST(Beam, EarlyStoppingTrueStopsWhenFull) {
  BeamParams bp;
  bp.num_beams = 1;
  bp.max_new_tokens = 10;
  bp.eos_token_ids = {0};
  bp.early_stopping = EarlyStopping::kTrue;
  BeamSearch b(bp, {}, 3);
  Workspace ws;
  int32_t parents[1], tokens[1];
  auto r = rows_of({{0.6f, 0.3f, 0.1f}});
  b.step(LogitsView{r.data(), DType::kFloat32, 1, 3, 3}, 0, parents, tokens, ws);
  EXPECT_TRUE(b.done());
  EXPECT_EQ(b.hypotheses()[0].tokens, std::vector<int32_t>{0});
}
