// Dense per-row passes. Compiled with -ffp-contract=off (see CMakeLists.txt) so the AVX2 and
// SSE2 clones round identically; float sums use fixed vector lanes for the same reason.
#include "tokenwire/kernels.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <limits>


// Function multiversioning: the exp-heavy and compare-heavy loops are compute-bound on one core
// and run ~2× faster 8-wide; the loader picks the clone once (ifunc), and every x86-64 CPU
// still runs the baseline clone.
#define TW_ALWAYS_INLINE inline __attribute__((always_inline))
#if defined(__x86_64__) && defined(__linux__) && defined(__GNUC__) && !defined(TOKENWIRE_NO_MULTIVERSION)
#define TW_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define TW_CLONES
#endif

namespace tokenwire::kernels {

namespace {
constexpr int64_t kChunk = 4096;   // conversion block for 16-bit rows (16 KiB of floats, in L1)
constexpr int64_t kChunkMax = kChunkSize;  // entries per chunk maximum in top_candidates

// GCC/Clang vector extensions: 16 floats, one zmm register in the AVX-512 clone, two ymm in the
// AVX2 one, four xmm in the baseline one. Same operations in the same order in all of them,
// hence the same results. The helpers taking or returning these types are always inlined: a
// clone calling an out-of-line baseline copy (what -O0 would otherwise emit) passes the 64-byte
// vectors in registers the callee does not read them from, and corrupts the stack.
typedef float v8f __attribute__((vector_size(64)));
typedef int32_t v8i __attribute__((vector_size(64)));
constexpr int kW = 16;

TW_ALWAYS_INLINE v8f load(const float* p) {
  v8f v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
TW_ALWAYS_INLINE v8f splat(float x) { return v8f{} + x; }
TW_ALWAYS_INLINE v8f vmax(v8f a, v8f b) { return a > b ? a : b; }  // NaN in `a` loses
TW_ALWAYS_INLINE float hmax(v8f v) {
  float m = v[0];
  for (int j = 1; j < kW; ++j) m = v[j] > m ? v[j] : m;
  return m;
}

// exp(x) for x <= 0 (clamped at -87 so the result stays a normal float): Cody-Waite range
// reduction plus the Cephes expf polynomial, ~1 ulp.
TW_ALWAYS_INLINE v8f exp_nonpos(v8f x) {
  x = vmax(x, splat(-87.0f));
  const v8f n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  v8f r = x - n * 0.693145751953125f;
  r = r - n * 1.428606765330187045e-06f;
  v8f p = splat(1.9875691500e-4f);
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const v8f e = p * r * r + r + 1.0f;
  const v8i bits = (__builtin_convertvector(n, v8i) + 127) << 23;
  v8f scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return e * scale;
}
}  // namespace

TW_CLONES float max_value(const float* x, int64_t n) {
  const float ninf = -std::numeric_limits<float>::infinity();
  v8f a = splat(ninf), b = a, c = a, d = a;
  int64_t i = 0;
  for (; i + 4 * kW <= n; i += 4 * kW) {
    a = vmax(load(x + i), a);
    b = vmax(load(x + i + kW), b);
    c = vmax(load(x + i + 2 * kW), c);
    d = vmax(load(x + i + 3 * kW), d);
  }
  float m = hmax(vmax(vmax(a, b), vmax(c, d)));
  for (; i < n; ++i) m = x[i] > m ? x[i] : m;
  return m;
}

TW_CLONES double sum_exp_shifted(const float* x, int64_t n, float shift) {
  const v8f sh = splat(shift), floor = splat(-87.0f);
  v8f a = splat(0.0f), b = a;
  int64_t i = 0;
  for (; i + 2 * kW <= n; i += 2 * kW) {
    const v8f u = load(x + i) - sh, v = load(x + i + kW) - sh;
    // Entries above the shift and NaN (compares false) contribute exp(-87) ≈ 0.
    a += exp_nonpos(u <= 0.0f ? u : floor);
    b += exp_nonpos(v <= 0.0f ? v : floor);
  }
  double s = 0.0;
  for (; i < n; ++i) {
    const float u = x[i] - shift;
    s += exp_nonpos(splat(u <= 0.0f ? u : -87.0f))[0];
  }
  for (int j = 0; j < kW; ++j) s += static_cast<double>(a[j]) + static_cast<double>(b[j]);
  return s;
}

double log_sum_exp(const float* x, int64_t n) {
  // The fused one-read pass (softmax_pass.cpp): faster than max_value + sum_exp_shifted, and
  // its float sums run over 32 terms, not thousands.
  thread_local RowMaxima maxima;
  thread_local std::vector<float> buf;
  const LogitsView view{x, DType::kFloat32, 1, n, n};
  const double s = row_maxima_sum_exp(RowRef(view, 0), n, maxima, buf);
  const float m = maxima.max;
  if (!std::isfinite(m)) return m;
  return static_cast<double>(m) + std::log(s);
}

TW_CLONES int64_t count_greater(const float* x, int64_t n, float v) {
  const v8f t = splat(v);
  v8i acc = v8i{} ;
  int64_t total = 0, i = 0;
  for (; i + kW <= n; i += kW) {
    acc -= (load(x + i) > t);  // true is -1
    if ((i & ((int64_t{1} << 26) - 1)) == 0) {  // keep the int32 lanes from overflowing
      for (int j = 0; j < kW; ++j) total += acc[j];
      acc = v8i{};
    }
  }
  for (int j = 0; j < kW; ++j) total += acc[j];
  for (; i < n; ++i) total += x[i] > v ? 1 : 0;
  return total;
}

namespace {

// Streaming selection state: keeps every value >= `thr`; when the buffer fills it is cut back
// to the k largest (ties kept) and `thr` rises to the k-th value.
struct Selection {
  std::vector<Candidate>& out;
  int64_t k;
  size_t cap;
  float thr = -FLT_MAX;  // excludes -inf and NaN from the start

  void compact() {
    std::nth_element(out.begin(), out.begin() + (k - 1), out.end(), ranks_before);
    thr = out[k - 1].logit;
    const float kth = thr;
    auto end = std::partition(out.begin() + k, out.end(), [kth](const Candidate& c) { return c.logit >= kth; });
    out.erase(end, out.end());
    if (out.size() * 2 >= cap) cap *= 2;  // mass ties at the threshold: grow instead of thrash
  }

  void push_block(const float* x, int64_t n, int64_t offset) {
    int64_t j = 0;
    for (; j + 64 <= n; j += 64) {
      for (uint64_t m = at_least_mask64(x + j, thr); m; m &= m - 1) {
        const int64_t i = j + __builtin_ctzll(m);
        if (x[i] >= thr) {  // thr rises when compact() runs
          out.push_back({x[i], static_cast<int32_t>(offset + i)});
          if (out.size() >= cap) compact();
        }
      }
    }
    push_scalar(x + j, n - j, offset + j);
  }

  void push_scalar(const float* x, int64_t n, int64_t offset) {
    for (int64_t j = 0; j < n; ++j) {
      if (x[j] >= thr) {
        out.push_back({x[j], static_cast<int32_t>(offset + j)});
        if (out.size() >= cap) compact();
      }
    }
  }
};

// Per-chunk maxima of x[0, n), kChunkMax entries per chunk (the last one may be short).
TW_CLONES void chunk_maxima(const float* x, int64_t n, float* out) {
  const float ninf = -std::numeric_limits<float>::infinity();
  const int64_t full = n / kChunkMax;
  for (int64_t c = 0; c < full; ++c) {
    const float* p = x + c * kChunkMax;
    v8f a = splat(ninf), b = a;
    for (int64_t i = 0; i < kChunkMax; i += 2 * kW) {
      a = vmax(load(p + i), a);
      b = vmax(load(p + i + kW), b);
    }
    out[c] = hmax(vmax(a, b));
  }
  if (full * kChunkMax < n) out[full] = max_value(x + full * kChunkMax, n - full * kChunkMax);
}

// Streaming selection over one block: chunk maxima first, so chunks below the threshold cost
// one vector compare per 8 entries.
void scan(const float* x, int64_t n, int64_t offset, Selection& s, float* maxima) {
  chunk_maxima(x, n, maxima);
  for (int64_t b = 0, c = 0; b < n; b += kChunkMax, ++c) {
    if (maxima[c] >= s.thr) s.push_block(x + b, std::min(kChunkMax, n - b), offset + b);
  }
}

}  // namespace

// row_maxima: see softmax_pass.cpp (the same block walk as row_maxima_sum_exp).

// Two passes, the second over a few chunks only: if k chunks (free of excluded ids) have a
// maximum >= t, then k non-excluded entries are >= t, so every member of their top k is, and
// only chunks whose maximum reaches t can hold one. The k-th largest clean chunk maximum is
// itself found in two levels (16-chunk groups first). Large k falls back to streaming
// threshold selection, as do rows where too few chunks are free of excluded ids.
void top_candidates(const RowRef& row, int64_t n, int64_t k, const std::vector<Candidate>& excluded,
                    const RowMaxima* maxima, std::vector<Candidate>& out, std::vector<float>& convert_buf) {
  out.clear();
  if (n <= 0) return;
  k = std::max<int64_t>(1, std::min(k, n));
  const int64_t keep = std::min<int64_t>(n, k + static_cast<int64_t>(excluded.size()));
  const int64_t chunks = (n + kChunkMax - 1) / kChunkMax;
  Selection s{out, keep, static_cast<size_t>(std::max<int64_t>(4 * keep, 512))};
  const float* x = row.f32();
  auto streaming = [&] {
    out.clear();
    out.reserve(s.cap + 16);
    convert_buf.resize(kChunk + kChunk / kChunkMax);
    float* block = convert_buf.data();
    float* cmax = block + kChunk;
    for (int64_t b = 0; b < n; b += kChunk) {
      const int64_t len = std::min(kChunk, n - b);
      const float* p = x ? x + b : block;
      if (!x) row.convert(b, len, block);
      scan(p, len, b, s, cmax);
    }
    if (static_cast<int64_t>(out.size()) > keep) s.compact();
  };
  if (k * 4 > chunks) return streaming();

  thread_local RowMaxima own;
  if (!maxima) {
    row_maxima(row, n, own, convert_buf);
    maxima = &own;
  }
  constexpr int64_t kGroup = kGroupChunks;  // as RowMaxima::group
  const int64_t groups = (chunks + kGroup - 1) / kGroup;
  // convert_buf: [clean maxima | raw group maxima | clean group maxima | selection scratch |
  //               one converted chunk]
  convert_buf.resize(2 * chunks + 2 * groups + kChunkMax);
  float* clean = convert_buf.data();
  float* graw = clean + chunks;
  float* gmax = graw + groups;
  float* pick = gmax + groups;
  float* block = pick + chunks;
  const float ninf = -std::numeric_limits<float>::infinity();
  auto group_max = [&](const float* cm, int64_t g) {
    return max_value(cm + g * kGroup, std::min(kGroup, chunks - g * kGroup));
  };
  if (static_cast<int64_t>(maxima->group.size()) == groups) {
    std::copy(maxima->group.begin(), maxima->group.end(), graw);
  } else {
    for (int64_t g = 0; g < groups; ++g) graw[g] = group_max(maxima->chunk.data(), g);
  }
  std::copy(maxima->chunk.begin(), maxima->chunk.end(), clean);
  std::copy(graw, graw + groups, gmax);
  if (!excluded.empty()) {
    const float nan = std::numeric_limits<float>::quiet_NaN();  // "recompute": maxima are never NaN
    for (const auto& e : excluded) {
      clean[e.id / kChunkMax] = ninf;
      gmax[e.id / kChunkMax / kGroup] = nan;
    }
    for (int64_t g = 0; g < groups; ++g) {
      if (gmax[g] != gmax[g]) gmax[g] = group_max(clean, g);
    }
  }
  auto greater = [](float a, float b) { return a > b; };
  float thr;
  if (k == 1) {
    thr = max_value(gmax, groups);
  } else if (k * 2 <= groups) {
    std::copy(gmax, gmax + groups, pick);
    std::nth_element(pick, pick + (k - 1), pick + groups, greater);
    const float t1 = pick[k - 1];  // at least k clean chunks reach it
    int64_t m = 0;
    for (int64_t g = 0; g < groups; ++g) {
      if (!(gmax[g] >= t1)) continue;
      for (int64_t c = g * kGroup, end = std::min(chunks, c + kGroup); c < end; ++c) {
        if (clean[c] >= t1) pick[m++] = clean[c];
      }
    }
    std::nth_element(pick, pick + (k - 1), pick + m, greater);
    thr = pick[k - 1];
  } else {
    std::copy(clean, clean + chunks, pick);
    std::nth_element(pick, pick + (k - 1), pick + chunks, greater);
    thr = pick[k - 1];
  }
  if (!(thr > ninf)) return streaming();  // mostly -inf / NaN rows
  s.thr = thr;
  s.cap = std::numeric_limits<size_t>::max() / 4;  // everything >= thr is kept; trimmed below
  for (int64_t g = 0; g < groups; ++g) {
    if (!(graw[g] >= thr)) continue;
    for (int64_t c = g * kGroup, end = std::min(chunks, c + kGroup); c < end; ++c) {
      if (!(maxima->chunk[c] >= thr)) continue;
      const int64_t b = c * kChunkMax, len = std::min(kChunkMax, n - b);
      const float* p = x ? x + b : block;
      if (!x) row.convert(b, len, block);
      s.push_block(p, len, b);
    }
  }
  if (static_cast<int64_t>(out.size()) > keep) s.compact();
}

// 32 floats per mask word, the lane's bit tested with a constant per lane ((b & (1 << j)) needs
// no variable shift), so every clone vectorises it as broadcast, and, compare, blend.
TW_CLONES void apply_bitmask(float* x, int64_t n, const uint32_t* bits) {
  const float ninf = -std::numeric_limits<float>::infinity();
  const int64_t full = n / 32;
  for (int64_t w = 0; w < full; ++w) {
    const uint32_t b = bits[w];
    float* p = x + w * 32;
    for (int j = 0; j < 32; ++j) p[j] = (b & (1u << j)) ? p[j] : ninf;
  }
  for (int64_t i = full * 32; i < n; ++i) x[i] = (bits[full] & (1u << (i - full * 32))) ? x[i] : ninf;
}

void load_row(const RowRef& row, int64_t n, std::vector<float>& out) {
  out.resize(n);
  row.convert(0, n, out.data());
  const float ninf = -std::numeric_limits<float>::infinity();
  for (auto& v : out) v = v == v ? v : ninf;
}

}  // namespace tokenwire::kernels

namespace tokenwire {

TW_CLONES void convert_bf16(const uint16_t* in, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = bf16_to_float(in[i]);
}

TW_CLONES void convert_f16(const uint16_t* in, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = f16_to_float(in[i]);
}

void RowRef::convert(int64_t begin, int64_t n, float* out) const {
  switch (dtype_) {
    case DType::kFloat32:
      std::memcpy(out, reinterpret_cast<const float*>(base_) + begin, n * sizeof(float));
      break;
    case DType::kBFloat16:
      convert_bf16(reinterpret_cast<const uint16_t*>(base_) + begin, n, out);
      break;
    case DType::kFloat16:
      convert_f16(reinterpret_cast<const uint16_t*>(base_) + begin, n, out);
      break;
  }
}

}  // namespace tokenwire
