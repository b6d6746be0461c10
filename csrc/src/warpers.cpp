// The truncation stages (pipeline steps 7-11 in stages.h), on a CandidateSet.
#include <algorithm>
#include <cmath>
#include <numeric>

#include "tokenwire/stages.h"

namespace tokenwire {

namespace {

// The set's softmax as float32 probabilities, correctly rounded (torch's float32 softmax is
// within a few ulps of these), widened to double into `w`; returns the log-sum-exp.
double softmax_f32(const CandidateSet& set, std::vector<double>& w) {
  const double lse = set.log_sum_exp();
  w.resize(set.items.size());
  for (size_t i = 0; i < w.size(); ++i) {
    w[i] = static_cast<float>(std::exp(static_cast<double>(set.items[i].logit) - lse));
  }
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

// transformers' TopPLogitsWarper: sort ascending, cum = float32 cumsum of the float32 softmax,
// remove where cum <= 1 - top_p (the Python float, compared at float32), keep the largest.
// In descending order the item j has cum = total - (mass of its predecessors), so it is
// removed once float(total - predecessors) <= float(1 - top_p).
void TopP::apply(CandidateSet& set, Workspace& ws) const {
  if (set.items.size() <= 1) return;
  softmax_f32(set, ws.weights);
  double total = 0.0;
  for (double w : ws.weights) total += w;
  const float remove_at_or_below = static_cast<float>(1.0 - p_);
  std::vector<double> keys(set.items.size());
  for (size_t i = 0; i < keys.size(); ++i) keys[i] = set.items[i].logit;
  keep_by_mass(
      set, keys, ws.weights,
      [total, remove_at_or_below](double before) { return static_cast<float>(total - before) <= remove_at_or_below; },
      /*keep_ties=*/false);
}

// transformers' MinPLogitsWarper: remove p < min_p × p_max, with p the float32 softmax and the
// product taken in float32 (torch casts the Python float min_p to float32 first).
// In logits that is x < max + log(min_p) up to float32 rounding, so only the logits within
// kBand of that cut need the probabilities (and the log-sum-exp that costs a pass of exps).
void MinP::apply(CandidateSet& set, Workspace&) const {
  if (set.items.empty()) return;
  constexpr double kBand = 1e-3;  // >> the ~3e-7 relative rounding of p, p_max and the product
  const double m = set.max_logit();
  const double cut = m + std::log(p_);
  const float min_p = static_cast<float>(p_);
  auto& v = set.items;
  // Subnormal thresholds lose relative precision: decide every item exactly there.
  bool exact_all = !(min_p >= 1e-30f), near = exact_all;
  for (const auto& c : v) near = near || std::abs(c.logit - cut) <= kBand;
  if (!near) {
    v.erase(std::remove_if(v.begin(), v.end(), [cut](const Candidate& c) { return c.logit < cut; }), v.end());
    return;
  }
  const double lse = set.log_sum_exp();
  const float p_max = static_cast<float>(std::exp(m - lse));
  const float scaled = min_p * p_max;
  auto removed = [&](const Candidate& c) {
    if (!exact_all && c.logit < cut - kBand) return true;
    if (!exact_all && c.logit > cut + kBand) return false;
    return static_cast<float>(std::exp(static_cast<double>(c.logit) - lse)) < scaled;
  };
  v.erase(std::remove_if(v.begin(), v.end(), removed), v.end());
}

// transformers' TypicalLogitsWarper, in its float32 steps: normalized = log_softmax,
// H = -sum(normalized × exp(normalized)), key = |-normalized - H|, sorted ascending; cum =
// float32 cumsum of the softmax in that order; last = #(cum < mass) (mass as a float32), and
// every key <= the key at `last` is kept (ties with it too).
void Typical::apply(CandidateSet& set, Workspace& ws) const {
  if (set.items.size() <= 1) return;
  const double lse = softmax_f32(set, ws.weights);
  const size_t n = set.items.size();
  std::vector<float> normalized(n);
  double entropy = 0.0;
  for (size_t i = 0; i < n; ++i) {
    normalized[i] = static_cast<float>(static_cast<double>(set.items[i].logit) - lse);
    const float p = static_cast<float>(std::exp(static_cast<double>(normalized[i])));
    entropy -= static_cast<float>(normalized[i] * p);
  }
  const float h = static_cast<float>(entropy);
  std::vector<double> keys(n);
  for (size_t i = 0; i < n; ++i) keys[i] = -static_cast<double>(std::fabs(-normalized[i] - h));
  const float mass = static_cast<float>(mass_);
  keep_by_mass(
      set, keys, ws.weights, [mass](double before) { return static_cast<float>(before) >= mass; },
      /*keep_ties=*/true);
}

void keep_by_mass(CandidateSet& set, const std::vector<double>& keys, const std::vector<double>& weights,
                  const std::function<bool(double)>& stop, bool keep_ties) {
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
  double acc = 0.0;  // weight of everything known to rank before `lo`; !stop(acc) here
  while (hi - lo > kSmall) {
    const int32_t a = order[lo], b = order[lo + (hi - lo) / 2], c = order[hi - 1];
    const double pivot = std::max(std::min(keys[a], keys[b]), std::min(std::max(keys[a], keys[b]), keys[c]));
    auto gt_end = std::partition(order.begin() + lo, order.begin() + hi,
                                 [&](int32_t i) { return keys[i] > pivot; });
    auto eq_end = std::partition(gt_end, order.begin() + hi, [&](int32_t i) { return keys[i] == pivot; });
    double mass_gt = 0.0, mass_eq = 0.0;
    for (auto it = order.begin() + lo; it != gt_end; ++it) mass_gt += weights[*it];
    for (auto it = gt_end; it != eq_end; ++it) mass_eq += weights[*it];
    if (stop(acc + mass_gt)) {  // the cut is among the keys above the pivot
      hi = gt_end - order.begin();
      continue;
    }
    acc += mass_gt;
    lo = gt_end - order.begin();
    if (stop(acc + mass_eq)) {  // the cut is among the pivot's ties
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
    if (stop(acc) && !tie) break;
    acc += weights[order[j]];
    kept = j + 1;
  }
  if (kept == 0) kept = 1;  // min_tokens_to_keep: order[0] is then the best item (lo == 0, sorted)
  keep_first(set, order, kept);
}

}  // namespace tokenwire
