// The fused maxima + exp-sum pass (row_maxima_sum_exp) and the block maxima (row_maxima):
// exact maxima, the log-sum against a double-precision reference, per-entry exp accuracy, the
// skipping bound, NaN / -inf rows, half-precision rows, and identical results at every vector
// width the CPU offers.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "tokenwire/kernels.h"

using namespace tokenwire;

namespace {
constexpr float kInf = std::numeric_limits<float>::infinity();

std::vector<float> normal_row(int64_t n, float mean, float sigma, uint32_t seed) {
  std::mt19937 g(seed);
  std::normal_distribution<float> d(mean, sigma);
  std::vector<float> x(n);
  for (auto& v : x) v = d(g);
  return x;
}

// max, and sum(exp(x - max)) in double over the finite entries.
std::pair<double, double> reference(const std::vector<float>& x) {
  double m = -kInf;
  for (float v : x) m = v > m ? v : m;
  double s = 0.0;
  for (float v : x) {
    if (v == v && v > -kInf) s += std::exp(static_cast<double>(v) - m);
  }
  return {m, s};
}

struct Pass {
  double sum;
  kernels::RowMaxima maxima;
};

Pass run_pass(const std::vector<float>& x) {
  LogitsView v{x.data(), DType::kFloat32, 1, static_cast<int64_t>(x.size()), static_cast<int64_t>(x.size())};
  Pass p;
  std::vector<float> buf;
  p.sum = kernels::row_maxima_sum_exp(RowRef(v, 0), static_cast<int64_t>(x.size()), p.maxima, buf);
  return p;
}

// Restores the best vector width when a test ends, even a failed one.
struct WidthGuard {
  ~WidthGuard() { kernels::force_vector_lanes(0); }
};

std::vector<int> widths() {
  WidthGuard guard;
  std::vector<int> out;
  for (int l : {4, 8, 16}) {
    if (kernels::force_vector_lanes(l) == l) out.push_back(l);
  }
  return out;
}

const int64_t kSizes[] = {1, 2, 31, 63, 64, 65, 1000, 1023, 1024, 1025, 4097, 32000, 50257, 128256, 151936};
}  // namespace

TEST(Kernels, MaximaAreExactAndLogSumMatchesDouble) {
  uint32_t seed = 1;
  for (int64_t n : kSizes) {
    for (float sigma : {0.5f, 3.0f, 8.0f}) {
      auto x = normal_row(n, 4.0f, sigma, seed++);
      const Pass p = run_pass(x);
      const auto [m, s] = reference(x);
      ASSERT_EQ(p.maxima.max, static_cast<float>(m)) << "n=" << n;
      // Every entry is within 18 + ln 2 · 18 of the maximum here, except at sigma 8 and large
      // n, where skipped entries may move the sum by < 1.5e-8 of itself.
      EXPECT_NEAR(std::log(p.sum), std::log(s), 3e-7) << "n=" << n << " sigma=" << sigma;
      ASSERT_EQ(p.maxima.chunk.size(), static_cast<size_t>((n + 63) / 64));
      ASSERT_EQ(p.maxima.group.size(), static_cast<size_t>((n + 1023) / 1024));
      for (size_t c = 0; c < p.maxima.chunk.size(); ++c) {
        float want = -kInf;
        for (int64_t i = static_cast<int64_t>(c) * 64; i < std::min<int64_t>(n, (c + 1) * 64); ++i) {
          want = std::max(want, x[i]);
        }
        ASSERT_EQ(p.maxima.chunk[c], want) << "n=" << n << " chunk " << c;
      }
      for (size_t g = 0; g < p.maxima.group.size(); ++g) {
        float want = -kInf;
        for (size_t c = g * 16; c < std::min(p.maxima.chunk.size(), (g + 1) * 16); ++c) {
          want = std::max(want, p.maxima.chunk[c]);
        }
        ASSERT_EQ(p.maxima.group[g], want) << "n=" << n << " group " << g;
      }
      // row_maxima (no sum) gives the same maxima.
      LogitsView v{x.data(), DType::kFloat32, 1, n, n};
      kernels::RowMaxima only;
      std::vector<float> buf;
      kernels::row_maxima(RowRef(v, 0), n, only, buf);
      EXPECT_EQ(only.chunk, p.maxima.chunk);
      EXPECT_EQ(only.group, p.maxima.group);
      EXPECT_EQ(only.max, p.maxima.max);
    }
  }
}

TEST(Kernels, ExpIsAccurateAndUnbiasedPerEntry) {
  // Rows {0, u}: the two entries land in different lanes of the exact double sums, so
  // sum - 1 is the kernel's exp(u) itself.
  std::mt19937 g(7);
  for (float lo : {-0.01f, -1.0f, -4.0f, -12.0f}) {
    std::uniform_real_distribution<float> d(lo, 0.0f);
    double bias = 0.0, worst = 0.0;
    const int kN = 20000;
    for (int i = 0; i < kN; ++i) {
      const std::vector<float> x = {0.0f, d(g)};
      const double e = run_pass(x).sum - 1.0, want = std::exp(static_cast<double>(x[1]));
      const double rel = e / want - 1.0;
      bias += rel;
      worst = std::max(worst, std::fabs(rel));
      // 1.6e-7 near 0, plus what rounding t = u·32/ln2 to float costs (|u|·2^-24 at most).
      ASSERT_LE(std::fabs(rel), 1.7e-7 + std::fabs(x[1]) * 6.0e-8) << "u=" << x[1];
    }
    // Unbiased over whole periods of the table (|u| >= 1): what is left is the quadratic's
    // minimax ripple (±5.3e-8), which a narrow range near 0 does not average out.
    EXPECT_LT(std::fabs(bias / kN), lo <= -1.0f ? 2.5e-8 : 6e-8) << "mean relative error over [" << lo << ", 0]";
  }
}

TEST(Kernels, EntriesFarBelowTheMaximumAreSkippedWithinTheBound) {
  // 128256 entries: G = 18 + ln 2 · 18 ≈ 30.5. Half the row 29 below the maximum (summed),
  // half 40 below (skipped): the sum must still be within n · e^-G < 1.5e-8 of the true one.
  const int64_t n = 128256;
  std::vector<float> x(n);
  std::mt19937 g(3);
  std::uniform_real_distribution<float> d(0.0f, 1.0f);
  for (int64_t i = 0; i < n; ++i) x[i] = (i / 64) % 2 ? -40.0f + d(g) : -29.0f + d(g);
  x[777] = 0.0f;
  const auto [m, s] = reference(x);
  EXPECT_NEAR(run_pass(x).sum / s, 1.0, 1.5e-8 + 3e-7);
  // Everything but the maximum far below: the sum is exactly 1.
  std::vector<float> y(n, -100.0f);
  y[n - 1] = 5.0f;
  EXPECT_EQ(run_pass(y).sum, 1.0);
}

TEST(Kernels, NanAndInfinitiesInTheRow) {
  const int64_t n = 5000;
  auto x = normal_row(n, 0.0f, 3.0f, 9);
  const auto [m, s] = reference(x);
  auto y = x;
  y[10] = std::numeric_limits<float>::quiet_NaN();
  y[4000] = -std::numeric_limits<float>::quiet_NaN();
  y[2048] = -kInf;
  y[11] = -kInf;
  const auto [m2, s2] = reference(y);  // without the NaN and -inf entries
  const Pass p = run_pass(y);
  EXPECT_EQ(p.maxima.max, static_cast<float>(m2));
  EXPECT_NEAR(std::log(p.sum), std::log(s2), 3e-7);
  EXPECT_EQ(p.maxima.chunk[0], std::max(*std::max_element(y.begin(), y.begin() + 10),
                                        *std::max_element(y.begin() + 12, y.begin() + 64)));
  // Nothing finite: max -inf, sum 0.
  std::vector<float> masked(3000, -kInf);
  masked[5] = std::numeric_limits<float>::quiet_NaN();
  const Pass q = run_pass(masked);
  EXPECT_EQ(q.maxima.max, -kInf);
  EXPECT_EQ(q.sum, 0.0);
  // Empty row.
  EXPECT_EQ(run_pass({}).sum, 0.0);
}

TEST(Kernels, SameResultsAtEveryVectorWidth) {
  WidthGuard guard;
  const auto ws = widths();
  ASSERT_FALSE(ws.empty());
  uint32_t seed = 100;
  for (int64_t n : kSizes) {
    auto x = normal_row(n, -2.0f, 5.0f, seed++);
    if (n > 100) {
      x[n / 3] = -kInf;
      x[n / 2] = std::numeric_limits<float>::quiet_NaN();
      for (int64_t i = 0; i < n; i += 7) x[i] -= 45.0f;  // some skipped chunks, some clamped entries
    }
    std::vector<uint16_t> h(n);
    for (int64_t i = 0; i < n; ++i) {
      uint32_t b;
      std::memcpy(&b, &x[i], 4);
      h[i] = static_cast<uint16_t>(b >> 16);
    }
    std::vector<Pass> got;
    for (int l : ws) {
      kernels::force_vector_lanes(l);
      ASSERT_EQ(kernels::vector_lanes(), l);
      got.push_back(run_pass(x));
      // bf16 rows: the same as the float32 row of the converted values.
      std::vector<float> hf(n);
      for (int64_t i = 0; i < n; ++i) {
        const uint32_t b = static_cast<uint32_t>(h[i]) << 16;
        std::memcpy(&hf[i], &b, 4);
      }
      LogitsView hv{h.data(), DType::kBFloat16, 1, n, n};
      kernels::RowMaxima hm;
      std::vector<float> buf;
      const double hs = kernels::row_maxima_sum_exp(RowRef(hv, 0), n, hm, buf);
      const Pass want = run_pass(hf);
      EXPECT_EQ(hs, want.sum) << "bf16 n=" << n << " lanes=" << l;
      EXPECT_EQ(hm.chunk, want.maxima.chunk);
    }
    for (size_t i = 1; i < got.size(); ++i) {
      // Bit for bit: which CPU runs a beam search does not change it.
      EXPECT_EQ(std::memcmp(&got[0].sum, &got[i].sum, sizeof(double)), 0)
          << "n=" << n << ": " << got[0].sum << " vs " << got[i].sum << " at " << ws[i] << " lanes";
      EXPECT_EQ(got[0].maxima.chunk, got[i].maxima.chunk);
      EXPECT_EQ(got[0].maxima.group, got[i].maxima.group);
      EXPECT_EQ(got[0].maxima.max, got[i].maxima.max);
    }
  }
}

TEST(Kernels, TopCandidatesWithFusedMaximaAndExcludedIds) {
  const int64_t V = 50257;
  auto x = normal_row(V, 0.0f, 3.0f, 21);
  LogitsView v{x.data(), DType::kFloat32, 1, V, V};
  std::vector<float> buf;
  kernels::RowMaxima maxima;
  kernels::row_maxima_sum_exp(RowRef(v, 0), V, maxima, buf);
  // Exclude the 30 largest ids and a few others: the selection must still hold the true top k
  // of what is left.
  std::vector<int32_t> order(V);
  for (int32_t i = 0; i < V; ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return x[a] > x[b]; });
  std::vector<Candidate> excluded;
  for (int i = 0; i < 30; ++i) excluded.push_back({x[order[i]], order[i]});
  for (int32_t id : {0, 1, 5000, 50256}) excluded.push_back({x[id], id});
  for (int64_t k : {1, 8, 50}) {
    std::vector<Candidate> with, without;
    kernels::top_candidates(RowRef(v, 0), V, k, excluded, &maxima, with, buf);
    kernels::top_candidates(RowRef(v, 0), V, k, excluded, nullptr, without, buf);
    std::sort(with.begin(), with.end(), ranks_before);
    std::sort(without.begin(), without.end(), ranks_before);
    ASSERT_EQ(with.size(), without.size()) << "k=" << k;
    for (size_t i = 0; i < with.size(); ++i) EXPECT_EQ(with[i].id, without[i].id);
    int64_t found = 0;  // the k best non-excluded ids are all there
    for (int i = 30; found < k; ++i) {
      const int32_t id = order[i];
      if (id == 0 || id == 1 || id == 5000 || id == 50256) continue;
      EXPECT_TRUE(std::any_of(with.begin(), with.end(), [&](const Candidate& c) { return c.id == id; })) << id;
      ++found;
    }
  }
}
