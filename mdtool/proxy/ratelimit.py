"""Per-source request rate limits, the way Neutron's haproxy stick tables apply them.

``[metadata_rate_limiting]``: a request is counted in a base and a burst window for its
source address, and refused with 429 when either rate is above its limit (refused
requests count too, so a client that keeps hammering stays refused). Rates are measured
like haproxy's ``http_req_rate``: the current period's count plus the previous period's,
weighted by how much of it still lies inside the sliding window.
"""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass(frozen=True)
class RateLimits:
    base_window: float = 10.0
    base_limit: int = 10
    burst_window: float = 10.0
    burst_limit: int = 10
    max_sources: int = 10000  # per network, like Neutron's "size 10k"

    @classmethod
    def from_config(cls, config) -> "RateLimits | None":
        sect = "metadata_rate_limiting"
        if not config.get("rate_limit_enabled", sect):
            return None
        return cls(float(config.get("base_window_duration", sect)),
                   int(config.get("base_query_rate_limit", sect)),
                   float(config.get("burst_window_duration", sect)),
                   int(config.get("burst_query_rate_limit", sect)))


class _Window:
    __slots__ = ("start", "curr", "prev")

    def __init__(self, now: float):
        self.start = now
        self.curr = 0
        self.prev = 0

    def hit(self, now: float, period: float) -> float:
        """Count one request at ``now``; return the rate over the sliding ``period``."""
        elapsed = now - self.start
        if elapsed >= period:
            periods = int(elapsed // period)
            self.prev = self.curr if periods == 1 else 0
            self.curr = 0
            self.start += periods * period
            elapsed = now - self.start
        self.curr += 1
        return self.curr + self.prev * (1.0 - elapsed / period)


class RateLimiter:
    """Decides, per source address, whether one more request may pass."""

    def __init__(self, limits: RateLimits, clock=time.monotonic):
        self.limits = limits
        self.clock = clock
        self._sources: dict[str, tuple[_Window, _Window, list[float]]] = {}
        self._expire = 2 * max(limits.base_window, limits.burst_window)

    def allow(self, source: str) -> bool:
        now = self.clock()
        entry = self._sources.get(source)
        lim = self.limits
        if entry is None:
            if len(self._sources) >= lim.max_sources:
                self.prune(now)
                if len(self._sources) >= lim.max_sources:
                    # Full of active sources: evict the least recently seen.
                    oldest = min(self._sources, key=lambda k: self._sources[k][2][0])
                    del self._sources[oldest]
            entry = (_Window(now), _Window(now), [now])
            self._sources[source] = entry
        base, burst, seen = entry
        seen[0] = now
        base_rate = base.hit(now, lim.base_window)
        burst_rate = burst.hit(now, lim.burst_window)
        return base_rate <= lim.base_limit and burst_rate <= lim.burst_limit

    def prune(self, now: float | None = None) -> None:
        """Forget sources idle for longer than both windows."""
        now = self.clock() if now is None else now
        horizon = now - self._expire
        stale = [k for k, (_, _, seen) in self._sources.items() if seen[0] < horizon]
        for k in stale:
            del self._sources[k]

    def __len__(self) -> int:
        return len(self._sources)
