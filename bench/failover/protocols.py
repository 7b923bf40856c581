"""One request/response per backend kind, each answering which backend served it.

demo: a line "req\\n" is answered "NAME req\\n".
redis: each server holds the key fulcrum:whoami naming itself; GET it.
postgres: a minimal protocol-3 session (trust auth) running SHOW port; the port names the
server. Only what this needs is parsed; anything else is an error of kind "protocol".
"""

from __future__ import annotations

import asyncio
import socket
import struct

PG_SSL_REQUEST = struct.pack("!II", 8, 80877103)  # Answered with a single "N" or "S".


class ProtocolError(Exception):
    pass


def redis_set_name(host: str, port: int, name: str):
    with socket.create_connection((host, port), 5) as s:
        s.sendall(f"SET fulcrum:whoami {name}\r\n".encode())
        if not s.recv(64).startswith(b"+OK"):
            raise RuntimeError(f"redis {host}:{port} refused SET")


async def demo_exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> str:
    writer.write(b"req\n")
    line = await reader.readline()
    if not line.endswith(b"\n"):
        raise EOFError
    name, _, rest = line.decode(errors="replace").partition(" ")
    if rest.strip() != "req":
        raise ProtocolError(line)
    return name


async def redis_exchange(reader, writer) -> str:
    writer.write(b"GET fulcrum:whoami\r\n")
    header = await reader.readline()
    if not header:
        raise EOFError
    if not header.startswith(b"$"):
        raise ProtocolError(header)
    body = await reader.readline()
    if not body:
        raise EOFError
    return body.decode(errors="replace").strip()


def _pg_startup() -> bytes:
    params = b"user\0postgres\0database\0postgres\0\0"
    return struct.pack("!II", 8 + len(params), 196608) + params


async def _pg_message(reader) -> tuple[bytes, bytes]:
    head = await reader.readexactly(5)
    kind, length = head[:1], struct.unpack("!I", head[1:])[0]
    return kind, await reader.readexactly(length - 4)


async def postgres_exchange(reader, writer, ports: dict[int, str], keep: bool) -> str:
    """One SHOW port; the session is started on a connection's first call. keep: leave the
    session open for the next call (long-lived streams) instead of ending it."""
    if not getattr(writer, "pg_ready", False):
        writer.write(_pg_startup())
        while True:
            kind, body = await _pg_message(reader)
            if kind == b"E":
                raise ProtocolError(body[:80])
            if kind == b"Z":
                break
        writer.pg_ready = True
    query = b"SHOW port\0"
    writer.write(b"Q" + struct.pack("!I", 4 + len(query)) + query)
    value = None
    while True:
        kind, body = await _pg_message(reader)
        if kind == b"E":
            raise ProtocolError(body[:80])
        if kind == b"D":
            size = struct.unpack("!i", body[2:6])[0]
            value = body[6:6 + size].decode()
        if kind == b"Z":
            break
    if not keep:
        writer.write(b"X\0\0\0\4")
    if value is None or int(value) not in ports:
        raise ProtocolError(f"unexpected port {value}")
    return ports[int(value)]
