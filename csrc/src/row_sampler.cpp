#include "tokenwire/row_sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "tokenwire/kernels.h"

namespace tokenwire {

namespace {
constexpr float kNegInf = -std::numeric_limits<float>::infinity();
const float kNaN = std::numeric_limits<float>::quiet_NaN();

void drop_masked(CandidateSet& set) {
  auto& v = set.items;
  auto end = std::remove_if(v.begin(), v.end(), [](const Candidate& c) { return c.logit == kNegInf; });
  if (end != v.begin()) v.erase(end, v.end());  // an all-masked row keeps its items
}

// log-sum-exp of the edited row over [0, limit): the normaliser of a greedy row's distribution.
double edited_log_sum_exp(const RowRef& row, int64_t limit, Workspace& ws) {
  const auto& entries = ws.overrides.entries();
  if (entries.empty() && row.f32()) return kernels::log_sum_exp(row.f32(), limit);
  kernels::load_row(row, limit, ws.dense);
  for (const auto& e : entries) ws.dense[e.id] = e.logit;
  return kernels::log_sum_exp(ws.dense.data(), limit);
}

double raw_log_sum_exp(const RowRef& row, int64_t limit, Workspace& ws) {
  if (row.f32()) return kernels::log_sum_exp(row.f32(), limit);
  kernels::load_row(row, limit, ws.dense);
  return kernels::log_sum_exp(ws.dense.data(), limit);
}

bool all_masked(const CandidateSet& set) {
  for (const auto& c : set.items) {
    if (c.logit != kNegInf) return false;
  }
  return true;
}

// Best `n` of the set, best first, written as (id, logit - lse).
void write_top(CandidateSet& set, double lse, RowOutput& out, int32_t n) {
  auto& v = set.items;
  const auto m = std::min<size_t>(n, v.size());
  std::partial_sort(v.begin(), v.begin() + m, v.end(), ranks_before);
  for (size_t i = 0; i < m; ++i) {
    out.top_ids[i] = v[i].id;
    out.top_logprobs[i] = static_cast<float>(v[i].logit - lse);
  }
}
}  // namespace

void run_edits(const Chain& chain, const History& history, const RowRef& row, int64_t limit,
               Shift shift, Workspace& ws) {
  ws.overrides.reset(limit);
  EditContext ctx{row, shift, limit, history, ws.overrides, ws.counter};
  for (const auto& e : chain.edits()) e->apply(ctx);
}

RowRef apply_token_mask(const RowRef& row, int64_t limit, const uint32_t* mask, Workspace& ws, int32_t& empty_id) {
  kernels::load_row(row, limit, ws.masked);  // NaN -> -inf, as every other path reads the row
  kernels::apply_bitmask(ws.masked.data(), limit, mask);
  // A disallowed id's override becomes -inf (kept, not erased, so the entries keep the order
  // they have on the pre-masked row, where the edits produce -inf there too).
  for (size_t i = 0; i < ws.overrides.entries().size(); ++i) {
    const int32_t t = ws.overrides.entries()[i].id;
    if (!token_allowed(mask, t)) ws.overrides.set(t, kNegInf);
  }
  empty_id = first_allowed(mask, limit);
  const LogitsView view{ws.masked.data(), DType::kFloat32, 1, limit, limit};
  return RowRef(view, 0);
}

void extract_masked_candidates(const RowRef& masked, int64_t limit, int64_t k, Shift shift, Workspace& ws,
                               int32_t empty_id) {
  extract_candidates(masked, limit, k, shift, ws, nullptr, empty_id);
  // All -inf: no allowed id survived the edits (candidates hold every finite value, edited ones
  // included). The fallback: drop the edits for this row; the mask is the hard constraint, so
  // the allowed ids keep their unedited values. Costs nothing unless it happens.
  if (all_masked(ws.set) && !ws.overrides.entries().empty()) {
    ws.overrides.reset(limit);
    extract_candidates(masked, limit, k, shift, ws, nullptr, empty_id);
  }
}

void extract_candidates(const RowRef& row, int64_t limit, int64_t k, Shift shift, Workspace& ws,
                        const kernels::RowMaxima* maxima, int32_t empty_id) {
  const auto& entries = ws.overrides.entries();
  auto& items = ws.set.items;
  ws.set.sorted = false;
  if (k > 0) {
    kernels::top_candidates(row, limit, k, entries, maxima, items, ws.convert_buf);
    if (shift.max != 0.0f || shift.log_sum != 0.0f) {
      for (auto& c : items) c.logit = shift.apply(c.logit);
    }
    if (!entries.empty()) {
      ws.flags.assign(entries.size(), 0);
      for (auto& c : items) {
        if (ws.overrides.has(c.id)) {
          c.logit = ws.overrides.get(c.id);
          ws.flags[ws.overrides.slot(c.id)] = 1;
        }
      }
      for (size_t i = 0; i < entries.size(); ++i) {
        if (!ws.flags[i]) items.push_back(entries[i]);
      }
    }
  } else {
    kernels::load_row(row, limit, ws.dense);
    if (shift.max != 0.0f || shift.log_sum != 0.0f) {
      for (auto& x : ws.dense) x = shift.apply(x);
    }
    for (const auto& e : entries) ws.dense[e.id] = e.logit;
    items.clear();
    items.reserve(limit);
    for (int64_t i = 0; i < limit; ++i) {
      if (ws.dense[i] != kNegInf) items.push_back({ws.dense[i], static_cast<int32_t>(i)});
    }
  }
  if (items.empty()) items.push_back({kNegInf, empty_id});  // nothing finite: any valid id will do
  drop_masked(ws.set);
}

void sample_row(const Chain& chain, const SamplingParams& params, const History& history,
                const RowRef& row, int64_t limit, uint64_t position, Workspace& ws, RowOutput& out,
                const uint32_t* mask) {
  run_edits(chain, history, row, limit, Shift{}, ws);
  // `src`: where candidates come from; the model's row, or its masked copy. Raw-mode log-probs
  // always read `row`: they describe the model, not the constraint.
  int32_t empty_id = 0;
  const RowRef src = mask ? apply_token_mask(row, limit, mask, ws, empty_id) : row;
  const bool want = params.logprobs || params.top_logprobs > 0;
  const bool processed = params.logprobs_mode == LogprobsMode::kProcessed;
  const int32_t top_n = std::min(params.top_logprobs, out.top_n);
  CandidateSet& set = ws.set;

  int64_t k = chain.top_k();
  if (chain.greedy()) k = std::max<int64_t>(1, want && processed ? top_n : 1);
  if (mask) {
    extract_masked_candidates(src, limit, k, Shift{}, ws, empty_id);
  } else {
    extract_candidates(row, limit, k, Shift{}, ws);
  }
  if (!chain.greedy()) {
    for (const auto& w : chain.warpers()) w->apply(set, ws);
  }
  const Candidate chosen = set.items[chain.selector().select(set, position)];
  out.token = chosen.id;
  out.logprob = kNaN;
  out.rank = 0;
  for (int32_t i = 0; i < out.top_n; ++i) {
    out.top_ids[i] = -1;
    out.top_logprobs[i] = kNaN;
  }
  if (!want) return;

  if (processed) {
    const double lse = chain.greedy() ? edited_log_sum_exp(src, limit, ws) : set.log_sum_exp();
    out.logprob = static_cast<float>(chosen.logit - lse);
    int32_t above = 0;
    for (const auto& c : set.items) above += c.logit > chosen.logit ? 1 : 0;
    out.rank = 1 + above;
    if (top_n > 0) write_top(set, lse, out, top_n);
    return;
  }
  const double lse = raw_log_sum_exp(row, limit, ws);
  const float raw = row.at(chosen.id);
  out.logprob = static_cast<float>(raw - lse);
  if (row.f32()) {
    out.rank = 1 + static_cast<int32_t>(kernels::count_greater(row.f32(), limit, raw));
  } else {
    kernels::load_row(row, limit, ws.dense);
    out.rank = 1 + static_cast<int32_t>(kernels::count_greater(ws.dense.data(), limit, raw));
  }
  if (top_n > 0) {
    kernels::top_candidates(row, limit, top_n, {}, nullptr, ws.alt.items, ws.convert_buf);
    write_top(ws.alt, lse, out, top_n);
  }
}

void process_row(const Chain& chain, const History& history, const RowRef& row, int64_t limit,
                 int64_t width, Workspace& ws, float* out, const uint32_t* mask) {
  run_edits(chain, history, row, limit, Shift{}, ws);
  int32_t empty_id = 0;
  const RowRef src = mask ? apply_token_mask(row, limit, mask, ws, empty_id) : row;
  std::fill(out, out + width, kNegInf);
  if (chain.greedy()) {
    kernels::load_row(src, limit, ws.dense);
    for (const auto& e : ws.overrides.entries()) ws.dense[e.id] = e.logit;
    if (mask && kernels::max_value(ws.dense.data(), limit) == kNegInf) {  // the fallback, as below
      ws.overrides.reset(limit);
      kernels::load_row(src, limit, ws.dense);
    }
    std::copy(ws.dense.begin(), ws.dense.begin() + limit, out);
    return;
  }
  if (mask) {
    extract_masked_candidates(src, limit, chain.top_k(), Shift{}, ws, empty_id);
  } else {
    extract_candidates(row, limit, chain.top_k(), Shift{}, ws);
  }
  for (const auto& w : chain.warpers()) w->apply(ws.set, ws);
  for (const auto& c : ws.set.items) out[c.id] = c.logit;
}

}  // namespace tokenwire
