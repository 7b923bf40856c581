#pragma once

// One proxied TCP connection: a client socket, a backend socket and the two directions
// between them. Runs entirely on its worker's loop; never throws.
//
// Life: accepted -> connecting (pick a backend, non-blocking connect with a deadline, retry
// on another backend when it fails) -> splicing (both directions carried independently) ->
// closing (every handle closed, then the object deletes itself).
//
// Each direction reads from its source into the worker's scratch buffer and writes straight
// to its destination. Bytes the destination cannot take yet are parked in one pooled block
// and the source is not read again until they are written: that is the backpressure bound,
// one block per direction on top of the kernel's socket buffers. An end-of-stream from the
// source becomes shutdown(SHUT_WR) on the destination once the parked bytes are out, so
// half-closed connections keep working in the other direction. A reset on one side becomes
// a reset on the other (SO_LINGER 0).
//
// A direction that proves bulky (kSpliceAfterFullReads reads that filled the 64 KiB scratch
// buffer) switches to splice(): source socket -> a pooled pipe -> destination socket, with
// no copy through user space. Bytes waiting in the pipe count as parked, so backpressure,
// half-close and counters work the same on both paths; the pipe (two descriptors) goes back
// to the worker's pool at the end. When no pipe can be had the direction keeps copying.

#include <uv.h>

#include <sys/socket.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "pool/pool.hpp"
#include "runtime/io_set.hpp"
#include "runtime/pipe_pool.hpp"
#include "runtime/listener_state.hpp"

namespace fulcrum::runtime {
class Worker;
}

namespace fulcrum::tcp {

// Why a session ended; one value per session, logged and counted.
enum class CloseReason {
  Done,            // Both directions finished with end-of-stream.
  ClientReset,     // Client sent RST or failed; backend is reset too.
  BackendReset,    // Backend sent RST or failed; client is reset too.
  IdleTimeout,     // No byte either way for idle_timeout.
  NoBackend,       // No backend could be picked or reached.
  Shutdown,        // Drain timeout or immediate stop.
  BackendDown,     // The backend went down under on_down = "close"; both sides are reset.
  InternalError,   // A local failure (out of descriptors, ...).
};

const char* toString(CloseReason reason);

class Session {
 public:
  // Takes ownership of client_fd (non-blocking, already counted in listener.active).
  static void start(runtime::Worker& worker, runtime::ListenerState& listener, int client_fd,
                    const sockaddr_storage& peer);

  // Called by the worker at shutdown; closes at once.
  void abort(CloseReason reason);

  // Called by the worker when the control plane took backends down under on_down =
  // "close": closes this session if its backend's close generation moved since the pick,
  // and returns that backend; otherwise returns null.
  const pool::Backend* closeIfBackendDowned();

  const runtime::ListenerState& listener() const { return listener_; }

  // Intrusive list links, owned by the worker.
  Session* prev_ = nullptr;
  Session* next_ = nullptr;

 private:
  // One direction: bytes read from src are written to dst.
  struct Direction {
    int* src = nullptr;
    int* dst = nullptr;
    uint8_t* parked = nullptr;  // Pooled block holding bytes dst could not take yet.
    uint32_t parked_off = 0;
    uint32_t parked_len = 0;
    runtime::Pipe pipe;         // Set once this direction proved bulky: splice() from then.
    uint32_t piped = 0;         // Bytes in pipe: read from src, not yet written to dst.
    uint32_t full_reads = 0;    // Reads that filled the scratch buffer, on the copy path.
    bool splice_refused = false;  // No pipe could be had (descriptors): copy for good.
    bool src_eof = false;   // Source sent FIN.
    bool dst_shut = false;  // FIN passed on to dst.
    uint64_t bytes = 0;

    bool hasParked() const { return parked_len > parked_off || piped > 0; }
    bool finished() const { return dst_shut; }
  };

  // Result of moving bytes in one direction: which peer failed (reset, or an error that
  // leaves its stream unusable), if any.
  enum class Io { Ok, ClientFailed, BackendFailed };

  Session(runtime::Worker& worker, runtime::ListenerState& listener, int client_fd,
          const sockaddr_storage& peer);
  ~Session();

  static void onClientIo_cb(runtime::IoWatch& watch, int status, int events);
  static void onBackendIo_cb(runtime::IoWatch& watch, int status, int events);
  static void onTimer_cb(uv_timer_t* handle);
  static void onHandleClosed_cb(uv_handle_t* handle);

  void begin();
  void connectNext();
  void onConnectFailed(int error, bool timed_out);
  void onConnected();
  void onClientPoll(int status, int events);
  void onBackendPoll(int status, int events);
  void onTimer();

  Io failedSide(const int* fd) const;
  Io pump(Direction& dir);
  Io pumpSplice(Direction& dir);
  Io flushPipe(Direction& dir);
  Io flush(Direction& dir);
  void passEof(Direction& dir);
  void afterIo(Io result);
  void updatePolls();
  void closeBackendAttempt();
  void finish(CloseReason reason);
  void logClose() const;

  runtime::Worker& worker_;
  runtime::ListenerState& listener_;
  sockaddr_storage peer_;
  int client_fd_;
  int backend_fd_ = -1;  // The current attempt's socket; -1 between attempts.
  // Both sockets sit in the worker's IoSet, not in libuv handles; the backend watch is
  // reused by every connect attempt. The timer is the session's only libuv handle, and its
  // close callback frees the session.
  runtime::IoWatch client_watch_;
  runtime::IoWatch backend_watch_;
  uv_timer_t timer_;

  std::shared_ptr<const pool::PoolSnapshot> snapshot_;
  uint32_t backend_index_ = pool::kNoBackend;
  uint64_t flow_hash_ = 0;
  uint32_t attempts_ = 0;
  uint32_t close_generation_ = 0;  // The backend's close generation at the pick.
  std::vector<uint8_t> tried_;  // Filled only once a connect has failed.

  Direction up_;    // Client to backend.
  Direction down_;  // Backend to client.

  uint64_t started_ms_ = 0;
  uint64_t connect_started_ns_ = 0;  // uv_hrtime() at the current attempt's connect().
  uint64_t last_activity_ms_ = 0;
  bool connected_ = false;
  bool counted_ = false;  // This session is counted in its backend's active sessions.
  bool closing_ = false;
  int open_handles_ = 0;
  CloseReason reason_ = CloseReason::Done;
};

}  // namespace fulcrum::tcp
