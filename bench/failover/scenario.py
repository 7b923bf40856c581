"""Failover scenario files: TOML, validated key by key like Fulcrum's own config.

Every error names the file, the line (found by scanning the text, since tomllib keeps no
positions), the key, what was found and what is allowed. Unknown tables and keys are errors.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from pathlib import Path

FAULTS = ("kill", "hang", "refuse", "blackhole", "slow")
ROOT_FAULTS = ("blackhole", "slow")  # Need root and the bench's own namespaces.
TARGETS = ("fulcrum", "haproxy")
BACKEND_KINDS = ("demo", "redis", "postgres")
LOADS = ("tcp_rr", "tcp_stream", "udp_rr")
ALGORITHMS = ("round_robin", "least_conn", "random_two", "ring_hash", "maglev")
HASHING = ("ring_hash", "maglev")
# Which faults each backend kind can take without the namespaces: refuse needs a server
# that closes its listener and keeps its connections (the demo backend does on SIGUSR1).
KIND_FAULTS = {
    "demo": ("kill", "hang", "refuse", "blackhole", "slow"),
    "redis": ("kill", "hang", "blackhole", "slow"),
    "postgres": ("kill", "hang", "blackhole", "slow"),
}


class ScenarioError(Exception):
    pass


@dataclasses.dataclass
class Scenario:
    path: Path
    name: str
    description: str
    targets: list[str]
    faults: list[str]
    duration_s: float
    fault_at_s: float
    heal_at_s: float
    fault_backend: int
    slack_s: float
    slow_delay_s: float
    backend_kind: str
    backend_count: int
    algorithm: str
    retries: int
    connect_timeout_s: float
    on_down: str
    interval_s: float
    timeout_s: float
    rise: int
    fall: int
    passive_failures: int
    load: str
    rate: int
    clients: int
    request_timeout_s: float
    streams: int

    @property
    def hashing(self) -> bool:
        return self.algorithm in HASHING

    def detection_bound_s(self, target: str) -> float:
        """Worst-case time from the fault to the mark-down, from the health settings alone.

        Fulcrum keeps probes start-to-start at interval (README, Health checks): fall probes
        at interval spacing, the last one waiting out its timeout. HAProxy starts the next
        check inter after the previous one ended, so a check that times out stretches the
        period to inter + timeout: fall x (inter + timeout check). Both plus the slack."""
        if target == "haproxy":
            return self.fall * (self.interval_s + self.timeout_s) + self.slack_s
        return self.fall * self.interval_s + self.timeout_s + self.slack_s


_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m)$")


def parse_duration(text: str) -> float:
    m = _DURATION.match(text)
    if not m:
        raise ValueError
    value = float(m.group(1))
    return value / 1000 if m.group(2) == "ms" else value * 60 if m.group(2) == "m" else value


class _Reader:
    """Reads one table, remembering which keys were used so leftovers can be refused."""

    def __init__(self, loader: "_Loader", table: str, data: dict):
        self.loader, self.table, self.data, self.used = loader, table, data, set()

    def fail(self, key: str, message: str) -> ScenarioError:
        return ScenarioError(f"{self.loader.where(self.table, key)}: [{self.table}] {key}: "
                             f"{message}")

    def take(self, key, default=None, required=False):
        self.used.add(key)
        if key not in self.data:
            if required:
                line = self.loader.where(self.table, None)
                return self._missing(key, line)
            return default
        return self.data[key]

    def _missing(self, key, line):
        raise ScenarioError(f"{line}: [{self.table}] {key} is required")

    def string(self, key, allowed, default=None, required=False) -> str:
        value = self.take(key, default, required)
        if not isinstance(value, str) or value not in allowed:
            raise self.fail(key, f"found {value!r}; allowed: {', '.join(allowed)}")
        return value

    def text(self, key, default="") -> str:
        value = self.take(key, default)
        if not isinstance(value, str):
            raise self.fail(key, f"found {value!r}; expected a string")
        return value

    def integer(self, key, low, high, default=None, required=False) -> int:
        value = self.take(key, default, required)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise self.fail(key, f"found {value!r}; expected an integer {low}..{high}")
        return value

    def duration(self, key, default=None, required=False, low=0.0, high=3600.0) -> float:
        value = self.take(key, default, required)
        try:
            seconds = parse_duration(value) if isinstance(value, str) else None
        except ValueError:
            seconds = None
        if seconds is None or not low < seconds <= high:
            raise self.fail(key, f"found {value!r}; expected a duration such as \"150ms\", "
                                 f"\"2s\" (more than {low:g}s, at most {high:g}s)")
        return seconds

    def names(self, key, allowed, default) -> list[str]:
        value = self.take(key, default)
        if (not isinstance(value, list) or not value or
                any(v not in allowed for v in value) or len(set(value)) != len(value)):
            raise self.fail(key, f"found {value!r}; expected a non-empty list of distinct "
                                 f"names from: {', '.join(allowed)}")
        return list(value)

    def done(self):
        for key in self.data:
            if key not in self.used:
                raise self.fail(key, f"unknown key; keys of [{self.table}] are: "
                                     f"{', '.join(sorted(self.used))}")


class _Loader:
    def __init__(self, path: Path, text: str):
        self.path, self.lines = path, text.splitlines()

    def where(self, table: str, key: str | None) -> str:
        """file:line of key inside [table] (or of the table header), best effort."""
        current, header_line = "", 0
        for number, line in enumerate(self.lines, 1):
            stripped = line.strip()
            if stripped.startswith("["):
                current = stripped.strip("[]").strip()
                if current == table:
                    header_line = number
                continue
            if current == table and key and re.match(rf"{re.escape(key)}\s*=", stripped):
                return f"{self.path}:{number}"
        return f"{self.path}:{header_line or 1}"


def target_fault_problem(s: Scenario) -> tuple[str, str] | None:
    """(key, message) when the scenario's targets or faults cannot run together, else None.
    Checked at load and again after --targets / --faults override the file."""
    unsupported = [f for f in s.faults if f not in KIND_FAULTS[s.backend_kind]]
    if unsupported:
        return ("faults", f"{', '.join(unsupported)} cannot be applied to "
                          f"{s.backend_kind} backends; allowed: "
                          f"{', '.join(KIND_FAULTS[s.backend_kind])}")
    if s.load == "udp_rr" and "haproxy" in s.targets:
        return ("targets", "HAProxy does not proxy UDP; use targets = [\"fulcrum\"] "
                           "with a udp_rr load")
    return None


def load(path: str | Path) -> Scenario:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise ScenarioError(f"{path}: cannot read: {e.strerror}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ScenarioError(f"{path}: not valid TOML: {e}") from None

    loader = _Loader(path, text)
    tables = ("scenario", "backends", "balance", "health", "load")
    for name, value in data.items():
        if name not in tables or not isinstance(value, dict):
            raise ScenarioError(f"{loader.where(name, None)}: unknown table or key [{name}]; "
                                f"tables are: {', '.join(tables)}")

    def table(name):
        return _Reader(loader, name, data.get(name, {}))

    sc, be, ba, he, lo = (table(n) for n in tables)
    s = Scenario(
        path=path,
        name=sc.text("name", path.stem),
        description=sc.text("description"),
        targets=sc.names("targets", TARGETS, ["fulcrum"]),
        faults=sc.names("faults", FAULTS, ["kill", "hang", "refuse"]),
        duration_s=sc.duration("duration", "6s", high=600),
        fault_at_s=sc.duration("fault_at", "2s", high=600),
        heal_at_s=sc.duration("heal_at", "4s", high=600),
        fault_backend=sc.integer("fault_backend", 0, 63, 0),
        slack_s=sc.duration("slack", "150ms", high=60),
        slow_delay_s=sc.duration("slow_delay", "200ms", high=60),
        backend_kind=be.string("kind", BACKEND_KINDS, "demo"),
        backend_count=be.integer("count", 2, 64, 3),
        algorithm=ba.string("algorithm", ALGORITHMS, "round_robin"),
        retries=ba.integer("retries", 0, 10, 1),
        connect_timeout_s=ba.duration("connect_timeout", "1s", high=60),
        on_down=ba.string("on_down", ("continue", "close"), "continue"),
        interval_s=he.duration("interval", "200ms", high=60),
        timeout_s=he.duration("timeout", "100ms", high=60),
        rise=he.integer("rise", 1, 100, 2),
        fall=he.integer("fall", 1, 100, 2),
        passive_failures=he.integer("passive_failures", 0, 1000, 3),
        load=lo.string("kind", LOADS, "tcp_rr"),
        rate=lo.integer("rate", 1, 5000, 200),
        clients=lo.integer("clients", 1, 250, 24),
        request_timeout_s=lo.duration("timeout", "500ms", high=60),
        streams=lo.integer("streams", 1, 1000, 16),
    )
    for reader in (sc, be, ba, he, lo):
        reader.done()

    if not s.fault_at_s < s.heal_at_s < s.duration_s:
        raise sc.fail("heal_at", f"fault_at ({s.fault_at_s:g}s) < heal_at ({s.heal_at_s:g}s) "
                                 f"< duration ({s.duration_s:g}s) must hold")
    if s.fault_backend >= s.backend_count:
        raise sc.fail("fault_backend", f"found {s.fault_backend}; the scenario has "
                                       f"{s.backend_count} backends (0..{s.backend_count - 1})")
    if s.timeout_s > s.interval_s:
        raise he.fail("timeout", f"{s.timeout_s:g}s is longer than interval "
                                 f"({s.interval_s:g}s); Fulcrum and HAProxy both need "
                                 f"timeout <= interval")
    problem = target_fault_problem(s)
    if problem:
        raise sc.fail(problem[0], problem[1])
    if s.load == "udp_rr" and s.backend_kind != "demo":
        raise lo.fail("kind", "udp_rr needs demo backends (they answer datagrams with "
                              "their name)")
    return s
