// A row's sampler chain: the edits and warpers its parameters switch on (see stages.h for the
// order), ending in one selector. Built once per request, reused every step.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "tokenwire/params.h"
#include "tokenwire/stages.h"

namespace tokenwire {

// The terminal stage: picks one item of the final candidate set.
class Selector {
 public:
  virtual ~Selector() = default;
  virtual const char* name() const = 0;
  // Index into set.items; the set is non-empty.
  virtual size_t select(const CandidateSet& set, uint64_t position) const = 0;
};

class Greedy final : public Selector {
 public:
  const char* name() const override { return "greedy"; }
  size_t select(const CandidateSet& set, uint64_t position) const override;
};

// Inverse-CDF draw from softmax(set) with one uniform from Philox(seed, stream, position).
class Categorical final : public Selector {
 public:
  Categorical(uint64_t seed, uint32_t stream) : seed_(seed), stream_(stream) {}
  const char* name() const override { return "categorical"; }
  size_t select(const CandidateSet& set, uint64_t position) const override;

 private:
  uint64_t seed_;
  uint32_t stream_;
};

class Chain {
 public:
  // Neutral parameters leave their stage out; greedy rows get no warpers.
  static Chain build(const SamplingParams& p);

  const std::vector<std::unique_ptr<LogitEdit>>& edits() const { return edits_; }
  const std::vector<std::unique_ptr<Warper>>& warpers() const { return warpers_; }
  const Selector& selector() const { return *selector_; }
  bool greedy() const { return greedy_; }
  int32_t top_k() const { return top_k_; }  // 0: no top-k stage, candidates are the whole row
  std::vector<std::string> stage_names() const;

 private:
  std::vector<std::unique_ptr<LogitEdit>> edits_;
  std::vector<std::unique_ptr<Warper>> warpers_;
  std::unique_ptr<Selector> selector_;
  bool greedy_ = false;
  int32_t top_k_ = 0;
};

}  // namespace tokenwire
