#include "tokenwire/batch_sampler.h"

#include <algorithm>
#include <stdexcept>
#include <string>

#include "tokenwire/row_sampler.h"

namespace tokenwire {

BatchSampler::BatchSampler(int64_t vocab_size, int num_threads) : vocab_size_(vocab_size) {
  if (vocab_size <= 0) throw std::invalid_argument("vocab_size must be > 0");
  set_num_threads(num_threads);
}

void BatchSampler::set_num_threads(int n) {
  if (n < 1) throw std::invalid_argument("num_threads must be >= 1, got " + std::to_string(n));
  pool_ = std::make_unique<ThreadPool>(n);
  ws_.resize(n);
}

int32_t BatchSampler::add(const SamplingParams& params, std::vector<int32_t> prompt) {
  auto r = std::make_unique<Row>(Row{params, Chain::build(params), std::move(prompt), 0});
  r->prompt_len = static_cast<int64_t>(r->tokens.size());
  if (!free_.empty()) {
    const int32_t slot = free_.back();
    free_.pop_back();
    rows_[slot] = std::move(r);
    return slot;
  }
  rows_.push_back(std::move(r));
  return static_cast<int32_t>(rows_.size() - 1);
}

const BatchSampler::Row& BatchSampler::row(int32_t slot) const {
  if (slot < 0 || slot >= static_cast<int32_t>(rows_.size()) || !rows_[slot]) {
    throw std::out_of_range("no row in slot " + std::to_string(slot));
  }
  return *rows_[slot];
}

void BatchSampler::remove(int32_t slot) {
  row(slot);
  rows_[slot].reset();
  free_.push_back(slot);
}

void BatchSampler::append(int32_t slot, const int32_t* tokens, int64_t n) {
  row(slot);
  rows_[slot]->tokens.insert(rows_[slot]->tokens.end(), tokens, tokens + n);
}

int64_t BatchSampler::generated(int32_t slot) const {
  const Row& r = row(slot);
  return static_cast<int64_t>(r.tokens.size()) - r.prompt_len;
}

std::vector<std::string> BatchSampler::stage_names(int32_t slot) const { return row(slot).chain.stage_names(); }

void BatchSampler::check_slots(const LogitsView& logits, const int32_t* slots) const {
  std::vector<int32_t> seen(slots, slots + logits.rows);
  for (int32_t s : seen) row(s);
  std::sort(seen.begin(), seen.end());
  if (std::adjacent_find(seen.begin(), seen.end()) != seen.end()) {
    throw std::invalid_argument("a slot appears twice in one step");
  }
}

void BatchSampler::step(const LogitsView& logits, const int32_t* slots, const StepOutputs& out,
                        bool advance, const TokenMask& mask) {
  check_slots(logits, slots);
  const int64_t limit = std::min(vocab_size_, logits.vocab);
  check_token_mask(mask, logits.rows, limit);
  pool_->parallel_for(logits.rows, [&](int64_t i, int worker) {
    Row& r = *rows_[slots[i]];
    const History h{r.tokens.data(), static_cast<int64_t>(r.tokens.size()), r.prompt_len};
    RowOutput o;
    o.top_n = out.top_n;
    o.top_ids = out.top_ids ? out.top_ids + i * out.top_n : nullptr;
    o.top_logprobs = out.top_logprobs ? out.top_logprobs + i * out.top_n : nullptr;
    if (!o.top_ids || !o.top_logprobs) o.top_n = 0;
    sample_row(r.chain, r.params, h, RowRef(logits, i), limit, static_cast<uint64_t>(h.generated()),
               ws_[worker], o, mask.row(i));
    out.token_ids[i] = o.token;
    if (out.logprobs) out.logprobs[i] = o.logprob;
    if (out.ranks) out.ranks[i] = o.rank;
    if (advance) r.tokens.push_back(o.token);
  });
}

void BatchSampler::process(const LogitsView& logits, const int32_t* slots, float* out, int64_t out_stride,
                           const TokenMask& mask) {
  check_slots(logits, slots);
  const int64_t limit = std::min(vocab_size_, logits.vocab);
  check_token_mask(mask, logits.rows, limit);
  pool_->parallel_for(logits.rows, [&](int64_t i, int worker) {
    const Row& r = *rows_[slots[i]];
    const History h{r.tokens.data(), static_cast<int64_t>(r.tokens.size()), r.prompt_len};
    process_row(r.chain, h, RowRef(logits, i), limit, logits.vocab, ws_[worker], out + i * out_stride,
                mask.row(i));
  });
}

}  // namespace tokenwire
