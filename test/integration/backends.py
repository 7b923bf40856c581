"""Python backends, clients and byte streams for the socket-behaviour integration tests.

A Backend is an in-process TCP server on loopback: one thread accepts, and every accepted
connection runs the test's handler in its own thread. Handlers report what they observed
through Backend.report(); an exception in a handler is kept in Backend.errors so the test can
fail with it instead of losing it in a thread. Backends are stopped by the test (kill) or at
exit, and every socket they accepted is closed with them.

Streams are pseudo-random bytes made chunk by chunk from a seed, so hundreds of megabytes can
be sent and checked (sha256) without ever holding them in memory.
"""

import atexit
import hashlib
import os
import queue
import random
import socket
import struct
import threading
import time
import traceback

CHUNK = 1 << 18  # 256 KiB: big enough for speed, small enough to keep memory flat.
HANDLER_TIMEOUT = 30.0  # No backend socket waits longer than this, so no test can hang on one.

_backends = []


def _family(host):
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def format_addr(host, port):
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class Backend:
    """A threaded TCP server; handler(conn, backend) runs once per accepted connection.

    backlog is passed to listen(); accept=False never accepts, which with a small backlog
    makes a listener whose queue fills up (used to provoke connect timeouts).
    """

    def __init__(self, handler=None, host="127.0.0.1", port=0, name=None, backlog=128,
                 accept=True):
        self.handler = handler
        self.host = host
        self.sock = socket.socket(_family(host), socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(backlog)
        self.port = self.sock.getsockname()[1]
        self.name = name or format_addr(host, self.port)
        self.accepted = 0
        self.errors = []
        self.results = queue.Queue()
        self._lock = threading.Lock()
        self._conns = set()
        self._threads = []
        self._stopping = False
        self._acceptor = None
        if accept:
            self._acceptor = threading.Thread(target=self._accept_loop, daemon=True)
            self._acceptor.start()
        _backends.append(self)

    @property
    def address(self):
        """The address as Fulcrum's config spells it: 127.0.0.1:port or [::1]:port."""
        return format_addr(self.host, self.port)

    def report(self, value):
        self.results.put(value)

    def result(self, timeout=10.0, what="a handler result"):
        """The next reported value; fails early if a handler has failed instead."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.results.get(timeout=0.05)
            except queue.Empty:
                pass
            if self.errors:
                raise AssertionError(f"backend {self.name}: a handler failed before "
                                     f"reporting {what}:\n" + "\n".join(self.errors))
            if time.monotonic() >= deadline:
                raise AssertionError(f"backend {self.name}: no {what} within {timeout}s; "
                                     f"accepted={self.accepted}")

    def _accept_loop(self):
        # A timeout lets the loop notice kill() even if shutdown() did not wake accept().
        self.sock.settimeout(0.1)
        while not self._stopping:
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                break
            conn.settimeout(HANDLER_TIMEOUT)
            with self._lock:
                if self._stopping:
                    conn.close()
                    break
                self.accepted += 1
                self._conns.add(conn)
                t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
                self._threads.append(t)
            t.start()

    def _serve(self, conn):
        try:
            if self.handler:
                self.handler(conn, self)
        except Exception:
            if not self._stopping:
                self.errors.append(traceback.format_exc())
        finally:
            with self._lock:
                self._conns.discard(conn)
            try:
                conn.close()
            except OSError:
                pass

    def kill(self, rst=False):
        """Stops listening (new connects are refused) and closes every open connection.

        rst=True closes them with a reset, as a crashed process with unread data would.
        """
        self._stopping = True
        try:
            # On Linux shutdown() takes a listening socket out of LISTEN at once, so SYNs
            # are answered with RST from here on and accept() wakes up.
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        if self._acceptor:
            self._acceptor.join(timeout=2)
        self.sock.close()
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            try:
                if rst:
                    set_linger_rst(c)
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for t in list(self._threads):
            t.join(timeout=2)

    def check_no_errors(self):
        if self.errors:
            raise AssertionError(f"backend {self.name} handler failed:\n" + "\n".join(
                self.errors))


def _cleanup():
    for b in _backends:
        if not b._stopping:
            b.kill()


atexit.register(_cleanup)


# --- Sockets ----------------------------------------------------------------------------------

def connect(addr, timeout=10.0):
    """A connected client socket; addr is (host, port). Every later call times out too."""
    host, port = addr
    s = socket.socket(_family(host), socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect((host, port))
    return s


def set_linger_rst(sock):
    """Makes close() send RST instead of FIN (SO_LINGER on, zero seconds)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def recv_exact(sock, n):
    """Reads exactly n bytes; raises AssertionError naming how many arrived before EOF."""
    buf = bytearray()
    while len(buf) < n:
        part = sock.recv(n - len(buf))
        if not part:
            raise AssertionError(f"EOF after {len(buf)} of {n} bytes")
        buf += part
    return bytes(buf)


def recv_line(sock, limit=65536):
    """Reads one '\\n'-terminated line byte by byte (lines here are short); b'' at EOF."""
    buf = bytearray()
    while len(buf) < limit:
        b = sock.recv(1)
        if not b:
            return bytes(buf)
        buf += b
        if b == b"\n":
            return bytes(buf)
    raise AssertionError(f"line longer than {limit} bytes")


def wait_closed(sock, timeout):
    """Waits for the peer to close: returns (kind, seconds) with kind 'eof', 'reset',
    'timeout' or 'data:<n>' when bytes arrived instead."""
    t0 = time.monotonic()
    old = sock.gettimeout()
    sock.settimeout(timeout)
    try:
        data = sock.recv(65536)
        kind = "eof" if not data else f"data:{len(data)}"
    except ConnectionResetError:
        kind = "reset"
    except socket.timeout:
        kind = "timeout"
    finally:
        sock.settimeout(old)
    return kind, time.monotonic() - t0


def read_until_closed(sock):
    """Reads and discards until the stream ends: returns (bytes read, kind) with kind 'eof',
    'reset' or 'timeout' (the socket's own timeout)."""
    got = 0
    try:
        while True:
            data = sock.recv(1 << 16)
            if not data:
                return got, "eof"
            got += len(data)
    except ConnectionResetError:
        return got, "reset"
    except (TimeoutError, socket.timeout):
        return got, "timeout"


# --- Streams ----------------------------------------------------------------------------------

def stream_chunks(seed, size, chunk=CHUNK):
    """Yields `size` pseudo-random bytes made from `seed`, one chunk at a time."""
    rng = random.Random(seed)
    left = size
    while left > 0:
        n = min(chunk, left)
        yield rng.randbytes(n)
        left -= n


def send_stream(sock, seed, size, progress=None):
    """Sends the stream for `seed`; returns the sha256 hex digest of what was sent.

    progress, if given, is a one-element list kept at the bytes handed to the kernel so far.
    """
    h = hashlib.sha256()
    for block in stream_chunks(seed, size):
        h.update(block)
        sock.sendall(block)
        if progress is not None:
            progress[0] += len(block)
    return h.hexdigest()


def recv_count(sock, size, progress=None, h=None):
    """Receives exactly `size` bytes (fewer if EOF comes first); returns (count, sha256 hex).

    progress, if given, is a one-element list kept at the running byte count; h, if given,
    is a hashlib object to continue (so a stream can be received in several parts).
    """
    h = h or hashlib.sha256()
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    got = 0
    while got < size:
        n = sock.recv_into(view, min(CHUNK, size - got))
        if n == 0:
            break
        h.update(view[:n])
        got += n
        if progress is not None:
            progress[0] = got
    return got, h.hexdigest()


def fd_count(pid):
    """Open descriptors of a process, from /proc/PID/fd."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def wait_fds(pid, want, timeout=5.0):
    """True once the process holds at most `want` descriptors, False after `timeout`."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if fd_count(pid) <= want:
            return True
        time.sleep(0.05)
    return False


def recv_to_eof(sock):
    """Receives until EOF; returns (count, sha256 hex)."""
    return recv_count(sock, 1 << 62)


def stream_digest(seed, size):
    """The sha256 hex digest the stream for `seed` has, computed without sending it."""
    h = hashlib.sha256()
    for block in stream_chunks(seed, size):
        h.update(block)
    return h.hexdigest()


def duplex(sock, send_seed, send_size, recv_size):
    """Sends one stream while receiving another on the same socket, at the same time.

    Returns dict(sent=digest, received=count, received_digest=digest, seconds=elapsed).
    """
    out = {}
    err = []

    def sender():
        try:
            out["sent"] = send_stream(sock, send_seed, send_size)
        except Exception as e:  # Reported by the caller with the receiving side's view.
            err.append(e)

    t0 = time.monotonic()
    t = threading.Thread(target=sender, daemon=True)
    t.start()
    out["received"], out["received_digest"] = recv_count(sock, recv_size)
    t.join(timeout=HANDLER_TIMEOUT * 2)
    out["seconds"] = time.monotonic() - t0
    if err:
        raise AssertionError(f"sending failed after receiving {out['received']} bytes: "
                             f"{err[0]!r}")
    if t.is_alive():
        raise AssertionError("sender still blocked after the receiver finished")
    return out


# --- Handlers ---------------------------------------------------------------------------------

def line_handler(conn, backend):
    """Answers every line 'X\\n' with '<backend name> X\\n' until EOF."""
    while True:
        line = recv_line(conn)
        if not line:
            return
        conn.sendall(backend.name.encode() + b" " + line)


def request(sock, text):
    """Sends one line and returns the name of the backend that answered it.

    Raises AssertionError if the answer does not echo the request exactly.
    """
    payload = text.encode() + b"\n"
    sock.sendall(payload)
    answer = recv_line(sock)
    name, _, echoed = answer.partition(b" ")
    if echoed != payload:
        raise AssertionError(f"request {payload!r} got answer {answer!r}")
    return name.decode()


# --- Fulcrum helpers --------------------------------------------------------------------------

def toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


def tcp_config(backends, listener="front", bind="127.0.0.1:0", algorithm="round_robin",
               retries=2, workers=2, drain_timeout="5s", listener_opts=None):
    """TOML for one TCP listener in front of one pool of `backends` (addresses or Backends).

    listener_opts adds keys to the [[listener]] table (connect_timeout, idle_timeout, ...).
    """
    lines = [
        "[global]",
        f"workers = {workers}",
        'log_level = "info"',
        f"drain_timeout = {toml_value(drain_timeout)}",
        "",
        "[[listener]]",
        f"name = {toml_value(listener)}",
        f"bind = {toml_value(bind)}",
        'protocol = "tcp"',
        f"pool = {toml_value(listener)}",
    ]
    for k, v in (listener_opts or {}).items():
        lines.append(f"{k} = {toml_value(v)}")
    lines += [
        "",
        f"[pool.{listener}]",
        f"algorithm = {toml_value(algorithm)}",
        f"retries = {retries}",
        "backends = [",
    ]
    for b in backends:
        address = b.address if isinstance(b, Backend) else b
        lines.append(f"  {{ address = {toml_value(address)} }},")
    lines += ["]", ""]
    return "\n".join(lines)


def log_tail(fulcrum, n=40):
    if fulcrum is None:
        return ""
    lines = fulcrum.log().splitlines()[-n:]
    return (f"\n--- fulcrum log (last {len(lines)} lines, exit={fulcrum.proc.poll()}) ---\n"
            + "\n".join(lines))


def check(cond, message, fulcrum=None):
    """assert with a message that says what was wrong, plus Fulcrum's log tail."""
    if not cond:
        raise AssertionError(message + log_tail(fulcrum))


def proc_status_kb(pid, field):
    """A kB figure from /proc/PID/status, e.g. VmRSS or VmHWM."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"/proc/{pid}/status has no {field}")


def unused_address(host="127.0.0.1"):
    """An address with nothing listening: a port the kernel handed out, then released."""
    with socket.socket(_family(host), socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return format_addr(host, s.getsockname()[1])


def try_connect(addr, timeout=2.0):
    """Returns 'connected' (and closes), 'refused' or 'timeout'."""
    try:
        s = connect(addr, timeout)
    except ConnectionRefusedError:
        return "refused"
    except socket.timeout:
        return "timeout"
    s.close()
    return "connected"
