"""Load drivers. Every exchange becomes one Sample stamped with CLOCK_MONOTONIC nanoseconds.

tcp_rr: open loop at `rate` new connections per second, one request each, from `clients`
  source addresses 127.0.1.1.. (so hashing pickers keep each client on one backend). With
  demo or Redis backends it runs in fulcrum-failover-driver (C++, epoll and a timerfd),
  whose timing holds on a busy machine; the asyncio version is the fallback.
tcp_stream: `streams` long-lived connections, each doing request/response at rate/streams
  per second; a broken stream is recorded, then reconnects.
udp_rr: `clients` UDP sockets, one request in flight each, at rate/clients per second.

Open loop: a request is due at t0 + i/rate whether or not earlier ones have answered, so a
hung backend shows as timeouts rather than as a slower request rate. The scheduler's own
lateness is kept (lag), so a report can show the driver kept up.
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import time

from .protocols import ProtocolError


@dataclasses.dataclass(slots=True)
class Sample:
    start_ns: int
    end_ns: int
    client: int
    outcome: str      # ok, refused, reset, timeout, closed, protocol, other
    backend: str      # Who answered ("" unless ok).


@dataclasses.dataclass
class LoadResult:
    samples: list[Sample]
    lag_ns: list[int]          # Scheduler lateness per request.
    broken_streams: list[tuple[int, int]]  # (mono_ns, stream) for tcp_stream.


def client_ip(i: int) -> str:
    return f"127.0.1.{1 + i}"


def classify(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return "timeout"
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)):
        return "reset"
    if isinstance(exc, (EOFError, asyncio.IncompleteReadError)):
        return "closed"
    if isinstance(exc, ProtocolError):
        return "protocol"
    if isinstance(exc, OSError) and exc.errno == errno.ECONNREFUSED:
        return "refused"
    return "other"


async def _sleep_until(due_ns: int):
    delay = (due_ns - time.monotonic_ns()) / 1e9
    if delay > 0:
        await asyncio.sleep(delay)


async def tcp_rr(vip, exchange, rate: int, clients: int, timeout_s: float, t0_ns: int,
                 end_ns: int) -> LoadResult:
    samples: list[Sample] = []
    lag: list[int] = []
    tasks = set()

    async def one(client: int):
        start = time.monotonic_ns()
        writer = None
        try:
            async with asyncio.timeout(timeout_s):
                reader, writer = await asyncio.open_connection(
                    vip[0], vip[1], local_addr=(client_ip(client), 0))
                backend = await exchange(reader, writer)
            samples.append(Sample(start, time.monotonic_ns(), client, "ok", backend))
        except Exception as e:  # Every failure is a data point, never a crash.
            samples.append(Sample(start, time.monotonic_ns(), client, classify(e), ""))
        finally:
            if writer is not None:
                writer.transport.abort()

    i = 0
    period_ns = 1_000_000_000 // rate
    while True:
        due = t0_ns + i * period_ns
        if due >= end_ns:
            break
        await _sleep_until(due)
        lag.append(time.monotonic_ns() - due)
        task = asyncio.create_task(one(i % clients))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        i += 1
    if tasks:
        await asyncio.wait(tasks)
    return LoadResult(samples, lag, [])


async def tcp_rr_native(driver: str, vip, proto: str, rate: int, clients: int,
                        timeout_s: float, t0_ns: int, end_ns: int) -> LoadResult:
    """tcp_rr through fulcrum-failover-driver (C++, epoll): the same schedule and samples,
    but its timing holds when the machine is busy. proto: demo or redis."""
    proc = await asyncio.create_subprocess_exec(
        driver, "--target", f"{vip[0]}:{vip[1]}", "--rate", str(rate), "--clients",
        str(clients), "--timeout-ms", str(int(timeout_s * 1000)), "--start-ns", str(t0_ns),
        "--end-ns", str(end_ns), "--proto", proto,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"{driver} exited {proc.returncode}: {err.decode().strip()}")
    samples, lag = [], []
    for line in out.decode().splitlines():
        parts = line.split(" ")
        if parts[0] == "S":
            samples.append(Sample(int(parts[1]), int(parts[2]), int(parts[3]), parts[4],
                                  "" if parts[5] == "-" else parts[5]))
        elif parts[0] == "L":
            lag.append(int(parts[1]))
    return LoadResult(samples, lag, [])


async def tcp_stream(vip, exchange, rate: int, streams: int, timeout_s: float, t0_ns: int,
                     end_ns: int) -> LoadResult:
    samples: list[Sample] = []
    lag: list[int] = []
    broken: list[tuple[int, int]] = []
    period_ns = max(1, 1_000_000_000 * streams // rate)

    async def stream(k: int):
        conn = None
        due = t0_ns + k * period_ns // streams
        while due < end_ns:
            await _sleep_until(due)
            lag.append(time.monotonic_ns() - due)
            start = time.monotonic_ns()
            try:
                async with asyncio.timeout(timeout_s):
                    if conn is None:
                        conn = await asyncio.open_connection(
                            vip[0], vip[1], local_addr=(client_ip(k % 250), 0))
                    backend = await exchange(*conn)
                samples.append(Sample(start, time.monotonic_ns(), k, "ok", backend))
            except Exception as e:
                now = time.monotonic_ns()
                samples.append(Sample(start, now, k, classify(e), ""))
                if conn is not None:
                    broken.append((now, k))
                    conn[1].transport.abort()
                    conn = None
            due += period_ns
            # Behind schedule (a timeout): skip the slots already missed, keep the phase.
            now = time.monotonic_ns()
            if due < now:
                due += (now - due) // period_ns * period_ns + period_ns
        if conn is not None:
            conn[1].transport.abort()

    await asyncio.gather(*(stream(k) for k in range(streams)))
    return LoadResult(samples, lag, broken)


class _Udp(asyncio.DatagramProtocol):
    def __init__(self):
        self.waiter: asyncio.Future | None = None

    def datagram_received(self, data, addr):
        if self.waiter and not self.waiter.done():
            self.waiter.set_result(data)

    def error_received(self, exc):
        if self.waiter and not self.waiter.done():
            self.waiter.set_exception(exc)


async def udp_rr(vip, rate: int, clients: int, timeout_s: float, t0_ns: int,
                 end_ns: int) -> LoadResult:
    samples: list[Sample] = []
    lag: list[int] = []
    loop = asyncio.get_running_loop()
    period_ns = max(1, 1_000_000_000 * clients // rate)

    async def client(k: int):
        transport, proto = await loop.create_datagram_endpoint(
            _Udp, local_addr=(client_ip(k), 0), remote_addr=vip)
        try:
            due = t0_ns + k * period_ns // clients
            while due < end_ns:
                await _sleep_until(due)
                lag.append(time.monotonic_ns() - due)
                start = time.monotonic_ns()
                proto.waiter = loop.create_future()
                transport.sendto(b"req")
                try:
                    data = await asyncio.wait_for(proto.waiter, timeout_s)
                    samples.append(Sample(start, time.monotonic_ns(), k, "ok",
                                          data.decode(errors="replace").strip()))
                except Exception as e:
                    samples.append(Sample(start, time.monotonic_ns(), k, classify(e), ""))
                due += period_ns
                now = time.monotonic_ns()
                if due < now:
                    due += (now - due) // period_ns * period_ns + period_ns
        finally:
            transport.close()

    await asyncio.gather(*(client(k) for k in range(clients)))
    return LoadResult(samples, lag, [])
