// Dense, vectorised passes over one row of logits. These are the only loops that touch every
// vocabulary entry; everything else works on a few candidates. Results are bit-identical
// whichever CPU runs them: every variant does the same float operations in the same order (no
// FMA contraction). Two kinds of variants:
//   - kernels.cpp (max_value, sum_exp_shifted, count_greater, the streaming selection's chunk
//     maxima): 16-float vector-extension code compiled three times (x86-64-v4, x86-64-v3,
//     baseline) and picked once at load time. Only the v4 clone is fully vectorised: GCC splits
//     the 64-byte compares and selects into scalar code for AVX2 and SSE2.
//   - softmax_pass.cpp (row_maxima, row_maxima_sum_exp and so log_sum_exp, at_least_mask64):
//     written over the register width and instantiated at 16, 8 and 4 floats (src/simd.h),
//     picked once at run time, so AVX2 and SSE2 / NEON machines get real vector code too.
#pragma once

#include <cstdint>
#include <vector>

#include "tokenwire/candidates.h"
#include "tokenwire/logits.h"

namespace tokenwire::kernels {

// Largest finite-or-infinite value of x[0, n); -inf when n == 0 or all NaN.
float max_value(const float* x, int64_t n);

// log(sum(exp(x[i]))) over [0, n), NaN entries skipped; -inf when nothing is finite. Runs
// row_maxima_sum_exp (below), so it is good to ~2e-7 (terms under 1.5e-8 of the sum may be left
// out).
double log_sum_exp(const float* x, int64_t n);

// sum(exp(x[i] - shift)) over [0, n) for x[i] <= shift (larger entries and NaN count as 0).
double sum_exp_shifted(const float* x, int64_t n, float shift);

// Number of entries strictly greater than `v`.
int64_t count_greater(const float* x, int64_t n, float v);

// One read pass: the maximum of every 64-entry chunk of the row's [0, n), of every group of 16
// chunks (1024 entries), and of the row.
constexpr int64_t kChunkSize = 64;
constexpr int64_t kGroupChunks = 16;
struct RowMaxima {
  std::vector<float> chunk;
  std::vector<float> group;
  float max = 0.0f;
};
void row_maxima(const RowRef& row, int64_t n, RowMaxima& out, std::vector<float>& convert_buf);

// One read pass over the row's [0, n): everything row_maxima() gives (chunk, group and row
// maxima) and sum(exp(x[i] - out.max)), so log_softmax's normaliser is out.max + log(result).
// Entries more than 18 + ln(2)·(bit_width(n) + 1) below the maximum may be left out (together
// < 1.5e-8 of the sum); NaN and -inf entries add at most e^-86 each; 0 when nothing is finite.
// `next`: the float32 row the caller reads after this one, if known: its start is prefetched.
double row_maxima_sum_exp(const RowRef& row, int64_t n, RowMaxima& out, std::vector<float>& convert_buf,
                          const float* next = nullptr);

// Vector width (floats per register) of the width-generic pass (row_maxima_sum_exp): 16 with
// x86-64-v4, 8 with x86-64-v3, else 4; chosen once from the CPU. Results are the same at every
// width. force_vector_lanes (tests, benchmarks) picks a narrower one; 0 restores the best; it
// returns the width now in use. Not to be called while other threads run kernels.
int vector_lanes();
int force_vector_lanes(int lanes);

// Bit i set where x[i] >= t, for exactly 64 entries (never for NaN).
uint64_t at_least_mask64(const float* x, float t);

// Fills `out` with a superset of the `k` largest entries of the row's [0, n) among the ids
// not in `excluded` (ties with the k-th value included), without sorting the row. Excluded ids
// (the ones edits overwrite) may appear too, with their raw values. NaN and -inf entries are
// never candidates. `maxima`, if given, must be row_maxima() or row_maxima_sum_exp() of the same
// row and n.
void top_candidates(const RowRef& row, int64_t n, int64_t k, const std::vector<Candidate>& excluded,
                    const RowMaxima* maxima, std::vector<Candidate>& out, std::vector<float>& convert_buf);

// x[i] = -inf for every i in [0, n) whose bit (i % 32) of bits[i / 32] is clear (a token mask).
void apply_bitmask(float* x, int64_t n, const uint32_t* bits);

// Converts the row's [0, n) to float into `out` (resized), NaN mapped to -inf.
void load_row(const RowRef& row, int64_t n, std::vector<float>& out);

}  // namespace tokenwire::kernels
