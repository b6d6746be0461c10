// The batch entry point: rows of one decode step, each with its own parameters, history and
// seed, in one call. Rows live in slots; the caller says which slot each logits row belongs
// to, so rows may join, leave or be reordered between steps without copying any state.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "tokenwire/chain.h"
#include "tokenwire/logits.h"
#include "tokenwire/params.h"
#include "tokenwire/thread_pool.h"
#include "tokenwire/token_mask.h"
#include "tokenwire/workspace.h"

namespace tokenwire {

// Caller-allocated outputs for `rows` rows. top_* are [rows, top_n] row-major (may be null
// when top_n == 0).
struct StepOutputs {
  int32_t* token_ids = nullptr;
  float* logprobs = nullptr;
  int32_t* ranks = nullptr;
  int32_t* top_ids = nullptr;
  float* top_logprobs = nullptr;
  int32_t top_n = 0;
};

class BatchSampler {
 public:
  // `vocab_size`: the tokenizer's size; no id >= it is ever produced (the vocabulary guard).
  BatchSampler(int64_t vocab_size, int num_threads);

  int32_t add(const SamplingParams& params, std::vector<int32_t> prompt);
  void remove(int32_t slot);
  void append(int32_t slot, const int32_t* tokens, int64_t n);  // tokens the caller chose
  int64_t generated(int32_t slot) const;
  std::vector<std::string> stage_names(int32_t slot) const;
  int64_t vocab_size() const { return vocab_size_; }
  int num_threads() const { return pool_->size(); }
  void set_num_threads(int n);

  // Row i of `logits` belongs to slots[i]. Selects one token per row; with `advance`, appends
  // it to the row's history and moves its position (the RNG counter) on by one. `mask` (row i
  // of it for row i of the logits) constrains the rows it marks active: see token_mask.h. It
  // is checked whole before any row is stepped (std::invalid_argument).
  void step(const LogitsView& logits, const int32_t* slots, const StepOutputs& out, bool advance,
            const TokenMask& mask = {});

  // The distribution each row's selector would see, as logits (see process_row); out is
  // [rows, logits.vocab] with row stride `out_stride`. Does not advance.
  void process(const LogitsView& logits, const int32_t* slots, float* out, int64_t out_stride,
               const TokenMask& mask = {});

 private:
  struct Row {
    SamplingParams params;
    Chain chain;
    std::vector<int32_t> tokens;  // prompt + generated
    int64_t prompt_len = 0;
  };
  const Row& row(int32_t slot) const;
  void check_slots(const LogitsView& logits, const int32_t* slots) const;

  int64_t vocab_size_;
  std::vector<std::unique_ptr<Row>> rows_;
  std::vector<int32_t> free_;
  std::unique_ptr<ThreadPool> pool_;
  std::vector<Workspace> ws_;
};

}  // namespace tokenwire
