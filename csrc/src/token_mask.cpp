#include "tokenwire/token_mask.h"

#include <stdexcept>
#include <string>

namespace tokenwire {

namespace {
// The bits of word w that fall inside [0, limit).
uint32_t word_in_range(const uint32_t* row_bits, int64_t w, int64_t limit) {
  const int64_t left = limit - w * 32;
  return left >= 32 ? row_bits[w] : row_bits[w] & ((1u << left) - 1u);
}
}  // namespace

int64_t count_allowed(const uint32_t* row_bits, int64_t limit) {
  int64_t n = 0;
  for (int64_t w = 0, nw = (limit + 31) / 32; w < nw; ++w) n += __builtin_popcount(word_in_range(row_bits, w, limit));
  return n;
}

int32_t first_allowed(const uint32_t* row_bits, int64_t limit) {
  for (int64_t w = 0, nw = (limit + 31) / 32; w < nw; ++w) {
    const uint32_t b = word_in_range(row_bits, w, limit);
    if (b) return static_cast<int32_t>(w * 32 + __builtin_ctz(b));
  }
  return -1;
}

void check_token_mask_rows(const TokenMask& mask, int64_t first, int64_t n, int64_t limit) {
  if (!mask.bits) return;
  const int64_t need = (limit + 31) / 32;
  if (mask.words < need) {
    throw std::invalid_argument("token_mask has " + std::to_string(mask.words) + " words per row; covering the " +
                                std::to_string(limit) + " ids in use needs at least ceil(" + std::to_string(limit) +
                                " / 32) = " + std::to_string(need));
  }
  for (int64_t i = first; i < first + n; ++i) {
    const uint32_t* b = mask.row(i);
    if (b && count_allowed(b, limit) == 0) {
      throw std::invalid_argument("token_mask row " + std::to_string(i) + " allows no token id below " +
                                  std::to_string(limit) +
                                  " (a masked row must allow at least one id; set its mask_rows entry to False to "
                                  "leave it unconstrained)");
    }
  }
}

void check_token_mask(const TokenMask& mask, int64_t rows, int64_t limit) {
  if (!mask.bits) return;
  if (mask.rows != rows) {
    throw std::invalid_argument("token_mask has " + std::to_string(mask.rows) + " rows, the logits have " +
                                std::to_string(rows));
  }
  check_token_mask_rows(mask, 0, rows, limit);
}

}  // namespace tokenwire
