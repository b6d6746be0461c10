// Native-width vectors for the dense row passes (private to src/).
//
// The kernels are written once over the lane count L of a GCC/Clang vector-extension type and
// instantiated three times on x86-64: L = 16 (zmm, x86-64-v4), L = 8 (ymm, x86-64-v3) and L = 4
// (xmm, the SSE2 baseline and every other architecture). Each instantiation is compiled under
// its own target attribute and picked once at run time (kernels::vector_lanes()), so each gets the
// register width its instruction set really has. (A 16-float type compiled for AVX2 or SSE2 is
// split by GCC into scalar code wherever it meets a compare or select; that is why the width
// is a parameter and not a fixed 64-byte type.)
//
// Results do not depend on L: every lane does the same float operations in the same order (no
// FMA contraction, -ffp-contract=off), and sums keep a fixed number of logical lanes (32) that
// each instantiation spreads over 32 / L registers, so the association order is the same too.
#pragma once

#include <cstdint>
#include <cstring>
#include <limits>
#include <utility>

#define TW_INLINE inline __attribute__((always_inline))

#if defined(__x86_64__) && defined(__GNUC__) && !defined(TOKENWIRE_NO_MULTIVERSION)
#define TW_X86_LEVELS 1
#define TW_TARGET_V4 __attribute__((target("arch=x86-64-v4")))
#define TW_TARGET_V3 __attribute__((target("arch=x86-64-v3")))
#else
#define TW_X86_LEVELS 0
#endif

namespace tokenwire::simd {

template <int L>
struct Native;
template <>
struct Native<4> {
  typedef float F __attribute__((vector_size(16)));
  typedef int32_t I __attribute__((vector_size(16)));
  typedef uint32_t U __attribute__((vector_size(16)));
};
template <>
struct Native<8> {
  typedef float F __attribute__((vector_size(32)));
  typedef int32_t I __attribute__((vector_size(32)));
  typedef uint32_t U __attribute__((vector_size(32)));
};
template <>
struct Native<16> {
  typedef float F __attribute__((vector_size(64)));
  typedef int32_t I __attribute__((vector_size(64)));
  typedef uint32_t U __attribute__((vector_size(64)));
};
template <int L>
using F = typename Native<L>::F;
template <int L>
using I = typename Native<L>::I;
template <int L>
using U = typename Native<L>::U;

template <int L>
TW_INLINE F<L> load(const float* p) {
  F<L> v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
template <int L>
TW_INLINE void store(float* p, F<L> v) {
  std::memcpy(p, &v, sizeof v);
}
template <int L>
TW_INLINE F<L> splat(float x) {
  return F<L>{} + x;
}
// a > b ? a : b and a < b ? a : b, lane-wise: b wherever either is NaN, as x86's maxps/minps.
// Written as that select, GCC often emits compare + blend (two instructions) instead, so on x86
// the instruction is spelled out.
#if TW_X86_LEVELS
#define TW_MINMAX(name, op)                                          \
  template <int L>                                                   \
  TW_INLINE F<L> name(F<L> a, F<L> b) {                              \
    F<L> r;                                                          \
    if constexpr (L == 4) {                                          \
      r = a;                                                         \
      __asm__(#op "ps %1, %0" : "+x"(r) : "x"(b));                   \
    } else {                                                         \
      __asm__("v" #op "ps %2, %1, %0" : "=v"(r) : "v"(a), "v"(b));   \
    }                                                                \
    return r;                                                        \
  }
#else
#define TW_MINMAX(name, op)                     \
  template <int L>                              \
  TW_INLINE F<L> name(F<L> a, F<L> b) {         \
    return TW_MINMAX_SELECT_##op;               \
  }
#define TW_MINMAX_SELECT_max a > b ? a : b
#define TW_MINMAX_SELECT_min a < b ? a : b
#endif
TW_MINMAX(vmax, max)
TW_MINMAX(vmin, min)
#undef TW_MINMAX

template <class To, class From>
TW_INLINE To bit_cast(From v) {
  static_assert(sizeof(To) == sizeof(From), "size");
  To t;
  std::memcpy(&t, &v, sizeof t);
  return t;
}

// Two-source shuffle with constant lane indices given by Idx::at(j) (j < L; values < 2L).
template <int L, class Idx, int... J>
TW_INLINE F<L> shuffle2_impl(F<L> a, F<L> b, std::integer_sequence<int, J...>) {
#if defined(__clang__)
  return __builtin_shufflevector(a, b, Idx::at(J)...);
#else
  return __builtin_shuffle(a, b, I<L>{Idx::at(J)...});
#endif
}
template <int L, class Idx>
TW_INLINE F<L> shuffle2(F<L> a, F<L> b) {
  return shuffle2_impl<L, Idx>(a, b, std::make_integer_sequence<int, L>{});
}

// One level of a transposing max-reduction. Before it, each vector holds L / (2H) segments of
// 2H lanes, one segment per chunk; after it, combining vectors a and b, the result holds a's
// segments then b's, each halved to H lanes (lane-wise max of its two halves).
template <int L, int H, bool Upper>
struct HalvesIdx {
  static constexpr int at(int j) {
    const int per = L / (2 * H);  // segments per input vector
    const int q = j / H, o = j % H;
    return (q < per ? 0 : L) + (q % per) * 2 * H + o + (Upper ? H : 0);
  }
};

template <int L, int H>
TW_INLINE void reduce_level(F<L>* v, int count) {
  for (int k = 0; k < count / 2; ++k) {
    v[k] = vmax<L>(shuffle2<L, HalvesIdx<L, H, false>>(v[2 * k], v[2 * k + 1]),
                shuffle2<L, HalvesIdx<L, H, true>>(v[2 * k], v[2 * k + 1]));
  }
  if constexpr (H > 1) reduce_level<L, H / 2>(v, count / 2);
}

// v[0, 16): sixteen vectors of partial maxima (never NaN). Writes the maximum of each to out[16].
template <int L>
TW_INLINE void transpose_max16(F<L>* v, float* out) {
  reduce_level<L, L / 2>(v, 16);
  for (int k = 0; k < 16 / L; ++k) store<L>(out + k * L, v[k]);
}

// The maximum / minimum of v's lanes (v free of NaN).
template <int L, int H>
struct SwapHalvesIdx {
  static constexpr int at(int j) { return (j % (2 * H)) < H ? j + H : j - H; }
};
template <int L, int H = L / 2>
TW_INLINE float hmax(F<L> v) {
  v = vmax<L>(v, shuffle2<L, SwapHalvesIdx<L, H>>(v, v));
  if constexpr (H > 1) {
    return hmax<L, H / 2>(v);
  } else {
    return v[0];
  }
}
template <int L, int H = L / 2>
TW_INLINE float hmin(F<L> v) {
  v = vmin<L>(v, shuffle2<L, SwapHalvesIdx<L, H>>(v, v));
  if constexpr (H > 1) {
    return hmin<L, H / 2>(v);
  } else {
    return v[0];
  }
}

}  // namespace tokenwire::simd
