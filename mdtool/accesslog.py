"""The three daemons' access lines, read back: parse, filter by network or instance, merge
in time order (``mdtool logs``), so an operator needs no grep over three files.

Each daemon logs one line a request (see mdtool/logs.py for the line format):
  proxy     ``network=<id> src=<ip> GET /path 200 1.2ms``, and for repeated 4xx of one source
            ``network=<id> src=<ip>: 17,430 more 429 in 10 s`` (the agent: ``source=``)
  agent     ``network=<id> source=<ip> instance=<id> GET /path status=200 ms=1.2``
  metadata  ``instance=<id> GET /path status=200 ms=1.2``
Only lines of that shape count; start-up and other messages are left out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

ROLES = ("proxy", "agent", "metadata")
_LINE = re.compile(r"^(?P<ts>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) (?P<level>[A-Z]+) "
                   r"mdtool\.(?P<role>proxy|agent|metadata)[\w.]*: (?P<msg>.*)$")
_METHOD = re.compile(r"^[A-Z]{3,10}$")
# The proxy's summary of repeated 4xx lines (mdtool.proxy.handler.flush_repeats).
_SUMMARY = re.compile(r"^(?:network=(?P<network>\S+) (?:src|source)=(?P<src>\S+)|"
                      r"instance=(?P<instance>\S+)): [\d,]+ more \d{3} in \d+ s$")


@dataclass(frozen=True)
class Access:
    """One request as one daemon saw it."""

    ts: str
    role: str
    message: str
    fields: dict[str, str] = field(default_factory=dict, compare=False)

    @property
    def network(self) -> str | None:
        return self.fields.get("network")

    @property
    def instance(self) -> str | None:
        inst = self.fields.get("instance")
        return inst if inst not in (None, "-") else None

    @property
    def probe(self) -> bool:
        """Sent by ``mdtool inspect`` (its User-Agent), not by an instance."""
        return "probe" in self.fields

    @property
    def source(self) -> str | None:
        return self.fields.get("src") or self.fields.get("source")

    def line(self) -> str:
        return f"{self.ts} {self.role:<8} {self.message}"


def parse(line: str) -> Access | None:
    """An access line of one of the daemons, or None for anything else."""
    m = _LINE.match(line.rstrip("\n"))
    if not m:
        return None
    summary = _SUMMARY.match(m["msg"])
    if summary:
        return Access(m["ts"], m["role"], m["msg"],
                      {k: v for k, v in summary.groupdict().items() if v is not None})
    tokens = m["msg"].split(" ")
    fields = dict(t.split("=", 1) for t in tokens if "=" in t and not t.startswith("/"))
    if not any(_METHOD.match(t) for t in tokens) or not ("network" in fields or "instance" in fields):
        return None
    return Access(m["ts"], m["role"], m["msg"], fields)


@dataclass(frozen=True)
class Scope:
    """What to keep: a network's lines, or an instance's (all empty: everything).

    ``addresses`` are (network id, fixed IP) pairs of the instance's ports, for proxy lines,
    which carry only the network and the source address."""

    network_ids: frozenset[str] = frozenset()
    instance_ids: frozenset[str] = frozenset()
    addresses: frozenset[tuple[str, str]] = frozenset()

    def keeps(self, a: Access) -> bool:
        if not (self.network_ids or self.instance_ids):
            return True
        if a.instance is not None and a.instance in self.instance_ids:
            return True
        if a.network is not None and a.network in self.network_ids:
            return True
        return a.network is not None and (a.network, _plain_ip(a.source)) in self.addresses


def _plain_ip(ip: str | None) -> str:
    return (ip or "").removeprefix("::ffff:").split("%")[0]


def log_paths(config) -> list[Path]:
    """Where each daemon writes (log_file, log_dir, or the background mode's state-dir file),
    newest rotation last so the merge sees old lines first."""
    from mdtool import daemons, logs
    seen: list[Path] = []
    for role in ROLES:
        path = logs.destination(config, role) or daemons.logfile(config, role)
        for p in (path.with_name(path.name + ".1"), path):
            if p not in seen:
                seen.append(p)
    return seen


def read(paths: Iterable[Path]) -> Iterator[Access]:
    """Every access line of the files (a missing file is no lines)."""
    for p in paths:
        try:
            with open(p, encoding="utf-8", errors="replace") as f:
                for line in f:
                    a = parse(line)
                    if a is not None:
                        yield a
        except FileNotFoundError:
            continue


def merged(paths: Iterable[Path], scope: Scope) -> list[Access]:
    """The kept lines of all files, oldest first (a stable sort: one daemon's order stays)."""
    return sorted((a for a in read(paths) if scope.keeps(a)), key=lambda a: a.ts)
