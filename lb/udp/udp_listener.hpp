#pragma once

// One worker's share of a UDP listener: its SO_REUSEPORT socket, its session table and the
// batches datagrams travel in. The kernel hashes each client's address and port to one of
// the workers' sockets and keeps doing so while the set of sockets is unchanged, so every
// datagram of a client reaches the same worker, finds the same session and goes to the same
// backend; no state is shared between workers except the listener's counters and the
// session count that bounds the table across all of them.
//
// Per wakeup: recvmmsg up to DatagramBatch::kCapacity datagrams (a few rounds at most);
// consecutive datagrams of one client go to its backend socket in one sendmmsg; replies read
// from a backend socket go to the client in one sendmmsg on the listener socket. Nothing is
// allocated per datagram; a new session allocates its own state and one table entry.
//
// A session ends when (replies > 0) every client datagram got its `replies` answers, when
// nothing moved either way for idle_timeout (one sweep timer per listener reads only the
// least recently active sessions), when the backend answers with ICMP unreachable, or when
// it is evicted (table_full = "evict_oldest").
//
// All methods run on the owning worker's thread.

#include <uv.h>

#include <sys/socket.h>

#include <cstddef>
#include <cstdint>
#include <memory>

#include "runtime/worker.hpp"
#include "udp/datagram_batch.hpp"
#include "udp/session_table.hpp"
#include "udp/udp_session.hpp"
#include "udp/udp_stats.hpp"

namespace fulcrum::udp {

class Listener {
 public:
  // Takes ownership of socket.fd (a bound, non-blocking UDP socket).
  Listener(runtime::Worker& worker, runtime::ListenSocket socket);
  ~Listener();

  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;

  void start();

  // Drain or retirement by a reload: datagrams of clients without a session are dropped
  // (counted as draining); open sessions carry on both ways until they end on their own or
  // close() is called. The socket is closed at the first sweep that finds no session left.
  void stopAccepting();

  // Ends every session (reason shutdown) and closes the socket. Idempotent.
  void close();

  // Ends the sessions whose backend's close_generation moved past the one remembered at the
  // pick (on_down = "close"), logging one line per backend. Returns how many were ended.
  size_t closeSessionsOfDownBackends();

  size_t sessionCount() const { return table_.size(); }
  const runtime::ListenerState* state() const { return state_; }

  // Reload: the listener keeps its socket and sessions but reads its config (idle_timeout,
  // replies, max_sessions, table_full) and counts into state from now on.
  void setState(runtime::ListenerState* state);

 private:
  // libuv callbacks.
  static void onReadable_cb(uv_poll_t* handle, int status, int events);
  static void onSweep_cb(uv_timer_t* handle);
  static void onBackendReadable_cb(uv_poll_t* handle, int status, int events);
  static void onSessionClosed_cb(uv_handle_t* handle);
  static void onFlush_cb(uv_check_t* handle);

  // Client side (udp_listener.cpp).
  void onReadable();
  void handleBatch(unsigned count, uint64_t now);
  bool reserveSlot();
  void sweep();
  void startSweep();
  void noteDrop(Drop reason, uint64_t count, const sockaddr* client);

  // Backend side (udp_session.cpp).
  // Reserves a table slot, picks a backend and connects a socket to it. Returns nullptr and
  // the reason (to be counted by the caller) when the datagram cannot have a session.
  Session* openSession(const ClientKey& key, const sockaddr* client, socklen_t client_len,
                       const LocalAddress& local, uint64_t now, Drop* why);
  // Sends batch messages indices[0..count) of one client to its session's backend; fails
  // over once to a new session when the backend turned out to be unreachable.
  void forwardToBackend(Session* session, const unsigned* indices, unsigned count,
                        uint64_t now);
  void prepareToBackend(const Session& session, const unsigned* indices, unsigned first,
                        unsigned count);
  // sendmmsg of out()[first..count) until done or an error; returns the index of the first
  // message not sent and sets *error (0 when all were sent).
  unsigned sendToBackend(Session& session, unsigned first, unsigned count, int* error);
  void onBackendReadable(Session& session, int status);
  // Queues the replies in batch messages [first, first + count) for the client; they leave
  // in flushReplies, together with the replies of every other session read in the same
  // loop iteration: one sendmmsg on the listener socket instead of one per session.
  void forwardReplies(Session& session, unsigned first, unsigned count);
  // Sends the queued replies. Runs in the loop's check phase (after all I/O callbacks of an
  // iteration, before closed sessions are freed, so the queued headers still point at live
  // sessions), when the batch is full, and before anything else reuses the batch.
  void flushReplies();
  void onBackendUnreachable(Session& session);
  void endSession(Session& session, EndReason reason);

  runtime::Worker& worker_;
  runtime::ListenerState* state_;
  UdpListenerStats* stats_;  // &state_->udp.
  int fd_;
  uint16_t port_be_;  // Bound port, network byte order.
  bool wildcard_;     // Replies need an explicit source address (IP_PKTINFO).
  uint64_t idle_ms_;
  uv_poll_t poll_;
  uv_timer_t sweep_timer_;
  uv_check_t flush_check_;
  unsigned pending_in_ = 0;   // Batch receive slots holding queued replies.
  unsigned pending_out_ = 0;  // Queued reply messages in batch_->out().
  bool started_ = false;
  bool open_ = false;
  bool accepting_ = false;  // New clients get a session.
  SessionTable table_;
  std::unique_ptr<DatagramBatch> batch_;
};

}  // namespace fulcrum::udp
