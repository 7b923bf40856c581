#include "runtime/pipe_pool.hpp"

#include <fcntl.h>
#include <unistd.h>

namespace fulcrum::runtime {

namespace {

void closePipe(Pipe& pipe) {
  ::close(pipe.read_fd);
  ::close(pipe.write_fd);
  pipe.read_fd = -1;
  pipe.write_fd = -1;
}

}  // namespace

PipePool::~PipePool() {
  drop();
}

Pipe PipePool::acquire() {
  if (!free_.empty()) {
    const Pipe pipe = free_.back();
    free_.pop_back();
    return pipe;
  }
  int fds[2];
  if (::pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) {
    return {};
  }
  ::fcntl(fds[1], F_SETPIPE_SZ, kPipeBytes);
  return {fds[0], fds[1]};
}

void PipePool::release(Pipe& pipe, bool empty) {
  if (!pipe.valid()) {
    return;
  }
  if (empty && free_.size() < kMaxCached) {
    free_.push_back(pipe);
    pipe = {};
    return;
  }
  closePipe(pipe);
}

void PipePool::drop() {
  for (Pipe& pipe : free_) {
    closePipe(pipe);
  }
  free_.clear();
}

}  // namespace fulcrum::runtime
