#include "pool/pool.hpp"

#include <utility>

namespace fulcrum::pool {

namespace {

balance::PickerOptions pickerOptions(const PoolConfig& config) {
  balance::PickerOptions options;
  options.algorithm = config.algorithm;
  options.maglev_table_size = config.maglev_table_size;
  options.ring_hash_vnodes = config.ring_hash_vnodes;
  return options;
}

}  // namespace

PoolSnapshot::PoolSnapshot(const PoolConfig& config, std::vector<Backend> backends)
    : name_(config.name),
      hash_key_(config.hash_key),
      algorithm_(config.algorithm),
      retries_(config.retries),
      proxy_protocol_(config.proxy_protocol),
      backends_(std::move(backends)) {
  std::vector<balance::Candidate> primaries;
  std::vector<balance::Candidate> backups;

  for (uint32_t i = 0; i < backends_.size(); ++i) {
    const Backend& b = backends_[i];
    balance::Candidate c{b.key, b.weight, &b.stats->active};
    if (b.backup) {
      backups.push_back(std::move(c));
      backup_.indices.push_back(i);
    } else {
      primaries.push_back(std::move(c));
      primary_.indices.push_back(i);
    }
  }

  const balance::PickerOptions options = pickerOptions(config);
  if (!primaries.empty()) {
    primary_.picker = balance::makePicker(options, std::move(primaries));
  }
  if (!backups.empty()) {
    backup_.picker = balance::makePicker(options, std::move(backups));
  }
}

uint32_t PoolSnapshot::pickFromTier(const Tier& tier, uint64_t flow_hash,
                                    std::span<const uint8_t> tried) const {
  if (!tier.picker) {
    return kNoBackend;
  }

  uint32_t candidate;
  if (tried.empty()) {
    candidate = tier.picker->pick(flow_hash, {});
  } else {
    // Retry path only (a connect already failed), so a small allocation is acceptable here.
    std::vector<uint8_t> excluded(tier.indices.size());
    for (size_t i = 0; i < tier.indices.size(); ++i) {
      excluded[i] = tried[tier.indices[i]];
    }
    candidate = tier.picker->pick(flow_hash, excluded);
  }

  if (candidate == balance::Picker::kNone) {
    return kNoBackend;
  }
  return tier.indices[candidate];
}

uint32_t PoolSnapshot::pick(uint64_t flow_hash, std::span<const uint8_t> tried) const {
  const uint32_t chosen = pickFromTier(primary_, flow_hash, tried);
  if (chosen != kNoBackend) {
    return chosen;
  }
  return pickFromTier(backup_, flow_hash, tried);
}

Pool::Pool(const PoolConfig& config) : name_(config.name) {
  std::vector<Backend> backends;
  backends.reserve(config.backends.size());
  for (const BackendConfig& bc : config.backends) {
    Backend b;
    b.address = bc.address;
    b.key = bc.address.toString();
    b.weight = bc.weight;
    b.backup = bc.backup;
    b.stats = std::make_shared<BackendStats>();
    backends.push_back(std::move(b));
  }
  snapshot_.store(std::make_shared<const PoolSnapshot>(config, std::move(backends)),
                  std::memory_order_release);
}

void Pool::reportFailure(BackendStats& stats) const {
  const uint32_t failures = stats.consecutive_failures.fetch_add(1, std::memory_order_relaxed) + 1;
  if (passive_threshold_ == 0 || failures < passive_threshold_ || !notify_) {
    return;
  }
  // Only the flip wakes the control plane; later failures while it is pending add nothing.
  if (!stats.passive_down_pending.exchange(true, std::memory_order_acq_rel)) {
    notify_();
  }
}

}  // namespace fulcrum::pool
