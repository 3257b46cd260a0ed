"""SIGHUP makes the proxy reconcile at once (enable sends it after a namespace comes up)."""

from __future__ import annotations

import asyncio
import os
import signal

from mdtool import process
from mdtool.http.client import UpstreamPool
from mdtool.http.server import Limits
from mdtool.proxy.daemon import ProxyDaemon


def test_sighup_reconciles_before_the_next_poll(tmp_path):
    rounds: list[float] = []

    async def main():
        daemon = ProxyDaemon(UpstreamPool("unix:" + str(tmp_path / "none")), Limits(), [],
                             poll_interval=30.0)
        loop = asyncio.get_running_loop()

        async def reconcile():
            rounds.append(loop.time())

        daemon.reconcile = reconcile
        stop = asyncio.Event()
        task = asyncio.create_task(daemon.serve(stop))
        while not rounds:
            await asyncio.sleep(0.01)
        assert process.catches(os.getpid(), signal.SIGHUP)
        os.kill(os.getpid(), signal.SIGHUP)
        for _ in range(200):
            if len(rounds) >= 2:
                break
            await asyncio.sleep(0.01)
        stop.set()
        await asyncio.wait_for(task, 5)

    previous = signal.getsignal(signal.SIGHUP)
    asyncio.run(main())
    assert len(rounds) >= 2 and rounds[1] - rounds[0] < 2.0
    assert signal.getsignal(signal.SIGHUP) == previous or not process.catches(os.getpid(), signal.SIGHUP)


def test_catches_reads_sigcgt():
    previous = signal.signal(signal.SIGUSR2, lambda *a: None)
    try:
        assert process.catches(os.getpid(), signal.SIGUSR2)
    finally:
        signal.signal(signal.SIGUSR2, previous)
    assert not process.catches(os.getpid(), signal.SIGUSR2)
    assert not process.catches(2 ** 22 + 12345, signal.SIGHUP)  # no such process


def test_wakes_do_not_multiply_the_looks_into_namespaces(tmp_path, monkeypatch):
    """enable wakes the proxy once per network: at 1,000 networks, a look for IPv6 into
    every namespace every fifth round was ~200,000 setns calls during one enable --all.
    Looks are due by time; the due ones share one thread."""
    import socket

    from mdtool.netns import switch
    visits: list[str] = []
    threads: list[int] = []

    def each(calls):
        threads.append(len(calls))
        out = []
        for name, fn in calls:
            visits.append(name)
            out.append((fn(), None))
        return out

    def listener(family, host, port, **kw):  # the host's loopback stands in for each namespace
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        s.setblocking(False)
        return s
    monkeypatch.setattr(switch, "run_in_each_netns", each)
    monkeypatch.setattr(switch, "netns_inode", lambda name: 1)
    monkeypatch.setattr(switch, "make_listener", listener)
    monkeypatch.setattr(switch, "ipv6_address_ifname", lambda address: None)

    async def main():
        daemon = ProxyDaemon(UpstreamPool("unix:" + str(tmp_path / "none")), Limits(),
                             ["a", "b", "c"])
        try:
            for _ in range(50):  # 50 wakes in a row
                await daemon.reconcile()
            assert sorted(visits) == ["qdhcp-a", "qdhcp-b", "qdhcp-c"] and threads == [3]
            assert all(s.v4_key is not None for s in daemon.sites.values())
            for site in daemon.sites.values():  # time passes: every look is due
                site.v6_due = 0.0
            await daemon.reconcile()
            assert len(visits) == 6 and threads == [3, 3]
        finally:
            await daemon.close()

    asyncio.run(main())


def test_a_settled_round_looks_at_no_namespace_until_one_comes_or_goes(tmp_path, monkeypatch):
    """Idle at 1,000 networks, a round stat'ed every namespace every second. Once every
    network is served and neither /run/netns nor the served dir changed for a second,
    a round looks at none; a change there brings the full round back."""
    import socket
    import time

    from mdtool.netns import switch
    netns_dir = tmp_path / "netns"
    netns_dir.mkdir()
    for n in "abc":
        (netns_dir / f"qdhcp-{n}").touch()
    stats: list[str] = []

    def listener(family, host, port, **kw):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        s.setblocking(False)
        return s
    monkeypatch.setattr(switch, "NETNS_DIR", str(netns_dir))
    monkeypatch.setattr(switch, "netns_inode", lambda name: stats.append(name) or 1)
    monkeypatch.setattr(switch, "run_in_each_netns", lambda calls: [(fn(), None) for _, fn in calls])
    monkeypatch.setattr(switch, "make_listener", listener)
    monkeypatch.setattr(switch, "ipv6_address_ifname", lambda address: None)

    def age(seconds: float) -> None:
        t = time.time() - seconds
        os.utime(netns_dir, (t, t))

    async def main():
        daemon = ProxyDaemon(UpstreamPool("unix:" + str(tmp_path / "none")), Limits(),
                             ["a", "b", "c"])
        try:
            age(0)
            await daemon.reconcile()  # serves all three
            await daemon.reconcile()  # changed less than a second ago: a full round
            assert len(stats) == 6 and all(s.v4_key is not None for s in daemon.sites.values())
            age(10)
            await daemon.reconcile()  # a full round that records the settled state
            n = len(stats)
            for _ in range(20):
                await daemon.reconcile()
            assert len(stats) == n  # settled: no namespace looked at
            (netns_dir / "qdhcp-c").unlink()  # a namespace goes: looked at again
            await daemon.reconcile()
            assert len(stats) > n
        finally:
            await daemon.close()

    asyncio.run(main())


def test_ipv6_address_ifname_agrees_with_the_parsed_table():
    from mdtool.netns import switch
    table = switch.local_ipv6_addresses()
    for ifname, address, _ in table:
        assert switch.ipv6_address_ifname(address) == next(i for i, a, _ in table if a == address)
    assert switch.ipv6_address_ifname("fe80::a9fe:a9fe") in {i for i, a, _ in table
                                                             if a == "fe80::a9fe:a9fe"} | {None}
    assert switch.ipv6_address_ifname("2001:db8::77:1") is None
