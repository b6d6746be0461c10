// The token mask (pipeline step 6b in stages.h): a per-row allow-list of token ids, as filled by
// a grammar engine such as xgrammar for structured output. Layout is xgrammar's token bitmask:
// int32 words, [rows, words]; token t is allowed iff bit (t % 32) of word (t / 32) is set.
//
// The mask is a hard constraint: the selected token is always an allowed one. It is applied
// after the edits (1-6) and before the warpers (7-11), for greedy rows too; disallowed ids
// become -inf. If the edits ban every allowed id, the row falls back to the allowed ids with
// their unedited values (the edits are dropped for that row): the grammar wins over the soft
// constraints, since generating a disallowed token would break the structured output.
#pragma once

#include <cstdint>

namespace tokenwire {

// A view of caller memory (zero copy). A null `bits` means no masking at all.
struct TokenMask {
  const uint32_t* bits = nullptr;  // [rows, words], row-major, C-contiguous
  int64_t rows = 0;
  int64_t words = 0;
  // [rows]; row i is masked iff active[i] != 0. Null: every row is masked. A row that is not
  // masked never reads its words and takes the unconstrained path, at no extra cost.
  const uint8_t* active = nullptr;

  // The words of row i, or nullptr when that row is not masked.
  const uint32_t* row(int64_t i) const {
    if (!bits || (active && !active[i])) return nullptr;
    return bits + i * words;
  }
};

inline bool token_allowed(const uint32_t* row_bits, int64_t t) {
  return ((row_bits[t >> 5] >> (t & 31)) & 1u) != 0;
}

// Number of allowed ids in [0, limit).
int64_t count_allowed(const uint32_t* row_bits, int64_t limit);

// Lowest allowed id in [0, limit), or -1.
int32_t first_allowed(const uint32_t* row_bits, int64_t limit);

// Checks rows [first, first + n) of a mask whose vocabulary guard is `limit`: enough words to
// cover [0, limit), and at least one allowed id in [0, limit) in every masked row. Throws
// std::invalid_argument naming the offending row.
void check_token_mask_rows(const TokenMask& mask, int64_t first, int64_t n, int64_t limit);

// Checks a mask against a step of `rows` logits rows whose vocabulary guard is `limit`: the
// row count, enough words to cover [0, limit), and at least one allowed id in [0, limit) in
// every masked row (an empty allow-list is a caller bug, not something to sample around).
// Throws std::invalid_argument naming the offending row. Called before any row is stepped, so
// a bad mask leaves every row's state untouched. O(rows × words), tiny next to the logits.
void check_token_mask(const TokenMask& mask, int64_t rows, int64_t limit);

}  // namespace tokenwire
