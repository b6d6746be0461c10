// Per-row decoding parameters as the core receives them: already validated (the Python layer,
// tokenwire.decoding.params, owns validation and its error messages). Every stage parameter has
// a neutral value, and a neutral value means "stage absent": the chain builder leaves the stage
// out, so it costs nothing.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

namespace tokenwire {

// Which distribution `logprobs` / `top_logprobs` describe.
enum class LogprobsMode : int32_t {
  kProcessed = 0,  // the distribution the token was selected from (see SamplingParams)
  kRaw = 1,        // log_softmax of the model's logits, before any stage (vocabulary guard aside)
};

struct SamplingParams {
  // --- logit edits (sparse: each touches a few ids) -------------------------------------
  std::vector<std::pair<int32_t, float>> logit_bias;  // added to the logit; empty = absent
  float repetition_penalty = 1.0f;  // transformers' rule over prompt + generated; 1 = absent
  float frequency_penalty = 0.0f;   // OpenAI: -= count × f over generated; 0 = absent
  float presence_penalty = 0.0f;    // OpenAI: -= p if generated at all; 0 = absent
  int32_t no_repeat_ngram_size = 0;  // over prompt + generated; 0 = absent
  std::vector<std::vector<int32_t>> bad_words;  // id sequences never completed; empty = absent
  int32_t min_new_tokens = 0;        // EOS ids banned before this many new tokens; 0 = absent
  // min_new_tokens bans them; a one-id bad word equal to one of them is dropped (transformers'
  // NoBadWords never bans EOS); beam search ends hypotheses on them.
  std::vector<int32_t> eos_token_ids;
  // --- truncation (sampling rows only; argmax-invariant, so greedy rows skip them) --------
  // Precision, as transformers on float32 logits: a factor applied to the logits (temperature,
  // repetition_penalty) is a float, because torch casts a Python scalar to the tensor's dtype
  // before multiplying; a threshold is a double, the Python float it is in transformers, and
  // each stage derives its float32 comparison value from it exactly as transformers does
  // (top-p compares with float(1 - top_p), not with float(top_p); see warpers.cpp).
  float temperature = 1.0f;  // 1 = absent (0 is not a temperature: set greedy instead)
  int32_t top_k = 0;         // 0 = absent
  double top_p = 1.0;        // 1 = absent
  double min_p = 0.0;        // 0 = absent
  double typical_p = 1.0;    // 1 = absent
  // --- selector -------------------------------------------------------------------------
  bool greedy = false;   // argmax (lowest id on ties) instead of seeded categorical sampling
  uint64_t seed = 0;     // with `stream` and the position, the only input of the draw
  uint32_t stream = 0;   // independent sample streams under one seed (n > 1 completions)
  // --- outputs --------------------------------------------------------------------------
  bool logprobs = false;      // fill logprob and rank of the chosen token
  int32_t top_logprobs = 0;   // also return this many alternatives (0 = none)
  LogprobsMode logprobs_mode = LogprobsMode::kProcessed;
};

}  // namespace tokenwire
