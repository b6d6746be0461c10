// The truncation stages (pipeline steps 7-11 in stages.h), on a CandidateSet.
#include <algorithm>
#include <cmath>
#include <numeric>

#include "tokenwire/stages.h"

namespace tokenwire {

namespace {

// Softmax of the set into `w` (double), returns log-sum-exp.
double softmax(const CandidateSet& set, std::vector<double>& w) {
  const double lse = set.log_sum_exp();
  w.resize(set.items.size());
  for (size_t i = 0; i < w.size(); ++i) w[i] = std::exp(set.items[i].logit - lse);
  return lse;
}

void keep_first(CandidateSet& set, const std::vector<int32_t>& order, int64_t n) {
  std::vector<Candidate> kept;
  kept.reserve(n);
  for (int64_t i = 0; i < n; ++i) kept.push_back(set.items[order[i]]);
  set.items.swap(kept);
  set.sorted = false;
}

}  // namespace

void Temperature::apply(CandidateSet& set, Workspace&) const {
  for (auto& c : set.items) c.logit /= t_;
}

// transformers keeps every logit >= the k-th largest, so ties with it survive.
void TopK::apply(CandidateSet& set, Workspace&) const {
  const auto k = static_cast<size_t>(k_);
  if (set.items.size() <= k) return;
  auto& v = set.items;
  std::nth_element(v.begin(), v.begin() + (k - 1), v.end(), ranks_before);
  const float kth = v[k - 1].logit;
  auto end = std::partition(v.begin() + k, v.end(), [kth](const Candidate& c) { return c.logit >= kth; });
  v.erase(end, v.end());
  set.sorted = false;
}

void TopP::apply(CandidateSet& set, Workspace& ws) const {
  if (set.items.size() <= 1) return;
  softmax(set, ws.weights);
  std::vector<double> keys(set.items.size());
  for (size_t i = 0; i < keys.size(); ++i) keys[i] = set.items[i].logit;
  keep_by_mass(set, keys, ws.weights, p_, /*keep_ties=*/false);
}

// p >= min_p × p_max  ⇔  logit >= max_logit + log(min_p): no softmax needed.
void MinP::apply(CandidateSet& set, Workspace&) const {
  if (set.items.empty()) return;
  const double cut = static_cast<double>(set.max_logit()) + std::log(static_cast<double>(p_));
  auto& v = set.items;
  v.erase(std::remove_if(v.begin(), v.end(), [cut](const Candidate& c) { return c.logit < cut; }),
          v.end());
}

// transformers' TypicalLogitsWarper: rank by |−log p − H| ascending, keep until `mass`.
void Typical::apply(CandidateSet& set, Workspace& ws) const {
  if (set.items.size() <= 1) return;
  const double lse = softmax(set, ws.weights);
  double entropy = 0.0;
  for (size_t i = 0; i < set.items.size(); ++i) {
    if (ws.weights[i] > 0) entropy -= ws.weights[i] * (set.items[i].logit - lse);
  }
  std::vector<double> keys(set.items.size());
  for (size_t i = 0; i < keys.size(); ++i) {
    keys[i] = -std::abs(-(set.items[i].logit - lse) - entropy);
  }
  keep_by_mass(set, keys, ws.weights, mass_, /*keep_ties=*/true);
}

void keep_by_mass(CandidateSet& set, const std::vector<double>& keys,
                  const std::vector<double>& weights, double mass, bool keep_ties) {
  const int64_t n = static_cast<int64_t>(set.items.size());
  std::vector<int32_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  // Descending key; ties by descending id, which is where transformers' stable ascending sort
  // puts them (so it drops the lower ids of a tie first).
  auto before = [&](int32_t a, int32_t b) {
    if (keys[a] != keys[b]) return keys[a] > keys[b];
    return set.items[a].id > set.items[b].id;
  };
  constexpr int64_t kSmall = 1024;
  int64_t lo = 0, hi = n;
  double acc = 0.0;  // weight of everything known to rank before `lo`; always < mass here
  while (hi - lo > kSmall) {
    const int32_t a = order[lo], b = order[lo + (hi - lo) / 2], c = order[hi - 1];
    const double pivot = std::max(std::min(keys[a], keys[b]), std::min(std::max(keys[a], keys[b]), keys[c]));
    auto gt_end = std::partition(order.begin() + lo, order.begin() + hi,
                                 [&](int32_t i) { return keys[i] > pivot; });
    auto eq_end = std::partition(gt_end, order.begin() + hi, [&](int32_t i) { return keys[i] == pivot; });
    double mass_gt = 0.0, mass_eq = 0.0;
    for (auto it = order.begin() + lo; it != gt_end; ++it) mass_gt += weights[*it];
    for (auto it = gt_end; it != eq_end; ++it) mass_eq += weights[*it];
    if (acc + mass_gt >= mass) {  // the cut is among the keys above the pivot
      hi = gt_end - order.begin();
      continue;
    }
    acc += mass_gt;
    lo = gt_end - order.begin();
    if (acc + mass_eq >= mass) {  // the cut is among the pivot's ties
      hi = eq_end - order.begin();
      if (keep_ties) lo = hi;
      break;
    }
    acc += mass_eq;
    lo = eq_end - order.begin();
  }
  std::sort(order.begin() + lo, order.begin() + hi, before);
  int64_t kept = lo;
  for (int64_t j = lo; j < hi; ++j) {
    const bool tie = keep_ties && j > lo && keys[order[j]] == keys[order[j - 1]];
    if (acc >= mass && !tie) break;
    acc += weights[order[j]];
    kept = j + 1;
  }
  keep_first(set, order, kept);
}

}  // namespace tokenwire
