// The stages of the sampler chain. The pipeline order, documented once:
//
//   0. vocabulary guard   ids >= vocab limit (the tokenizer's size) do not exist: they are
//                         never read, never candidates, never produced. Always on.
//   1. logit bias         LogitBias            (transformers' SequenceBias, single tokens)
//   2. repetition penalty RepetitionPenalty    (transformers, over prompt + generated)
//   3. frequency/presence FrequencyPresence    (OpenAI, over generated tokens)
//   4. no-repeat-n-gram   NoRepeatNGram        (transformers, over prompt + generated)
//   5. bad words          BadWords             (transformers' NoBadWords: -inf; a one-id word
//                                               equal to an EOS id is dropped, as there)
//   6. min new tokens     MinNewTokens         (EOS ids -inf until enough new tokens)
//  6b. token mask         TokenMask            (structured output: ids the caller's bitmask
//                                               disallows -inf, greedy and beam rows too; only
//                                               rows given a mask; if 1-6 banned every allowed
//                                               id, those edits are dropped for the row. See
//                                               token_mask.h and row_sampler.h's dense path)
//   --- sampling rows only; these are argmax-invariant, so greedy rows skip them ---
//   7. temperature        Temperature
//   8. top-k              TopK                 (ties with the k-th value kept, as transformers)
//   9. top-p              TopP                 (renormalised over the survivors of 8)
//  10. min-p              MinP
//  11. typical-p          Typical
//
// Steps 9-11 decide at transformers' precision: float32 probabilities (correctly rounded),
// float32 cumulative sums (accumulated in double and rounded, as torch's CPU cumsum does),
// compared with the float32 value of transformers' Python-float threshold expression.
//  12. selector           Greedy | Categorical(seed, stream, position)
//
// Steps 1-6 ("edits") touch a handful of ids each, so they write into a sparse Overrides map
// instead of the logits; steps 7-11 ("warpers") shrink a CandidateSet. Step 6b is per step, not
// per chain (the mask changes every step), so it is an argument of the step, not a stage object. The orders of 1-2 and
// 4-11 are transformers' `_get_logits_processor` order, so a chain equals the corresponding
// LogitsProcessorList. A stage whose parameter is neutral is not in the chain.
#pragma once

#include <cstdint>
#include <functional>
#include <limits>
#include <utility>
#include <vector>

#include "tokenwire/candidates.h"
#include "tokenwire/logits.h"
#include "tokenwire/workspace.h"

namespace tokenwire {

// Prompt + generated tokens of one sequence.
struct History {
  const int32_t* tokens = nullptr;
  int64_t size = 0;
  int64_t prompt_len = 0;
  int64_t generated() const { return size - prompt_len; }
};

// What an edit reads and writes: current value of any id (the row's logit minus `shift`, or
// the override an earlier edit wrote) and the overrides themselves.
// Edits see logits when sampling and log-probs in beam search (as transformers' processors
// do); a log-prob is computed as (x - max) - log_sum, the way torch.log_softmax rounds.
struct Shift {
  float max = 0.0f;
  float log_sum = 0.0f;
  float apply(float x) const { return (x - max) - log_sum; }
};

struct EditContext {
  const RowRef& row;
  Shift shift;
  int64_t limit;
  const History& history;
  Overrides& overrides;
  TokenCounter& counter;

  float value(int32_t t) const { return overrides.has(t) ? overrides.get(t) : shift.apply(row.at(t)); }
  void set(int32_t t, float v) {
    if (t >= 0 && t < limit) overrides.set(t, v);
  }
  void ban(int32_t t) { set(t, -std::numeric_limits<float>::infinity()); }
};

class LogitEdit {
 public:
  virtual ~LogitEdit() = default;
  virtual const char* name() const = 0;
  virtual void apply(EditContext& ctx) const = 0;
};

class Warper {
 public:
  virtual ~Warper() = default;
  virtual const char* name() const = 0;
  // Shrinks or rescales the set; never empties a non-empty set (min_tokens_to_keep = 1).
  virtual void apply(CandidateSet& set, Workspace& ws) const = 0;
};

// ---- edits --------------------------------------------------------------------------------

class LogitBias final : public LogitEdit {
 public:
  explicit LogitBias(std::vector<std::pair<int32_t, float>> bias) : bias_(std::move(bias)) {}
  const char* name() const override { return "logit_bias"; }
  void apply(EditContext& ctx) const override;

 private:
  std::vector<std::pair<int32_t, float>> bias_;
};

class RepetitionPenalty final : public LogitEdit {
 public:
  explicit RepetitionPenalty(float penalty) : penalty_(penalty) {}
  const char* name() const override { return "repetition_penalty"; }
  void apply(EditContext& ctx) const override;

 private:
  float penalty_;
};

class FrequencyPresence final : public LogitEdit {
 public:
  FrequencyPresence(float frequency, float presence) : frequency_(frequency), presence_(presence) {}
  const char* name() const override { return "frequency_presence_penalty"; }
  void apply(EditContext& ctx) const override;

 private:
  float frequency_, presence_;
};

class NoRepeatNGram final : public LogitEdit {
 public:
  explicit NoRepeatNGram(int32_t n) : n_(n) {}
  const char* name() const override { return "no_repeat_ngram"; }
  void apply(EditContext& ctx) const override;

 private:
  int32_t n_;
};

class BadWords final : public LogitEdit {
 public:
  explicit BadWords(std::vector<std::vector<int32_t>> words) : words_(std::move(words)) {}
  const char* name() const override { return "bad_words"; }
  void apply(EditContext& ctx) const override;

 private:
  std::vector<std::vector<int32_t>> words_;
};

class MinNewTokens final : public LogitEdit {
 public:
  MinNewTokens(int32_t min_new, std::vector<int32_t> eos) : min_new_(min_new), eos_(std::move(eos)) {}
  const char* name() const override { return "min_new_tokens"; }
  void apply(EditContext& ctx) const override;

 private:
  int32_t min_new_;
  std::vector<int32_t> eos_;
};

// ---- warpers ------------------------------------------------------------------------------

class Temperature final : public Warper {
 public:
  explicit Temperature(float t) : t_(t) {}
  const char* name() const override { return "temperature"; }
  void apply(CandidateSet& set, Workspace& ws) const override;

 private:
  float t_;
};

class TopK final : public Warper {
 public:
  explicit TopK(int32_t k) : k_(k) {}
  const char* name() const override { return "top_k"; }
  void apply(CandidateSet& set, Workspace& ws) const override;

 private:
  int32_t k_;
};

class TopP final : public Warper {
 public:
  explicit TopP(double p) : p_(p) {}
  const char* name() const override { return "top_p"; }
  void apply(CandidateSet& set, Workspace& ws) const override;

 private:
  double p_;
};

class MinP final : public Warper {
 public:
  explicit MinP(double p) : p_(p) {}
  const char* name() const override { return "min_p"; }
  void apply(CandidateSet& set, Workspace& ws) const override;

 private:
  double p_;
};

class Typical final : public Warper {
 public:
  explicit Typical(double mass) : mass_(mass) {}
  const char* name() const override { return "typical_p"; }
  void apply(CandidateSet& set, Workspace& ws) const override;

 private:
  double mass_;
};

// Keeps, in descending `keys` order (ties: descending id), a prefix of `set`: item j is kept
// while stop(weight of its predecessors) is false, plus, with `keep_ties`, the items tying
// with the last kept key; at least one item. `stop` must be monotone (false, then true, as the
// weight grows). The rule of top-p (ties not kept) and typical-p (kept), as in transformers.
// Exact and expected O(n) by weighted quickselect, no full sort. `keys[i]` and `weights[i]`
// belong to `set.items[i]`; the survivors stay in `set`, in no particular order.
void keep_by_mass(CandidateSet& set, const std::vector<double>& keys, const std::vector<double>& weights,
                  const std::function<bool(double)>& stop, bool keep_ties);

}  // namespace tokenwire
