#include "tokenwire/chain.h"

#include <algorithm>
#include <cmath>

#include "tokenwire/rng.h"

namespace tokenwire {

size_t Greedy::select(const CandidateSet& set, uint64_t) const {
  size_t best = 0;
  for (size_t i = 1; i < set.items.size(); ++i) {
    if (ranks_before(set.items[i], set.items[best])) best = i;
  }
  return best;
}

size_t Categorical::select(const CandidateSet& set, uint64_t position) const {
  const double m = set.max_logit();
  if (!std::isfinite(m)) return Greedy().select(set, position);  // everything masked
  double total = 0.0;
  for (const auto& c : set.items) total += std::exp(c.logit - m);
  const double target = uniform01(seed_, stream_, position) * total;
  double acc = 0.0;
  size_t last = 0;
  for (size_t i = 0; i < set.items.size(); ++i) {
    const double w = std::exp(set.items[i].logit - m);
    if (w <= 0.0) continue;
    acc += w;
    last = i;
    if (acc > target) return i;
  }
  return last;  // rounding left target at the very top
}

Chain Chain::build(const SamplingParams& p) {
  Chain c;
  if (!p.logit_bias.empty()) c.edits_.push_back(std::make_unique<LogitBias>(p.logit_bias));
  if (p.repetition_penalty != 1.0f) c.edits_.push_back(std::make_unique<RepetitionPenalty>(p.repetition_penalty));
  if (p.frequency_penalty != 0.0f || p.presence_penalty != 0.0f) {
    c.edits_.push_back(std::make_unique<FrequencyPresence>(p.frequency_penalty, p.presence_penalty));
  }
  if (p.no_repeat_ngram_size > 0) c.edits_.push_back(std::make_unique<NoRepeatNGram>(p.no_repeat_ngram_size));
  // transformers' NoBadWordsLogitsProcessor drops a one-id bad word equal to an EOS id (EOS
  // "cannot be forbidden"), and generate() always hands it the EOS ids.
  std::vector<std::vector<int32_t>> bad_words;
  for (const auto& w : p.bad_words) {
    const bool eos_alone = w.size() == 1 && std::find(p.eos_token_ids.begin(), p.eos_token_ids.end(), w[0]) !=
                                                 p.eos_token_ids.end();
    if (!eos_alone) bad_words.push_back(w);
  }
  if (!bad_words.empty()) c.edits_.push_back(std::make_unique<BadWords>(std::move(bad_words)));
  if (p.min_new_tokens > 0 && !p.eos_token_ids.empty()) {
    c.edits_.push_back(std::make_unique<MinNewTokens>(p.min_new_tokens, p.eos_token_ids));
  }
  c.greedy_ = p.greedy;
  if (p.greedy) {
    c.selector_ = std::make_unique<Greedy>();
    return c;
  }
  if (p.temperature != 1.0f) c.warpers_.push_back(std::make_unique<Temperature>(p.temperature));
  if (p.top_k > 0) {
    c.top_k_ = p.top_k;
    c.warpers_.push_back(std::make_unique<TopK>(p.top_k));
  }
  if (p.top_p < 1.0) c.warpers_.push_back(std::make_unique<TopP>(p.top_p));
  if (p.min_p > 0.0) c.warpers_.push_back(std::make_unique<MinP>(p.min_p));
  if (p.typical_p < 1.0) c.warpers_.push_back(std::make_unique<Typical>(p.typical_p));
  c.selector_ = std::make_unique<Categorical>(p.seed, p.stream);
  return c;
}

std::vector<std::string> Chain::stage_names() const {
  std::vector<std::string> names;
  for (const auto& e : edits_) names.emplace_back(e->name());
  for (const auto& w : warpers_) names.emplace_back(w->name());
  names.emplace_back(selector_->name());
  return names;
}

}  // namespace tokenwire
