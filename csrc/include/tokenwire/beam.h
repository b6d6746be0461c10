// Beam search bookkeeping, step for step the way transformers 5's `_beam_search` does it
// (greedy beams): per step, log_softmax each beam's row, let the edits of the chain adjust the
// log-probs (transformers applies its processors there), add the beam's running score, keep
// the best 2 × beams (more with several EOS ids) continuations over beams × vocab, let the top
// `num_beams` of them that end (EOS or max_new_tokens) become hypotheses scored
// sum_logprob / generated_len ** length_penalty, continue with the best `num_beams` that did
// not end. Tokens are stored as parent pointers in a node pool, never as copied lists.
//
// A token mask (token_mask.h) applies to a beam's log-probs after the edits, as transformers'
// PrefixConstrainedLogitsProcessor does: a disallowed id's log-prob becomes -inf, the allowed
// ones keep theirs (no renormalisation), so no beam ever extends with a disallowed id.
//
// early_stopping, exactly as transformers:
//   kHeuristic (False): stop when the best running beam, scored at the current length, cannot
//                       beat the worst of num_beams hypotheses;
//   kTrue:              stop as soon as there are num_beams hypotheses;
//   kNever:             like kHeuristic, but with length_penalty > 0 the running beam is scored
//                       at max_new_tokens (the canonical, never-early stopping rule).
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "tokenwire/chain.h"
#include "tokenwire/logits.h"
#include "tokenwire/params.h"
#include "tokenwire/thread_pool.h"
#include "tokenwire/token_mask.h"
#include "tokenwire/workspace.h"

namespace tokenwire {

enum class EarlyStopping : int32_t { kHeuristic = 0, kTrue = 1, kNever = 2 };

struct BeamParams {
  int32_t num_beams = 1;
  double length_penalty = 1.0;  // the exponent, a Python float in transformers
  EarlyStopping early_stopping = EarlyStopping::kHeuristic;
  int32_t num_return_sequences = 1;
  int32_t max_new_tokens = 1;
  std::vector<int32_t> eos_token_ids;
  // Only the edit stages apply (logit bias, penalties, n-grams, bad words, min_new_tokens);
  // beams are never sampled, so warpers and seeds are ignored.
  SamplingParams edits;
};

struct Hypothesis {
  std::vector<int32_t> tokens;  // generated tokens, EOS included
  float score = 0.0f;           // sum of log-probs / len ** length_penalty
  bool finished = true;         // false: a running beam returned because the search was cut short
};

class BeamSearch {
 public:
  BeamSearch(const BeamParams& params, std::vector<int32_t> prompt, int64_t vocab_size);

  // Logits rows this step reads: 1 before the first step (all beams share the prompt), then
  // num_beams, in the order of the previous step's outputs.
  int64_t rows_expected() const { return generated_ == 0 ? 1 : params_.num_beams; }

  // One step. Writes parents[num_beams] (which previous row each new beam extends: reorder the
  // KV cache with it) and tokens[num_beams] (the token each beam appends). `mask`, if it has
  // bits, has one row per logits row (row first_row + b for beam b); its rows this step reads
  // are checked first (std::invalid_argument), before any state changes.
  void step(const LogitsView& logits, int64_t first_row, int32_t* parents, int32_t* tokens, Workspace& ws,
            const TokenMask& mask = {});

  // The checks step() makes of `mask` (rows count, words, no empty masked row), for callers
  // that must validate several searches before stepping any.
  void check_mask(const LogitsView& logits, int64_t first_row, const TokenMask& mask) const;

  bool done() const { return done_; }
  int64_t generated() const { return generated_; }
  const BeamParams& params() const { return params_; }

  // The best num_return_sequences hypotheses, best first. If the search was stopped before
  // done(), running beams fill the gap, scored as if they ended now (finished = false).
  std::vector<Hypothesis> hypotheses() const;

 private:
  struct Node {
    int32_t token;
    int32_t parent;  // -1: the prompt
  };
  struct Beam {
    int32_t node;
    float score;
  };
  struct Candidate3 {
    float score;
    int32_t beam;
    int32_t id;
  };

  std::vector<int32_t> sequence(int32_t node) const;
  void history_of(int32_t node, std::vector<int32_t>& out) const;
  bool is_eos(int32_t id) const;

  BeamParams params_;
  Chain chain_;
  std::vector<int32_t> prompt_;
  int64_t vocab_size_;
  int64_t beams_to_keep_;
  std::vector<Node> nodes_;
  std::vector<Beam> running_;
  std::vector<Beam> finished_;  // best first, at most num_beams; score is length-penalised
  std::vector<int32_t> finished_len_;
  int64_t generated_ = 0;
  bool improvable_ = true;  // transformers' is_early_stop_heuristic_unsatisfied
  bool done_ = false;
};

// Steps several searches in one call, rows spread over the pool's threads. The logits rows are
// the searches' rows_expected() rows, concatenated in `searches` order; parents/tokens are
// written at each search's offset, num_beams entries per search. `mask` rows follow the logits
// rows; every search's mask rows are checked before any search steps.
void step_beams(const std::vector<BeamSearch*>& searches, const LogitsView& logits,
                ThreadPool& pool, std::vector<Workspace>& ws, int32_t* parents, int32_t* tokens,
                const TokenMask& mask = {});

}  // namespace tokenwire
