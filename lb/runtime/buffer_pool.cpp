#include "runtime/buffer_pool.hpp"

namespace fulcrum::runtime {

BufferPool::~BufferPool() {
  for (uint8_t* block : free_) {
    delete[] block;
  }
}

uint8_t* BufferPool::acquire() {
  if (free_.empty()) {
    return new uint8_t[kBlockBytes];
  }
  uint8_t* block = free_.back();
  free_.pop_back();
  return block;
}

void BufferPool::release(uint8_t* block) {
  if (block == nullptr) {
    return;
  }
  // Keep a bounded cache so a burst of slow readers does not pin memory forever.
  if (free_.size() >= max_cached_) {
    delete[] block;
    return;
  }
  free_.push_back(block);
}

}  // namespace fulcrum::runtime
