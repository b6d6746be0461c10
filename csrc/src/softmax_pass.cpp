// Fused log-softmax normaliser: chunk maxima, running maximum and exp-sum in one read of a row
// (kernels::row_maxima_sum_exp, the beam step's per-row pass).
//
// The row is walked in blocks of 1024 entries (16 chunks of 64, 4 KiB, so they stay in L1).
// Per block, pass A reads it and writes its 16 chunk maxima (lane-wise maxima, then one
// transposing shuffle reduction for all 16 instead of 16 horizontal ones) and its group
// maximum; the running maximum M rises to the block's maximum if that is larger, rescaling what
// was summed so far by exp(M_old - M_new) (a few times per row); pass B sums exp(x - M) over
// the block from L1 while the next block (or the start of the next row) is prefetched.
// Each block's 32 float lane sums are then added into 32 double sums, so float accumulation
// error stays at the scale of 32 terms (the old two-pass sum accumulated thousands per lane).
//
// exp(u) for u <= 0: u is clamped at -86 (NaN too, so NaN and -inf entries add e^-86 ≈ 4e-38),
//   t = u·32/ln2 (the constant split in two floats, so its rounding does not bias the result),
//   k = round(t), f = t - k in [-1/2, 1/2],
//   s = 2^(k/32) = 2^(k >> 5) · T[k & 31]   exactly: T[j] = 2^(j/32) rounded to float, looked up
//       with one in-register permute (vpermt2d at 16 lanes), the power of two added straight
//       into its exponent field,
//   e^u ≈ s + s·p,   p = (C2·f + C1)·f ≈ 2^(f/32) - 1   (a minimax quadratic, error 5.3e-8).
// Relative error per entry: under 1.7e-7 + |u|·6e-8 (the quadratic, T's rounding, two float
// roundings, and rounding t — the last the same size as what rounding x - M to float already
// carries), unbiased (mean ~1e-8 over whole table periods). The two-pass version's Cephes exp
// was better per entry (8e-8) but summed thousands of terms per float lane (errors to ~1e-6 in
// the log-sum); the log-sum here is good to ~2e-7. 16 vector operations per 16 entries at 16
// lanes (vreduceps + vcvtps2dq give f and k), 17 at 8 and 4, against ~30 for that Cephes exp.
//
// Skipping: a chunk (or block) whose maximum is below M - G, G = 18 + ln(2)·(bit_width(n) + 1),
// is not summed. Every skipped entry is < e^-G of the final maximum's term (which is 1 in the
// sum), so all of them together change the sum by less than n·e^-G < e^-18 ≈ 1.5e-8 of itself:
// below float32 resolution of the log-sum. It takes a whole 64-entry chunk that far down, so
// random logits never get there, nor do most rows of real models; rows with long stretches of
// masked, untrained or otherwise hopeless ids (a vocabulary's reserved range, another script's
// block) do, and then those stretches cost one compare per chunk.
//
// Widths: see simd.h. The 16-, 8- and 4-lane instantiations give bit-identical results (the
// kernel tests check it), so which CPU runs the code does not change a beam search.
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "simd.h"
#include "tokenwire/kernels.h"

#if TW_X86_LEVELS
#include <immintrin.h>
#endif

namespace tokenwire::kernels {

namespace {

alignas(64) constexpr float kExp2Frac[32] = {
    0x1.000000p+0f, 0x1.059b0ep+0f, 0x1.0b5586p+0f, 0x1.11301ep+0f, 0x1.172b84p+0f, 0x1.1d4874p+0f,
    0x1.2387a6p+0f, 0x1.29e9e0p+0f, 0x1.306fe0p+0f, 0x1.371a74p+0f, 0x1.3dea64p+0f, 0x1.44e086p+0f,
    0x1.4bfdaep+0f, 0x1.5342b6p+0f, 0x1.5ab07ep+0f, 0x1.6247ecp+0f, 0x1.6a09e6p+0f, 0x1.71f75ep+0f,
    0x1.7a1148p+0f, 0x1.82589ap+0f, 0x1.8ace54p+0f, 0x1.93737cp+0f, 0x1.9c4918p+0f, 0x1.a5503cp+0f,
    0x1.ae89fap+0f, 0x1.b7f770p+0f, 0x1.c199bep+0f, 0x1.cb720ep+0f, 0x1.d5818ep+0f, 0x1.dfc974p+0f,
    0x1.ea4afap+0f, 0x1.f50766p+0f};
constexpr float kExpFloor = -86.0f;
constexpr float kLog2e32 = 46.16624069213867f;  // 32 / ln 2 = kLog2e32 + kLog2e32Lo
constexpr float kLog2e32Lo = 6.163081e-07f;
constexpr float kRoundMagic = 12582912.0f;  // 1.5 · 2^23
constexpr float kC1 = 0x1.62e586p-6f;       // 2^(f/32) ≈ 1 + C1·f + C2·f², |f| <= 1/2
constexpr float kC2 = 0x1.ebfd7cp-13f;
constexpr int64_t kChunk = kChunkSize;
constexpr int64_t kBlockChunks = kGroupChunks;
constexpr int64_t kBlock = kBlockChunks * kChunk;  // 1024 entries
constexpr int64_t kAhead = kBlock;                 // prefetch distance (measured: 1 block beats 2-8)
constexpr int kSumLanes = 32;                      // logical float lanes of the exp sums
static_assert(kBlockChunks == 16, "transpose_max16 reduces 16 chunks");

using simd::F;
using simd::I;
using simd::U;

// Table of 2^(j/32) with j << 18 taken off its bit pattern, so that adding k << 18 (k's low 5
// bits land back where they were taken off, its upper bits in the exponent) gives exactly the
// bit pattern of 2^(j/32) · 2^(k >> 5): one shift instead of two plus a mask.
struct Exp2Bits {
  alignas(64) int32_t v[32];
  Exp2Bits() {
    for (int j = 0; j < 32; ++j) {
      int32_t b;
      std::memcpy(&b, &kExp2Frac[j], sizeof b);
      v[j] = static_cast<int32_t>(static_cast<uint32_t>(b) - (static_cast<uint32_t>(j) << 18));
    }
  }
};
const Exp2Bits kExp2Bits;

// Exp2Bits[k & 31] for every lane.
template <int L>
struct Exp2Table {
  I<L> t[32 / L];
  TW_INLINE Exp2Table() {
    for (int p = 0; p < 32 / L; ++p) std::memcpy(&t[p], kExp2Bits.v + p * L, sizeof t[p]);
  }
  TW_INLINE I<L> lookup(I<L> k) const {
#if !defined(__clang__)
    if constexpr (L == 16) {
      return __builtin_shuffle(t[0], t[1], k);  // indices taken mod 32: one vpermt2d
    } else if constexpr (L == 8) {
      const I<L> lo = __builtin_shuffle(t[0], t[1], k), hi = __builtin_shuffle(t[2], t[3], k);
      return (k & 16) ? hi : lo;
    }
#endif
    I<L> r;
    for (int l = 0; l < L; ++l) r[l] = kExp2Bits.v[k[l] & 31];
    return r;
  }
};

template <int L>
TW_INLINE F<L> exp_nonpos(F<L> u, const Exp2Table<L>& tab) {
  u = simd::vmax<L>(u, simd::splat<L>(kExpFloor));  // NaN -> floor
  const F<L> t = u * kLog2e32;
  F<L> f;
  I<L> k;  // round(t) in the low bits (what the shift and the lookup below read)
#if TW_X86_LEVELS
  if constexpr (L == 16) {  // AVX-512DQ: t - round(t) in one instruction, round(t) in another
    __asm__("vreduceps $0, %1, %0" : "=v"(f) : "v"(t));
    __asm__("vcvtps2dq %1, %0" : "=v"(k) : "v"(t));
  } else
#endif
  {
    const F<L> y = t + kRoundMagic;  // the same k (nearest, ties to even) in the low mantissa bits
    f = t - (y - kRoundMagic);
    k = simd::bit_cast<I<L>>(y);
  }
  f = f + u * kLog2e32Lo;
  const F<L> p = (f * kC2 + kC1) * f;  // 2^(f/32) - 1
  // 2^(k/32) exactly: table bits + (k << 18), mod 2^32 (the 1.5·2^23 in y's bits shifts out).
  const F<L> s = simd::bit_cast<F<L>>(simd::bit_cast<U<L>>(tab.lookup(k)) + (simd::bit_cast<U<L>>(k) << 18));
  return s * p + s;
}

template <int L>
TW_INLINE float exp_nonpos_scalar(float u, const Exp2Table<L>& tab) {
  return exp_nonpos<L>(simd::splat<L>(u), tab)[0];
}

// Chunk maxima of a full block: out[16]; their maximum and minimum in *hi and *lo.
template <int L>
TW_INLINE void block_chunk_maxima(const float* x, float* out, float* hi, float* lo) {
  F<L> c[kBlockChunks];
  const F<L> ninf = simd::splat<L>(-std::numeric_limits<float>::infinity());
  for (int j = 0; j < kBlockChunks; ++j) {
    F<L> m = ninf;
    for (int p = 0; p < kChunk / L; ++p) m = simd::vmax<L>(simd::load<L>(x + j * kChunk + p * L), m);
    c[j] = m;
  }
  simd::transpose_max16<L>(c, out);  // leaves the maxima in c[0, 16 / L)
  F<L> a = c[0], b = c[0];
  for (int k = 1; k < kBlockChunks / L; ++k) {
    a = simd::vmax<L>(c[k], a);
    b = simd::vmin<L>(c[k], b);
  }
  *hi = simd::hmax<L>(a);
  *lo = simd::hmin<L>(b);
}

// Chunk maxima of a short block (len < kBlock): out[ceil(len / 64)].
template <int L>
TW_INLINE void short_block_chunk_maxima(const float* x, int64_t len, float* out) {
  const float ninf = -std::numeric_limits<float>::infinity();
  for (int64_t b = 0, c = 0; b < len; b += kChunk, ++c) {
    const int64_t end = std::min(len, b + kChunk);
    float m = ninf;
    int64_t i = b;
    if (end - b == kChunk) {
      F<L> v = simd::splat<L>(ninf);
      for (; i + L <= end; i += L) v = simd::vmax<L>(simd::load<L>(x + i), v);
      for (int l = 0; l < L; ++l) m = v[l] > m ? v[l] : m;
    }
    for (; i < end; ++i) m = x[i] > m ? x[i] : m;
    out[c] = m;
  }
}

// acc[p] += exp(x[i + p·L, + L) - m) for i in [begin, end) step kSumLanes (end - begin a
// multiple of kSumLanes), prefetching pf + [begin, end) (pf may be null) along the way.
template <int L>
TW_INLINE void exp_sum_steps(const float* x, int64_t begin, int64_t end, F<L> m, F<L>* acc,
                             const Exp2Table<L>& tab, const float* pf) {
  for (int64_t i = begin; i < end; i += kSumLanes) {
    if (pf) {  // the two cache lines at the same offset further on
      __builtin_prefetch(pf + i, 0, 3);
      __builtin_prefetch(pf + i + 16, 0, 3);
    }
    for (int p = 0; p < kSumLanes / L; ++p) acc[p] += exp_nonpos<L>(simd::load<L>(x + i + p * L) - m, tab);
  }
}

template <int L>
TW_INLINE double maxima_sum_exp_impl(const RowRef& row, int64_t n, const float* next, float* chunk_max,
                                     float* group_max, float* buf, float* row_max) {
  const float ninf = -std::numeric_limits<float>::infinity();
  const Exp2Table<L> tab;
  const float* x = row.f32();
  int bits = 0;
  while ((int64_t{1} << bits) < n) ++bits;
  const float gap = 18.0f + 0.6931472f * static_cast<float>(bits + 1);
  const int64_t padded = (n + kBlock - 1) / kBlock * kBlock;
  double sums[kSumLanes] = {};
  double rest = 0.0;  // entries past the last whole group of kSumLanes
  float m = ninf;
  for (int64_t b = 0; b < n; b += kBlock) {
    const int64_t len = std::min(kBlock, n - b);
    const float* p = x ? x + b : buf;
    if (!x) row.convert(b, len, buf);
    float* cm = chunk_max + b / kChunk;
    const int64_t chunks = (len + kChunk - 1) / kChunk;
    float bmax = ninf, bmin = std::numeric_limits<float>::infinity();
    if (len == kBlock) {
      block_chunk_maxima<L>(p, cm, &bmax, &bmin);
    } else {
      short_block_chunk_maxima<L>(p, len, cm);
      for (int64_t c = 0; c < chunks; ++c) {
        bmax = cm[c] > bmax ? cm[c] : bmax;
        bmin = cm[c] < bmin ? cm[c] : bmin;
      }
    }
    group_max[b / kBlock] = bmax;
    if (!(bmax > ninf)) continue;  // only -inf and NaN: they add nothing
    if (bmax > m) {
      if (m > ninf) {
        const double r = exp_nonpos_scalar<L>(m - bmax, tab);
        for (double& s : sums) s *= r;
        rest *= r;
      }
      m = bmax;
    }
    const float floor = m - gap;
    if (bmax < floor) continue;
    // What to prefetch: the block kAhead further on, in this row or (the last ones) the next.
    const int64_t ahead = b + kAhead;
    const float* pf = !x ? nullptr : ahead < n ? x + ahead : next ? next + (ahead - padded) : nullptr;
    const int64_t whole = len / kSumLanes * kSumLanes;
    const F<L> mv = simd::splat<L>(m);
    F<L> acc[kSumLanes / L] = {};
    if (bmin >= floor) {
      exp_sum_steps<L>(p, 0, whole, mv, acc, tab, pf);
    } else {
      if (pf) {
        for (int64_t i = 0; i < kBlock; i += 16) __builtin_prefetch(pf + i, 0, 3);
      }
      for (int64_t c = 0; c < chunks; ++c) {
        if (cm[c] < floor) continue;
        exp_sum_steps<L>(p, c * kChunk, std::min(whole, (c + 1) * kChunk), mv, acc, tab, nullptr);
      }
    }
    float lanes[kSumLanes];
    for (int q = 0; q < kSumLanes / L; ++q) simd::store<L>(lanes + q * L, acc[q]);
    for (int j = 0; j < kSumLanes; ++j) sums[j] += lanes[j];
    for (int64_t i = whole; i < len; ++i) {
      if (cm[i / kChunk] >= floor) rest += exp_nonpos_scalar<L>(p[i] - m, tab);
    }
  }
  *row_max = m;
  double s = 0.0;
  for (double v : sums) s += v;
  return s + rest;
}

// The same walk without the exp-sum: chunk, group and row maxima only (row_maxima()).
template <int L>
TW_INLINE void maxima_impl(const RowRef& row, int64_t n, float* chunk_max, float* group_max, float* buf,
                           float* row_max) {
  const float ninf = -std::numeric_limits<float>::infinity();
  const float* x = row.f32();
  float m = ninf;
  for (int64_t b = 0; b < n; b += kBlock) {
    const int64_t len = std::min(kBlock, n - b);
    const float* p = x ? x + b : buf;
    if (!x) row.convert(b, len, buf);
    float* cm = chunk_max + b / kChunk;
    float bmax = ninf, bmin = 0.0f;  // bmin unused here
    if (len == kBlock) {
      block_chunk_maxima<L>(p, cm, &bmax, &bmin);
    } else {
      short_block_chunk_maxima<L>(p, len, cm);
      for (int64_t c = 0; c < (len + kChunk - 1) / kChunk; ++c) bmax = cm[c] > bmax ? cm[c] : bmax;
    }
    group_max[b / kBlock] = bmax;
    m = bmax > m ? bmax : m;
  }
  *row_max = m;
}

using MaximaFn = void (*)(const RowRef&, int64_t, float*, float*, float*, float*);

void maxima_4(const RowRef& row, int64_t n, float* cm, float* gm, float* buf, float* mx) {
  maxima_impl<4>(row, n, cm, gm, buf, mx);
}
#if TW_X86_LEVELS
TW_TARGET_V3 void maxima_8(const RowRef& row, int64_t n, float* cm, float* gm, float* buf, float* mx) {
  maxima_impl<8>(row, n, cm, gm, buf, mx);
}
TW_TARGET_V4 void maxima_16(const RowRef& row, int64_t n, float* cm, float* gm, float* buf, float* mx) {
  maxima_impl<16>(row, n, cm, gm, buf, mx);
}
#endif

using MaximaSumExpFn = double (*)(const RowRef&, int64_t, const float*, float*, float*, float*, float*);

double maxima_sum_exp_4(const RowRef& row, int64_t n, const float* next, float* cm, float* gm, float* buf,
                        float* mx) {
  return maxima_sum_exp_impl<4>(row, n, next, cm, gm, buf, mx);
}
#if TW_X86_LEVELS
TW_TARGET_V3 double maxima_sum_exp_8(const RowRef& row, int64_t n, const float* next, float* cm, float* gm,
                                     float* buf, float* mx) {
  return maxima_sum_exp_impl<8>(row, n, next, cm, gm, buf, mx);
}
TW_TARGET_V4 double maxima_sum_exp_16(const RowRef& row, int64_t n, const float* next, float* cm, float* gm,
                                      float* buf, float* mx) {
  return maxima_sum_exp_impl<16>(row, n, next, cm, gm, buf, mx);
}
#endif

#if !TW_X86_LEVELS
uint64_t at_least_mask64_scalar(const float* x, float t) {
  uint64_t m = 0;
  for (int i = 0; i < 64; ++i) m |= static_cast<uint64_t>(x[i] >= t) << i;
  return m;
}
#else
uint64_t at_least_mask64_sse2(const float* x, float t) {
  const __m128 tv = _mm_set1_ps(t);
  uint64_t m = 0;
  for (int i = 0; i < 16; ++i) {
    m |= static_cast<uint64_t>(_mm_movemask_ps(_mm_cmpge_ps(_mm_loadu_ps(x + 4 * i), tv))) << (4 * i);
  }
  return m;
}
TW_TARGET_V3 uint64_t at_least_mask64_avx2(const float* x, float t) {
  const __m256 tv = _mm256_set1_ps(t);
  uint64_t m = 0;
  for (int i = 0; i < 8; ++i) {
    m |= static_cast<uint64_t>(_mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(x + 8 * i), tv, _CMP_GE_OQ)))
         << (8 * i);
  }
  return m;
}
TW_TARGET_V4 uint64_t at_least_mask64_avx512(const float* x, float t) {
  const __m512 tv = _mm512_set1_ps(t);
  uint64_t m = 0;
  for (int i = 0; i < 4; ++i) {
    m |= static_cast<uint64_t>(_mm512_cmp_ps_mask(_mm512_loadu_ps(x + 16 * i), tv, _CMP_GE_OQ)) << (16 * i);
  }
  return m;
}
#endif

int best_lanes() {
#if TW_X86_LEVELS
  __builtin_cpu_init();
#if (defined(__clang__) && __clang_major__ >= 16) || (!defined(__clang__) && __GNUC__ >= 12)
  if (__builtin_cpu_supports("x86-64-v4")) return 16;
  if (__builtin_cpu_supports("x86-64-v3")) return 8;
#else  // the level names are newer than the target attributes: test their features one by one
  const bool v3 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                  __builtin_cpu_supports("bmi") && __builtin_cpu_supports("bmi2");
  if (v3 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
      __builtin_cpu_supports("avx512cd")) {
    return 16;
  }
  if (v3) return 8;
#endif
#endif
  return 4;
}

std::atomic<int> g_lanes{0};

int lanes_in_use() {
  int l = g_lanes.load(std::memory_order_relaxed);
  if (l == 0) {
    l = best_lanes();
    g_lanes.store(l, std::memory_order_relaxed);
  }
  return l;
}

}  // namespace

int vector_lanes() { return lanes_in_use(); }

int force_vector_lanes(int lanes) {
  const int best = best_lanes();
  if (lanes == 0 || lanes > best || (lanes != 4 && lanes != 8 && lanes != 16)) lanes = best;
  g_lanes.store(lanes, std::memory_order_relaxed);
  return lanes;
}

void row_maxima(const RowRef& row, int64_t n, RowMaxima& out, std::vector<float>& convert_buf) {
  out.chunk.resize((n + kChunk - 1) / kChunk);
  out.group.resize((n + kBlock - 1) / kBlock);
  out.max = -std::numeric_limits<float>::infinity();
  if (n <= 0) return;
  float* buf = nullptr;
  if (!row.f32()) {
    convert_buf.resize(kBlock);
    buf = convert_buf.data();
  }
  MaximaFn fn = maxima_4;
#if TW_X86_LEVELS
  switch (lanes_in_use()) {
    case 16: fn = maxima_16; break;
    case 8: fn = maxima_8; break;
    default: break;
  }
#endif
  fn(row, n, out.chunk.data(), out.group.data(), buf, &out.max);
}

uint64_t at_least_mask64(const float* x, float t) {
#if TW_X86_LEVELS
  switch (lanes_in_use()) {
    case 16: return at_least_mask64_avx512(x, t);
    case 8: return at_least_mask64_avx2(x, t);
    default: return at_least_mask64_sse2(x, t);
  }
#else
  return at_least_mask64_scalar(x, t);
#endif
}

double row_maxima_sum_exp(const RowRef& row, int64_t n, RowMaxima& out, std::vector<float>& convert_buf,
                          const float* next) {
  out.chunk.resize((n + kChunk - 1) / kChunk);
  out.group.resize((n + kBlock - 1) / kBlock);
  out.max = -std::numeric_limits<float>::infinity();
  if (n <= 0) return 0.0;
  float* buf = nullptr;
  if (!row.f32()) {
    convert_buf.resize(kBlock);
    buf = convert_buf.data();
  }
  MaximaSumExpFn fn = maxima_sum_exp_4;
#if TW_X86_LEVELS
  switch (lanes_in_use()) {
    case 16: fn = maxima_sum_exp_16; break;
    case 8: fn = maxima_sum_exp_8; break;
    default: break;
  }
#endif
  return fn(row, n, next, out.chunk.data(), out.group.data(), buf, &out.max);
}

}  // namespace tokenwire::kernels
