// The per-worker pipe pool behind splice(): pipes come non-blocking and enlarged, empty ones
// are reused, pipes holding stale bytes are closed, and drop() gives every cached
// descriptor back.

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <vector>

#include "runtime/pipe_pool.hpp"

using fulcrum::runtime::Pipe;
using fulcrum::runtime::PipePool;

namespace {

bool isOpen(int fd) {
  return ::fcntl(fd, F_GETFD) != -1 || errno != EBADF;
}

}  // namespace

TEST_CASE("pipe pool hands out non-blocking pipes of the asked size") {
  PipePool pool;
  Pipe pipe = pool.acquire();
  REQUIRE(pipe.valid());
  CHECK((::fcntl(pipe.read_fd, F_GETFL) & O_NONBLOCK) != 0);
  CHECK((::fcntl(pipe.write_fd, F_GETFL) & O_NONBLOCK) != 0);
  CHECK(::fcntl(pipe.write_fd, F_GETPIPE_SZ) >= PipePool::kPipeBytes);

  // Non-blocking: reading an empty pipe says "try again", never waits.
  char byte = 0;
  CHECK(::read(pipe.read_fd, &byte, 1) == -1);
  CHECK(errno == EAGAIN);
  pool.release(pipe, true);
  CHECK_FALSE(pipe.valid());
}

TEST_CASE("pipe pool reuses empty pipes and closes ones with stale bytes") {
  PipePool pool;
  Pipe first = pool.acquire();
  const Pipe kept = first;
  pool.release(first, true);
  Pipe again = pool.acquire();
  CHECK(again.read_fd == kept.read_fd);
  CHECK(again.write_fd == kept.write_fd);

  REQUIRE(::write(again.write_fd, "x", 1) == 1);
  pool.release(again, false);
  CHECK_FALSE(isOpen(kept.read_fd));
  CHECK_FALSE(isOpen(kept.write_fd));

  // The stale pipe is gone, so the next one is new, not the closed one's numbers reused
  // with its bytes still inside.
  Pipe fresh = pool.acquire();
  REQUIRE(fresh.valid());
  char byte = 0;
  CHECK(::read(fresh.read_fd, &byte, 1) == -1);
  pool.release(fresh, true);
}

TEST_CASE("pipe pool caches a bounded number of pipes and drop() closes them") {
  PipePool pool;
  std::vector<Pipe> pipes;
  for (size_t i = 0; i < PipePool::kMaxCached + 2; ++i) {
    pipes.push_back(pool.acquire());
    REQUIRE(pipes.back().valid());
  }
  const std::vector<Pipe> all = pipes;
  for (Pipe& pipe : pipes) {
    pool.release(pipe, true);
  }
  // The last two found the cache full and were closed.
  CHECK_FALSE(isOpen(all[PipePool::kMaxCached].read_fd));
  CHECK_FALSE(isOpen(all[PipePool::kMaxCached + 1].write_fd));
  CHECK(isOpen(all[0].read_fd));

  pool.drop();
  for (size_t i = 0; i < PipePool::kMaxCached; ++i) {
    CHECK_FALSE(isOpen(all[i].read_fd));
    CHECK_FALSE(isOpen(all[i].write_fd));
  }
}
