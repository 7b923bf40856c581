#include "pool/pool.hpp"

#include <algorithm>
#include <utility>

#include "balance/maglev.hpp"

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

const char* toString(BackendState state) {
  switch (state) {
    case BackendState::Up:
      return "up";
    case BackendState::Down:
      return "down";
    case BackendState::Draining:
      return "draining";
    case BackendState::Disabled:
      return "disabled";
  }
  return "unknown";
}

PoolSnapshot::PoolSnapshot(const PoolConfig& config, std::vector<Backend> backends)
    : name_(config.name),
      hash_key_(config.hash_key),
      algorithm_(config.algorithm),
      retries_(config.retries),
      proxy_protocol_(config.proxy_protocol),
      backends_(std::move(backends)) {
  for (const Backend& b : backends_) {
    up_count_ += b.state == BackendState::Up ? 1 : 0;
  }
  // With nobody up, all_down = "all" sends flows to every backend the operator has not
  // taken out, on the bet that the checks are wrong rather than every backend.
  fallback_ = up_count_ == 0 && config.all_down == AllDownPolicy::All;

  std::vector<balance::Candidate> primaries;
  std::vector<balance::Candidate> backups;
  for (uint32_t i = 0; i < backends_.size(); ++i) {
    const Backend& b = backends_[i];
    const bool eligible = b.state == BackendState::Up ||
                          (fallback_ && b.state == BackendState::Down);
    if (!eligible) {
      continue;
    }
    balance::Candidate c{b.key, b.effective_weight, &b.stats->active};
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

std::vector<uint32_t> PoolSnapshot::maglevTable() const {
  const Tier& tier = primary_.picker ? primary_ : backup_;
  const auto* maglev = dynamic_cast<const balance::MaglevPicker*>(tier.picker.get());
  if (maglev == nullptr) {
    return {};
  }

  std::vector<uint32_t> table;
  table.reserve(maglev->table().size());
  for (uint32_t candidate : maglev->table()) {
    table.push_back(candidate == balance::Picker::kNone ? kNoBackend : tier.indices[candidate]);
  }
  return table;
}

uint32_t PoolSnapshot::pick(uint64_t flow_hash, std::span<const uint8_t> tried) const {
  uint32_t chosen = pickFromTier(primary_, flow_hash, tried);
  if (chosen == kNoBackend) {
    chosen = pickFromTier(backup_, flow_hash, tried);
  }
  if (chosen == kNoBackend) {
    return kNoBackend;
  }

  const uint64_t now = monotonicNs();
  backends_[chosen].stats->last_pick_ns.store(now, std::memory_order_relaxed);
  // Only the first pick writes: a load first, so the steady state never takes the cache line
  // exclusively for a compare-exchange.
  if (first_pick_ns_.load(std::memory_order_relaxed) == 0) {
    uint64_t none = 0;
    first_pick_ns_.compare_exchange_strong(none, now, std::memory_order_relaxed);
  }
  return chosen;
}

namespace {

Backend freshBackend(const BackendConfig& bc) {
  Backend b;
  b.address = bc.address;
  b.key = bc.address.toString();
  b.weight = bc.weight;
  b.effective_weight = bc.weight;
  b.backup = bc.backup;
  // A backend under an active check starts down and is brought up by its first passing
  // probe, which the control plane runs before any listener accepts.
  if (bc.state == AdminState::Draining) {
    b.state = BackendState::Draining;
  } else if (bc.state == AdminState::Disabled) {
    b.state = BackendState::Disabled;
  } else if (bc.health.type != HealthCheckType::None) {
    b.state = BackendState::Down;
  }
  b.stats = std::make_shared<BackendStats>();
  return b;
}

}  // namespace

Pool::Pool(const PoolConfig& config) : name_(config.name), config_(config) {
  backends_.reserve(config.backends.size());
  for (const BackendConfig& bc : config.backends) {
    backends_.push_back(freshBackend(bc));
  }
  rebuild();
}

void Pool::update(const PoolConfig& next) {
  std::vector<Backend> backends;
  backends.reserve(next.backends.size());
  for (const BackendConfig& bc : next.backends) {
    auto old = std::find_if(backends_.begin(), backends_.end(),
                            [&](const Backend& b) { return b.address == bc.address; });
    if (old == backends_.end()) {
      backends.push_back(freshBackend(bc));
      continue;
    }
    Backend b = *old;
    b.backup = bc.backup;
    auto old_config = std::find_if(config_.backends.begin(), config_.backends.end(),
                                   [&](const BackendConfig& c) { return c.address == bc.address; });
    if (old_config == config_.backends.end() || old_config->weight != bc.weight) {
      b.weight = bc.weight;
      b.effective_weight = bc.weight;
    }
    backends.push_back(std::move(b));
  }
  config_ = next;
  backends_ = std::move(backends);
}

void Pool::rebuild() {
  publish(std::make_shared<const PoolSnapshot>(config_, backends_));
}

void Pool::reportFailure(BackendStats& stats) const {
  const uint32_t failures = stats.consecutive_failures.fetch_add(1, std::memory_order_relaxed) + 1;
  if (failures == 1) {
    stats.first_failure_ns.store(monotonicNs(), std::memory_order_relaxed);
  }
  const uint32_t threshold = passive_threshold_.load(std::memory_order_relaxed);
  if (threshold == 0 || failures < threshold || !notify_) {
    return;
  }
  // Only the flip wakes the control plane; later failures while it is pending add nothing.
  if (!stats.passive_down_pending.exchange(true, std::memory_order_acq_rel)) {
    notify_();
  }
}

}  // namespace fulcrum::pool
