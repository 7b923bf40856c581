"""Helpers for the admin endpoint's integration tests: a Fulcrum with [admin] on a kernel-chosen
loopback port and a unix socket in its temp dir, a curl wrapper (a real HTTP client) and a raw
socket client for requests curl refuses to send.
"""

import json
import os
import re
import socket
import subprocess
import time

from backends import toml_value
from fulcrum_it import Fulcrum, tmpdir

TOKEN = "it-token-0123456789abcdef"
CURL_TIMEOUT = 10
_curl_dir = None


def admin_config(pools, listeners=None, admin_extra=None, workers=2, level="info"):
    """TOML with [admin] (listen 127.0.0.1:0 and socket; the socket path is filled in by
    AdminFulcrum) plus listeners and pools.

    pools: {name: {"backends": [(address, extra inline keys)], "health": "...", "extra": "..."}}
    listeners: [(name, pool, protocol)]; defaults to one TCP listener per pool.
    """
    lines = ["[global]", f"workers = {workers}", f'log_level = "{level}"',
             'drain_timeout = "2s"', "", "[admin]", 'listen = "127.0.0.1:0"',
             'socket = "@SOCKET@"', f"token = {toml_value(TOKEN)}"]
    for k, v in (admin_extra or {}).items():
        lines.append(f"{k} = {toml_value(v)}")
    for name, pool, protocol in listeners or [(p, p, "tcp") for p in pools]:
        lines += ["", "[[listener]]", f"name = {toml_value(name)}", 'bind = "127.0.0.1:0"',
                  f"pool = {toml_value(pool)}", f"protocol = {toml_value(protocol)}"]
    for name, spec in pools.items():
        lines += ["", f"[pool.{name}]", spec.get("extra", ""), "backends = ["]
        for address, extra in spec["backends"]:
            tail = f", {extra}" if extra else ""
            lines.append(f"  {{ address = {toml_value(address)}{tail} }},")
        lines.append("]")
        if spec.get("health"):
            lines += ["", f"[pool.{name}.health]", spec["health"]]
    return "\n".join(lines) + "\n"


class AdminFulcrum(Fulcrum):
    """A Fulcrum whose admin endpoint is up: self.admin_port, self.socket_path."""

    _admin = re.compile(r"admin listening address=127\.0\.0\.1:(\d+) transport=tcp")

    def __init__(self, config_text, **kw):
        # sun_path is 108 bytes: keep the socket in a short directory of its own.
        self.socket_dir = tmpdir("fadm-")
        self.socket_path = os.path.join(self.socket_dir, "admin.sock")
        super().__init__(config_text.replace("@SOCKET@", self.socket_path), **kw)
        m = self.wait_log(self._admin.pattern)
        self.admin_port = int(m.group(1))
        self.wait_log(r"admin listening socket=")

    def url(self, path):
        return f"http://127.0.0.1:{self.admin_port}{path}"


class Reply:
    def __init__(self, status, body, headers):
        self.status = status
        self.body = body
        self.headers = headers  # Lower-case names.

    def json(self):
        return json.loads(self.body)

    def error(self):
        """The error message of a JSON error reply."""
        doc = self.json()
        assert doc["status"] == self.status, doc
        return doc["error"]

    def __repr__(self):
        return f"Reply({self.status}, {self.body[:300]!r})"


def curl(f, path, method="GET", body=None, token=TOKEN, unix=False, headers=(), raw_url=None):
    """One request with curl. token=None sends no Authorization header. Returns a Reply."""
    global _curl_dir
    if _curl_dir is None:
        _curl_dir = tmpdir("fulcrum-curl-")
    body_path = os.path.join(_curl_dir, "body")
    args = ["curl", "-sS", "-g", "--max-time", str(CURL_TIMEOUT), "-X", method, "-D", "-",
            "-o", body_path]
    if unix:
        args += ["--unix-socket", f.socket_path]
    if token is not None:
        args += ["-H", f"Authorization: Bearer {token}"]
    for h in headers:
        args += ["-H", h]
    if body is not None:
        args += ["--data-binary", "@-"]
    args.append(raw_url or (f"http://localhost{path}" if unix else f.url(path)))

    data = body if isinstance(body, bytes) else (body or "").encode()
    p = subprocess.run(args, input=data if body is not None else None, capture_output=True,
                       timeout=CURL_TIMEOUT + 5)
    if p.returncode != 0:
        raise AssertionError(f"curl {' '.join(args)} failed ({p.returncode}): "
                             f"{p.stderr.decode()}")
    with open(body_path, "rb") as fh:
        payload = fh.read()
    return parse_head(p.stdout.decode("latin-1"), payload)


def parse_head(head_text, payload):
    # -D - prints every response head; with 100 Continue there are two. The last one counts.
    blocks = [b for b in head_text.replace("\r\n", "\n").split("\n\n") if b.strip()]
    lines = blocks[-1].split("\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Reply(status, payload.decode("utf-8", errors="replace"), headers)


def raw_request(f, data, shut=False, timeout=10.0, unix=False):
    """Sends bytes as they are and reads until the server closes. Returns a Reply, or None
    when the server closed without answering."""
    if unix:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        s.connect(f.socket_path)
    else:
        s = socket.create_connection(("127.0.0.1", f.admin_port), timeout=timeout)
    try:
        if data:
            s.sendall(data)
        if shut:
            s.shutdown(socket.SHUT_WR)
        out = b""
        while True:
            try:
                part = s.recv(65536)
            except ConnectionResetError:
                break
            if not part:
                break
            out += part
    finally:
        s.close()
    if not out:
        return None
    head, _, payload = out.partition(b"\r\n\r\n")
    return parse_head(head.decode("latin-1") + "\r\n\r\n", payload)


def backend_status(f, pool, address, unix=True):
    for p in curl(f, "/api/v1/status", unix=unix).json()["pools"]:
        if p["name"] == pool:
            for b in p["backends"]:
                if b["address"] == address:
                    return b
    raise AssertionError(f"{pool}/{address} not in the status")


def wait_until(predicate, timeout=10.0, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")
