// One row through its chain: candidate extraction, edits, warpers, selector, log-probs.
//
// Candidates: with a top-k stage (or a greedy selector) the row is read once by streaming
// selection of the k + E largest raw logits, E being the number of ids the edits touched; the
// edited ids are then patched in. That superset provably holds the true top-k of the edited
// logits (an untouched id outranked by k others cannot reach the top k), so no stage ever sees
// the rest of the vocabulary. Without top-k, the candidates are the whole row.
#pragma once

#include <cstdint>

#include "tokenwire/chain.h"
#include "tokenwire/kernels.h"
#include "tokenwire/logits.h"
#include "tokenwire/params.h"
#include "tokenwire/stages.h"
#include "tokenwire/workspace.h"

namespace tokenwire {

struct RowOutput {
  int32_t token = -1;
  float logprob = 0.0f;   // NaN unless params.logprobs or top_logprobs
  int32_t rank = 0;       // 1-based rank of `token` in that distribution; 0 when not asked
  int32_t* top_ids = nullptr;  // [top_n], best first; -1 padding
  float* top_logprobs = nullptr;
  int32_t top_n = 0;
};

// `limit` = min(vocab limit, row width): the vocabulary guard.
void sample_row(const Chain& chain, const SamplingParams& params, const History& history,
                const RowRef& row, int64_t limit, uint64_t position, Workspace& ws, RowOutput& out);

// Writes the distribution the selector would see, as logits, into out[0, width): the edited
// logits for greedy rows, the warped survivors (others -inf) for sampling rows. For tests.
void process_row(const Chain& chain, const History& history, const RowRef& row, int64_t limit,
                 int64_t width, Workspace& ws, float* out);

// Applies the chain's edits for `history` to ws.overrides (values through `shift`).
void run_edits(const Chain& chain, const History& history, const RowRef& row, int64_t limit,
               Shift shift, Workspace& ws);

// Fills ws.set with a superset of the k best edited logits (see the header comment), edits
// already run (`maxima`: the row's row_maxima, when the caller has it); -inf items are dropped unless nothing else is left. k <= 0: the whole row.
void extract_candidates(const RowRef& row, int64_t limit, int64_t k, Shift shift, Workspace& ws,
                        const kernels::RowMaxima* maxima = nullptr);

}  // namespace tokenwire
