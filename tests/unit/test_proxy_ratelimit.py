"""Per-source rate limits (Neutron's [metadata_rate_limiting] semantics)."""

from __future__ import annotations

import asyncio

from mdtool.config import Config
from mdtool.http.client import UpstreamPool
from mdtool.http.types import Request
from mdtool.proxy.handler import ProxyHandler
from mdtool.proxy.ratelimit import RateLimiter, RateLimits


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_base_limit_per_source_and_sliding_recovery():
    clock = Clock()
    rl = RateLimiter(RateLimits(base_window=10, base_limit=3, burst_window=10, burst_limit=100),
                     clock)
    assert [rl.allow("10.0.0.5") for _ in range(4)] == [True, True, True, False]
    assert rl.allow("10.0.0.6")  # another source has its own budget
    clock.now += 10  # next period: the old count weighs in fully at its start...
    assert not rl.allow("10.0.0.5")
    clock.now += 9.9  # ...and almost not at its end
    assert rl.allow("10.0.0.5")
    clock.now += 30  # whole periods later: forgotten
    assert [rl.allow("10.0.0.5") for _ in range(3)] == [True, True, True]


def test_burst_limit_applies_alone():
    clock = Clock()
    rl = RateLimiter(RateLimits(base_window=60, base_limit=100, burst_window=1, burst_limit=2),
                     clock)
    assert [rl.allow("a") for _ in range(3)] == [True, True, False]
    clock.now += 2.5
    assert rl.allow("a")


def test_idle_sources_are_pruned_and_the_table_is_bounded():
    clock = Clock()
    rl = RateLimiter(RateLimits(base_window=1, base_limit=5, burst_window=1, burst_limit=5,
                                max_sources=3), clock)
    for src in "abc":
        rl.allow(src)
    clock.now += 0.5
    rl.allow("a")
    rl.allow("d")  # full: the least recently seen source (b) goes
    assert len(rl) == 3
    clock.now += 5
    rl.prune()
    assert len(rl) == 0


def test_from_config(tmp_path):
    assert RateLimits.from_config(Config(state_dir=str(tmp_path), environ={})) is None
    cfg = Config(state_dir=str(tmp_path), environ={
        "MDTOOL_METADATA_RATE_LIMITING__RATE_LIMIT_ENABLED": "true",
        "MDTOOL_METADATA_RATE_LIMITING__BASE_QUERY_RATE_LIMIT": "7"})
    assert RateLimits.from_config(cfg) == RateLimits(10.0, 7, 10.0, 10)


def test_handler_answers_429_without_asking_the_agent(tmp_path):
    async def main():
        pool = UpstreamPool(f"unix:{tmp_path}/none")
        limiter = RateLimiter(RateLimits(base_limit=1, burst_limit=1))
        h = ProxyHandler(pool, "net", limiter)
        first = await h(Request("GET", "/", [], peer="10.0.0.5"))
        second = await h(Request("GET", "/", [], peer="10.0.0.5"))
        return first.status, second.status, second.body

    assert asyncio.run(main()) == (502, 429, b"Too Many Requests: metadata rate limit exceeded\n")
