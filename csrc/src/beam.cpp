#include "tokenwire/beam.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "tokenwire/kernels.h"
#include "tokenwire/row_sampler.h"

namespace tokenwire {

namespace {
constexpr float kMasked = -1.0e9f;  // transformers' "very large negative" beam score

SamplingParams edits_only(SamplingParams p) {
  p.greedy = true;  // no warpers
  return p;
}

// log_softmax's (max, log-sum) of the row, in one read of it; the chunk maxima that read
// leaves are kept for the selection. `next`: the row read after this one, for prefetching.
Shift log_softmax_shift(const RowRef& row, int64_t limit, Workspace& ws, kernels::RowMaxima& maxima,
                        const float* next) {
  const double s = kernels::row_maxima_sum_exp(row, limit, maxima, ws.convert_buf, next);
  return Shift{maxima.max, static_cast<float>(std::log(s))};
}
}  // namespace

BeamSearch::BeamSearch(const BeamParams& params, std::vector<int32_t> prompt, int64_t vocab_size)
    : params_(params), chain_(Chain::build(edits_only(params.edits))), prompt_(std::move(prompt)),
      vocab_size_(vocab_size) {
  if (params.num_beams < 1) throw std::invalid_argument("num_beams must be >= 1");
  if (params.num_return_sequences < 1 || params.num_return_sequences > params.num_beams) {
    throw std::invalid_argument("num_return_sequences must be in [1, num_beams]");
  }
  if (params.max_new_tokens < 1) throw std::invalid_argument("max_new_tokens must be >= 1");
  const int64_t n_eos = static_cast<int64_t>(params.eos_token_ids.size());
  beams_to_keep_ = std::max<int64_t>(2, 1 + n_eos) * params.num_beams;
  running_.push_back({-1, 0.0f});
  for (int32_t b = 1; b < params.num_beams; ++b) running_.push_back({-1, kMasked});
}

bool BeamSearch::is_eos(int32_t id) const {
  return std::find(params_.eos_token_ids.begin(), params_.eos_token_ids.end(), id) != params_.eos_token_ids.end();
}

void BeamSearch::history_of(int32_t node, std::vector<int32_t>& out) const {
  out.assign(prompt_.begin(), prompt_.end());
  const size_t start = out.size();
  for (int32_t n = node; n >= 0; n = nodes_[n].parent) out.push_back(nodes_[n].token);
  std::reverse(out.begin() + start, out.end());
}

std::vector<int32_t> BeamSearch::sequence(int32_t node) const {
  std::vector<int32_t> s;
  for (int32_t n = node; n >= 0; n = nodes_[n].parent) s.push_back(nodes_[n].token);
  std::reverse(s.begin(), s.end());
  return s;
}

void BeamSearch::check_mask(const LogitsView& logits, int64_t first_row, const TokenMask& mask) const {
  if (!mask.bits) return;
  if (mask.rows != logits.rows) {
    throw std::invalid_argument("token_mask has " + std::to_string(mask.rows) + " rows, the logits have " +
                                std::to_string(logits.rows));
  }
  check_token_mask_rows(mask, first_row, rows_expected(), std::min(vocab_size_, logits.vocab));
}

void BeamSearch::step(const LogitsView& logits, int64_t first_row, int32_t* parents, int32_t* tokens,
                      Workspace& ws, const TokenMask& mask) {
  if (done_) throw std::logic_error("beam search already done");
  check_mask(logits, first_row, mask);
  const int32_t nb = params_.num_beams;
  const int64_t limit = std::min(vocab_size_, logits.vocab);
  const int64_t keep = beams_to_keep_;
  std::vector<Candidate3> cands;
  cands.reserve(static_cast<size_t>(nb * keep));

  // Per beam: log-probs, edits on them, the best `keep` continuations plus the running score.
  // Before the first step every beam holds the prompt, so one row serves them all.
  std::vector<Candidate> best;
  for (int32_t b = 0; b < nb; ++b) {
    if (b == 0 || generated_ > 0) {
      const int64_t r = first_row + (generated_ == 0 ? 0 : b);
      const RowRef row(logits, r);
      const float* next = r + 1 < logits.rows ? RowRef(logits, r + 1).f32() : nullptr;
      const Shift shift = log_softmax_shift(row, limit, ws, ws.maxima, next);
      const History* hp = nullptr;
      History h;
      if (!chain_.edits().empty()) {
        history_of(running_[b].node, ws.tokens);
        h = History{ws.tokens.data(), static_cast<int64_t>(ws.tokens.size()), static_cast<int64_t>(prompt_.size())};
        hp = &h;
      }
      static const History kEmpty{};
      run_edits(chain_, hp ? *hp : kEmpty, row, limit, shift, ws);
      if (const uint32_t* bits = mask.row(r)) {
        // Masked: candidates from the masked copy; the shift stays the unmasked row's (the
        // mask does not renormalise), and the row's maxima do not describe the copy.
        int32_t empty_id = 0;
        const RowRef src = apply_token_mask(row, limit, bits, ws, empty_id);
        extract_masked_candidates(src, limit, keep, shift, ws, empty_id);
      } else {
        extract_candidates(row, limit, keep, shift, ws, &ws.maxima);
      }
      auto& v = ws.set.items;
      const size_t m = std::min<size_t>(keep, v.size());
      std::partial_sort(v.begin(), v.begin() + m, v.end(), ranks_before);
      best.assign(v.begin(), v.begin() + m);
    }
    for (const auto& c : best) cands.push_back({c.logit + running_[b].score, b, c.id});
  }
  // Best `keep` over beams × vocab; ties to the lower flat index, as a stable top-k would.
  const size_t k = std::min<size_t>(keep, cands.size());
  std::partial_sort(cands.begin(), cands.begin() + k, cands.end(), [&](const Candidate3& a, const Candidate3& b) {
    if (a.score != b.score) return a.score > b.score;
    return a.beam != b.beam ? a.beam < b.beam : a.id < b.id;
  });
  cands.resize(k);

  const int64_t new_len = generated_ + 1;
  std::vector<char> hits(k);
  bool all_hit = true;
  for (size_t j = 0; j < k; ++j) {
    hits[j] = is_eos(cands[j].id) || new_len >= params_.max_new_tokens;
    all_hit = all_hit && hits[j];
  }

  // Continue with the best nb that did not end (ended ones pushed down by -1e9, as transformers).
  std::vector<std::pair<float, size_t>> order(k);
  for (size_t j = 0; j < k; ++j) order[j] = {cands[j].score + (hits[j] ? kMasked : 0.0f), j};
  std::stable_sort(order.begin(), order.end(), [](const auto& a, const auto& b) { return a.first > b.first; });

  // New hypotheses: only the top nb continuations may end; none once full under
  // early_stopping=True or once improvement is impossible.
  const bool full = static_cast<int32_t>(finished_.size()) == nb;
  if (improvable_ && !(params_.early_stopping == EarlyStopping::kTrue && full)) {
    const float denom = static_cast<float>(std::pow(static_cast<double>(new_len), params_.length_penalty));
    std::vector<std::pair<Beam, int32_t>> merged;
    for (size_t i = 0; i < finished_.size(); ++i) merged.push_back({finished_[i], finished_len_[i]});
    for (size_t j = 0; j < std::min<size_t>(nb, k); ++j) {
      if (!hits[j]) continue;
      nodes_.push_back({cands[j].id, running_[cands[j].beam].node});
      merged.push_back({{static_cast<int32_t>(nodes_.size() - 1), cands[j].score / denom},
                        static_cast<int32_t>(new_len)});
    }
    std::stable_sort(merged.begin(), merged.end(),
                     [](const auto& a, const auto& b) { return a.first.score > b.first.score; });
    if (static_cast<int32_t>(merged.size()) > nb) merged.resize(nb);
    finished_.clear();
    finished_len_.clear();
    for (const auto& [beam, len] : merged) {
      finished_.push_back(beam);
      finished_len_.push_back(len);
    }
  }

  std::vector<Beam> next;
  for (int32_t i = 0; i < nb; ++i) {
    const Candidate3& c = cands[order[i].second];
    nodes_.push_back({c.id, running_[c.beam].node});
    next.push_back({static_cast<int32_t>(nodes_.size() - 1), order[i].first});
    parents[i] = generated_ == 0 ? 0 : c.beam;
    tokens[i] = c.id;
  }
  running_.swap(next);
  generated_ = new_len;

  const bool never = params_.early_stopping == EarlyStopping::kNever && params_.length_penalty > 0.0;
  const double hypothetical_len = never ? params_.max_new_tokens : generated_;
  const float best_possible =
      running_[0].score / static_cast<float>(std::pow(hypothetical_len, params_.length_penalty));
  const float worst = static_cast<int32_t>(finished_.size()) < nb ? kMasked : finished_.back().score;
  improvable_ = improvable_ && best_possible > worst;
  const bool full_now = static_cast<int32_t>(finished_.size()) == nb;
  done_ = !improvable_ || (params_.early_stopping == EarlyStopping::kTrue && full_now) || all_hit;
}

std::vector<Hypothesis> BeamSearch::hypotheses() const {
  std::vector<Hypothesis> out;
  for (size_t i = 0; i < finished_.size(); ++i) out.push_back({sequence(finished_[i].node), finished_[i].score, true});
  if (!done_ && generated_ > 0) {
    const float denom = static_cast<float>(std::pow(static_cast<double>(generated_), params_.length_penalty));
    for (const auto& b : running_) {
      if (b.score <= kMasked) continue;
      out.push_back({sequence(b.node), b.score / denom, false});
    }
    std::stable_sort(out.begin(), out.end(), [](const Hypothesis& a, const Hypothesis& b) { return a.score > b.score; });
  }
  if (static_cast<int32_t>(out.size()) > params_.num_return_sequences) out.resize(params_.num_return_sequences);
  return out;
}

void step_beams(const std::vector<BeamSearch*>& searches, const LogitsView& logits, ThreadPool& pool,
                std::vector<Workspace>& ws, int32_t* parents, int32_t* tokens, const TokenMask& mask) {
  std::vector<int64_t> row_at(searches.size()), out_at(searches.size());
  int64_t rows = 0, outs = 0;
  for (size_t i = 0; i < searches.size(); ++i) {
    if (searches[i]->done()) throw std::logic_error("beam search " + std::to_string(i) + " is already done");
    row_at[i] = rows;
    out_at[i] = outs;
    rows += searches[i]->rows_expected();
    outs += searches[i]->params().num_beams;
  }
  if (rows != logits.rows) {
    throw std::invalid_argument("logits has " + std::to_string(logits.rows) + " rows, the searches expect " +
                                std::to_string(rows));
  }
  // All searches' masks first: a bad row must not leave some searches stepped and others not.
  // (step() checks its rows again; that is O(words) per row, nothing next to the row pass.)
  for (size_t i = 0; i < searches.size(); ++i) searches[i]->check_mask(logits, row_at[i], mask);
  pool.parallel_for(static_cast<int64_t>(searches.size()), [&](int64_t i, int worker) {
    searches[i]->step(logits, row_at[i], parents + out_at[i], tokens + out_at[i], ws[worker], mask);
  });
}

}  // namespace tokenwire
