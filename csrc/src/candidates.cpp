#include "tokenwire/candidates.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace tokenwire {

void CandidateSet::sort() {
  if (!sorted) std::sort(items.begin(), items.end(), ranks_before);
  sorted = true;
}

float CandidateSet::max_logit() const {
  float m = -std::numeric_limits<float>::infinity();
  for (const auto& c : items) m = std::max(m, c.logit);
  return m;
}

double CandidateSet::log_sum_exp() const {
  const double m = max_logit();
  if (!std::isfinite(m)) return m;
  double s = 0.0;
  for (const auto& c : items) s += std::exp(static_cast<double>(c.logit) - m);
  return m + std::log(s);
}

}  // namespace tokenwire
