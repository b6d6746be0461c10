// Dense, vectorised passes over one row of logits. These are the only loops that touch every
// vocabulary entry; everything else works on a few candidates. On x86-64 they are compiled
// twice (baseline SSE2 and x86-64-v3 / AVX2) and picked once at load time; both clones do the
// same float operations in the same order (no FMA contraction), so results are bit-identical
// whichever CPU runs them.
#pragma once

#include <cstdint>
#include <vector>

#include "tokenwire/candidates.h"
#include "tokenwire/logits.h"

namespace tokenwire::kernels {

// Largest finite-or-infinite value of x[0, n); -inf when n == 0 or all NaN.
float max_value(const float* x, int64_t n);

// log(sum(exp(x[i]))) over [0, n), NaN entries skipped; -inf when nothing is finite.
double log_sum_exp(const float* x, int64_t n);

// sum(exp(x[i] - shift)) over [0, n) for x[i] <= shift (larger entries and NaN count as 0).
double sum_exp_shifted(const float* x, int64_t n, float shift);

// Number of entries strictly greater than `v`.
int64_t count_greater(const float* x, int64_t n, float v);

// One read pass: the maximum of every 64-entry chunk of the row's [0, n), and of the row.
struct RowMaxima {
  std::vector<float> chunk;
  float max = 0.0f;
};
void row_maxima(const RowRef& row, int64_t n, RowMaxima& out, std::vector<float>& convert_buf);

// Fills `out` with a superset of the `k` largest entries of the row's [0, n) among the ids
// not in `excluded` (ties with the k-th value included), without sorting the row. Excluded ids
// (the ones edits overwrite) may appear too, with their raw values. NaN and -inf entries are
// never candidates. `maxima`, if given, must be row_maxima() of the same row and n.
void top_candidates(const RowRef& row, int64_t n, int64_t k, const std::vector<Candidate>& excluded,
                    const RowMaxima* maxima, std::vector<Candidate>& out, std::vector<float>& convert_buf);

// Converts the row's [0, n) to float into `out` (resized), NaN mapped to -inf.
void load_row(const RowRef& row, int64_t n, std::vector<float>& out);

}  // namespace tokenwire::kernels
