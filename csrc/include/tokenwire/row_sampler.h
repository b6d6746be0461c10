// One row through its chain: candidate extraction, edits, warpers, selector, log-probs.
//
// Candidates: with a top-k stage (or a greedy selector) the row is read once by streaming
// selection of the k + E largest raw logits, E being the number of ids the edits touched; the
// edited ids are then patched in. That superset provably holds the true top-k of the edited
// logits (an untouched id outranked by k others cannot reach the top k), so no stage ever sees
// the rest of the vocabulary. Without top-k, the candidates are the whole row.
//
// Masked rows (token_mask.h) take a dense path: the row is copied once with its disallowed ids
// set to -inf (ws.masked), the overrides of disallowed ids are set to -inf, and candidates are
// then extracted from that copy exactly as above, streaming top-k included (it stays correct:
// the copy is just another row). Because the copy equals "the logits with disallowed ids at
// -inf", a masked row goes through the very same operations, in the same order, as that
// pre-masked row would unmasked, so tokens and log-probs are bit-identical to it. Unmasked
// rows never touch the mask code.
#pragma once

#include <cstdint>

#include "tokenwire/chain.h"
#include "tokenwire/kernels.h"
#include "tokenwire/logits.h"
#include "tokenwire/params.h"
#include "tokenwire/stages.h"
#include "tokenwire/token_mask.h"
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

// `limit` = min(vocab limit, row width): the vocabulary guard. `mask`: the row's token-mask
// words (token_mask.h), or nullptr for an unconstrained row; it must allow some id < limit.
void sample_row(const Chain& chain, const SamplingParams& params, const History& history,
                const RowRef& row, int64_t limit, uint64_t position, Workspace& ws, RowOutput& out,
                const uint32_t* mask = nullptr);

// Writes the distribution the selector would see, as logits, into out[0, width): the edited
// (and masked) logits for greedy rows, the warped survivors (others -inf) for sampling rows.
void process_row(const Chain& chain, const History& history, const RowRef& row, int64_t limit,
                 int64_t width, Workspace& ws, float* out, const uint32_t* mask = nullptr);

// Applies the chain's edits for `history` to ws.overrides (values through `shift`).
void run_edits(const Chain& chain, const History& history, const RowRef& row, int64_t limit,
               Shift shift, Workspace& ws);

// The mask stage (6b), after run_edits: writes the row with its disallowed ids at -inf into
// ws.masked and sets the overrides of disallowed ids to -inf. Returns the row to extract
// candidates from (a view of ws.masked, valid until ws.masked changes); `empty_id` receives
// the lowest allowed id, the answer when even the unedited allowed values are all -inf / NaN.
RowRef apply_token_mask(const RowRef& row, int64_t limit, const uint32_t* mask, Workspace& ws, int32_t& empty_id);

// extract_candidates on apply_token_mask's row, plus the fallback: if no allowed id is left
// above -inf (the edits banned them all), the overrides are dropped and the candidates are
// the allowed ids with their unedited values.
void extract_masked_candidates(const RowRef& masked, int64_t limit, int64_t k, Shift shift, Workspace& ws,
                               int32_t empty_id);

// Fills ws.set with a superset of the k best edited logits (see the header comment), edits
// already run (`maxima`: the row's row_maxima, when the caller has it); -inf items are dropped
// unless nothing else is left. k <= 0: the whole row. A row with nothing finite yields the
// single item (-inf, empty_id).
void extract_candidates(const RowRef& row, int64_t limit, int64_t k, Shift shift, Workspace& ws,
                        const kernels::RowMaxima* maxima = nullptr, int32_t empty_id = 0);

}  // namespace tokenwire
