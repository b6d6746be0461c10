// Per-thread scratch memory, reused across rows and steps so the hot path does not allocate.
#pragma once

#include <cstdint>
#include <vector>

#include "tokenwire/candidates.h"
#include "tokenwire/kernels.h"

namespace tokenwire {

// A sparse map token → edited logit, cleared in O(1) by bumping an epoch.
class Overrides {
 public:
  void reset(int64_t vocab);
  bool has(int32_t t) const { return stamp_[t] == epoch_; }
  float get(int32_t t) const { return entries_[slot_[t]].logit; }
  int32_t slot(int32_t t) const { return slot_[t]; }  // index into entries(); only if has(t)
  void set(int32_t t, float v);
  const std::vector<Candidate>& entries() const { return entries_; }

 private:
  std::vector<uint32_t> stamp_;
  std::vector<int32_t> slot_;
  std::vector<Candidate> entries_;
  uint32_t epoch_ = 0;
};

// Counts token occurrences in a span, cleared in O(1) by bumping an epoch.
class TokenCounter {
 public:
  void reset(int64_t vocab);
  void add(int32_t t);
  const std::vector<std::pair<int32_t, int32_t>>& counts() const { return counts_; }

 private:
  std::vector<uint32_t> stamp_;
  std::vector<int32_t> slot_;
  std::vector<std::pair<int32_t, int32_t>> counts_;
  uint32_t epoch_ = 0;
};

struct Workspace {
  Overrides overrides;
  TokenCounter counter;
  CandidateSet set;
  CandidateSet alt;                 // a second set (raw-mode alternatives, beam merging)
  std::vector<float> dense;         // a converted / edited copy of one row
  std::vector<float> masked;        // a token-masked row's copy, disallowed ids -inf (kept
                                    // apart from `dense`, which is filled from it)
  std::vector<float> convert_buf;   // chunk conversion of bf16 / f16 rows
  std::vector<int32_t> tokens;      // a beam's history, rebuilt from parent pointers
  std::vector<double> weights;      // probabilities of a candidate set
  kernels::RowMaxima maxima;        // chunk maxima of the row being worked on
  std::vector<char> flags;          // which overrides were found among the candidates
};

}  // namespace tokenwire
