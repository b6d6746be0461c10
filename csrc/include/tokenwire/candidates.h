// The working set a row's stages operate on: (logit, token id) pairs, in no particular order
// unless `sorted` says so (llama.cpp's llama_token_data_array, minus the probabilities).
#pragma once

#include <cstdint>
#include <vector>

namespace tokenwire {

struct Candidate {
  float logit;
  int32_t id;
};

// Descending by logit, ascending id on ties: argmax's "first occurrence" rule, everywhere.
inline bool ranks_before(const Candidate& a, const Candidate& b) {
  return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
}

struct CandidateSet {
  std::vector<Candidate> items;
  bool sorted = false;  // by ranks_before; stages that reorder must clear or keep it truthfully

  void sort();                       // sorts if not sorted
  float max_logit() const;           // -inf when empty
  double log_sum_exp() const;        // over the items' logits
};

}  // namespace tokenwire
