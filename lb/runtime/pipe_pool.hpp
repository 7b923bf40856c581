#pragma once

// Pipes for splice(), recycled within one worker. A TCP direction takes a pipe only once it
// has proven bulky (see Session), because a pipe costs two descriptors and a small
// request/response flow gains nothing from it; an empty pipe goes back to the pool when its
// session ends, so a stream of bulk transfers does not pay pipe2() and fcntl() each time.
// Worker thread only.

#include <cstddef>
#include <vector>

namespace fulcrum::runtime {

struct Pipe {
  int read_fd = -1;   // Bytes leave the pipe here (splice to the destination socket).
  int write_fd = -1;  // Bytes enter the pipe here (splice from the source socket).

  bool valid() const { return read_fd >= 0; }
};

class PipePool {
 public:
  // Pipe capacity asked for with F_SETPIPE_SZ: four times the copy path's 64 KiB block, so
  // one splice pair moves what four read/send pairs would. Below the default
  // /proc/sys/fs/pipe-max-size (1 MiB); when refused, the pipe keeps the default 64 KiB.
  static constexpr int kPipeBytes = 256 * 1024;
  static constexpr size_t kMaxCached = 8;

  PipePool() = default;
  ~PipePool();
  PipePool(const PipePool&) = delete;
  PipePool& operator=(const PipePool&) = delete;

  // A non-blocking pipe; invalid when pipe2() fails (out of descriptors), in which case the
  // caller stays on the copy path.
  Pipe acquire();
  // Returns pipe to the cache when it is empty, closes it otherwise (stale bytes).
  void release(Pipe& pipe, bool empty);
  // Closes every cached pipe; called when accept() runs out of descriptors.
  void drop();

 private:
  std::vector<Pipe> free_;
};

}  // namespace fulcrum::runtime
