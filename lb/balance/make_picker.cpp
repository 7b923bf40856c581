// makePicker: the one place that maps an algorithm name to its picker class. Option checks
// live in the classes themselves, so a picker built directly is held to the same rules.

#include <stdexcept>
#include <utility>

#include "balance/least_conn.hpp"
#include "balance/maglev.hpp"
#include "balance/random_two.hpp"
#include "balance/ring_hash.hpp"
#include "balance/round_robin.hpp"
#include "fulcrum/balance.hpp"

namespace fulcrum::balance {

std::unique_ptr<Picker> makePicker(const PickerOptions& options,
                                   std::vector<Candidate> candidates) {
  switch (options.algorithm) {
    case Algorithm::RoundRobin:
      return std::make_unique<RoundRobinPicker>(std::move(candidates));
    case Algorithm::LeastConn:
      return std::make_unique<LeastConnPicker>(std::move(candidates));
    case Algorithm::RandomTwo:
      return std::make_unique<RandomTwoPicker>(std::move(candidates));
    case Algorithm::RingHash:
      return std::make_unique<RingHashPicker>(std::move(candidates), options.ring_hash_vnodes);
    case Algorithm::Maglev:
      return std::make_unique<MaglevPicker>(std::move(candidates), options.maglev_table_size);
  }
  throw std::invalid_argument("unknown balancing algorithm");
}

}  // namespace fulcrum::balance
