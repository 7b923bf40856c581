#pragma once

// Fixed-size I/O blocks recycled within one worker. A session holds a block only while a
// write to its peer is incomplete, so idle sessions cost no buffer memory at all.

#include <cstddef>
#include <cstdint>
#include <vector>

namespace fulcrum::runtime {

class BufferPool {
 public:
  static constexpr size_t kBlockBytes = 64 * 1024;

  explicit BufferPool(size_t max_cached = 256) : max_cached_(max_cached) {}
  ~BufferPool();

  BufferPool(const BufferPool&) = delete;
  BufferPool& operator=(const BufferPool&) = delete;

  uint8_t* acquire();
  void release(uint8_t* block);

 private:
  size_t max_cached_;
  std::vector<uint8_t*> free_;
};

}  // namespace fulcrum::runtime
