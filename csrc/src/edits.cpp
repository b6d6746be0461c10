// The sparse stages (pipeline steps 1-6 in stages.h).
#include <algorithm>

#include "tokenwire/stages.h"

namespace tokenwire {

void LogitBias::apply(EditContext& ctx) const {
  for (const auto& [t, b] : bias_) {
    if (t >= 0 && t < ctx.limit) ctx.set(t, ctx.value(t) + b);
  }
}

// transformers: a logit x of a token seen in prompt + generated becomes x × p if x < 0, else x / p.
void RepetitionPenalty::apply(EditContext& ctx) const {
  ctx.counter.reset(ctx.limit);
  for (int64_t i = 0; i < ctx.history.size; ++i) ctx.counter.add(ctx.history.tokens[i]);
  for (const auto& [t, n] : ctx.counter.counts()) {
    (void)n;
    const float x = ctx.value(t);
    ctx.set(t, x < 0 ? x * penalty_ : x / penalty_);
  }
}

// OpenAI: x -= count × frequency + (count > 0) × presence, counting generated tokens only.
void FrequencyPresence::apply(EditContext& ctx) const {
  ctx.counter.reset(ctx.limit);
  const History& h = ctx.history;
  for (int64_t i = h.prompt_len; i < h.size; ++i) ctx.counter.add(h.tokens[i]);
  for (const auto& [t, n] : ctx.counter.counts()) {
    ctx.set(t, ctx.value(t) - static_cast<float>(n) * frequency_ - presence_);
  }
}

// transformers: ban every token that would complete an n-gram already present in the sequence.
void NoRepeatNGram::apply(EditContext& ctx) const {
  const History& h = ctx.history;
  const int64_t n = n_;
  if (h.size < n) return;
  const int32_t* prefix = h.tokens + h.size - (n - 1);
  for (int64_t i = 0; i + n <= h.size; ++i) {
    if (std::equal(prefix, prefix + (n - 1), h.tokens + i)) ctx.ban(h.tokens[i + n - 1]);
  }
}

// transformers' NoBadWords: a word's last id is banned when the sequence ends with its prefix
// (always, for one-id words).
void BadWords::apply(EditContext& ctx) const {
  const History& h = ctx.history;
  for (const auto& w : words_) {
    const int64_t prefix_len = static_cast<int64_t>(w.size()) - 1;
    if (prefix_len > h.size) continue;
    if (std::equal(w.begin(), w.end() - 1, h.tokens + h.size - prefix_len)) ctx.ban(w.back());
  }
}

void MinNewTokens::apply(EditContext& ctx) const {
  if (ctx.history.generated() >= min_new_) return;
  for (int32_t e : eos_) ctx.ban(e);
}

}  // namespace tokenwire
