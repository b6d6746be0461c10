#include "tokenwire/workspace.h"

#include <algorithm>

namespace tokenwire {

namespace {
// Bumps the epoch, clearing the stamps only when it wraps (every 2^32 uses).
void next_epoch(std::vector<uint32_t>& stamp, std::vector<int32_t>& slot, uint32_t& epoch,
                int64_t vocab) {
  if (static_cast<int64_t>(stamp.size()) < vocab) {
    stamp.assign(vocab, 0);
    slot.assign(vocab, 0);
    epoch = 0;
  }
  if (++epoch == 0) {
    std::fill(stamp.begin(), stamp.end(), 0);
    epoch = 1;
  }
}
}  // namespace

void Overrides::reset(int64_t vocab) {
  next_epoch(stamp_, slot_, epoch_, vocab);
  entries_.clear();
}

void Overrides::set(int32_t t, float v) {
  if (stamp_[t] == epoch_) {
    entries_[slot_[t]].logit = v;
    return;
  }
  stamp_[t] = epoch_;
  slot_[t] = static_cast<int32_t>(entries_.size());
  entries_.push_back({v, t});
}

void TokenCounter::reset(int64_t vocab) {
  next_epoch(stamp_, slot_, epoch_, vocab);
  counts_.clear();
}

void TokenCounter::add(int32_t t) {
  if (t < 0 || t >= static_cast<int64_t>(stamp_.size())) return;
  if (stamp_[t] == epoch_) {
    ++counts_[slot_[t]].second;
    return;
  }
  stamp_[t] = epoch_;
  slot_[t] = static_cast<int32_t>(counts_.size());
  counts_.push_back({t, 1});
}

}  // namespace tokenwire
