"""SIGHUP makes the proxy reconcile at once (enable sends it after a namespace comes up)."""

from __future__ import annotations

import asyncio
import os
import signal

from mdtool import process
from mdtool.http.client import UpstreamPool
from mdtool.http.server import Limits
from mdtool.proxy.daemon import ProxyDaemon


def _loopback_listener(family, host, port, **kw):
    """switch.make_listener's stand-in: the host's loopback stands in for each namespace."""
    import socket
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    s.listen(8)
    s.setblocking(False)
    return s


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

    monkeypatch.setattr(switch, "run_in_each_netns", each)
    monkeypatch.setattr(switch, "netns_inode", lambda name: 1)
    monkeypatch.setattr(switch, "make_listener", _loopback_listener)
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
    import time

    from mdtool.netns import switch
    netns_dir = tmp_path / "netns"
    netns_dir.mkdir()
    for n in "abc":
        (netns_dir / f"qdhcp-{n}").touch()
    stats: list[str] = []

    monkeypatch.setattr(switch, "NETNS_DIR", str(netns_dir))
    monkeypatch.setattr(switch, "netns_inode", lambda name: stats.append(name) or 1)
    monkeypatch.setattr(switch, "run_in_each_netns", lambda calls: [(fn(), None) for _, fn in calls])
    monkeypatch.setattr(switch, "make_listener", _loopback_listener)
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


def _v4_only_daemon(tmp_path, monkeypatch, ids, visits, has_v6=lambda name: False):
    """A daemon over ``ids`` whose namespaces are the host's loopback: IPv4 always binds,
    fe80::a9fe:a9fe exists where ``has_v6(namespace)``; every visit is logged in ``visits``."""

    from mdtool.netns import switch
    current: list[str] = []

    def each(calls):
        out = []
        for name, fn in calls:
            visits.append(name)
            current[:] = [name]
            out.append((fn(), None))
        return out

    monkeypatch.setattr(switch, "run_in_each_netns", each)
    monkeypatch.setattr(switch, "netns_inode", lambda name: 1)
    monkeypatch.setattr(switch, "make_listener", _loopback_listener)
    monkeypatch.setattr(switch, "ipv6_address_ifname",
                        lambda address: "tap0" if has_v6(current[0]) else None)
    return ProxyDaemon(UpstreamPool("unix:" + str(tmp_path / "none")), Limits(), ids)


def test_the_periodic_look_for_ipv6_backs_off_to_a_minute(tmp_path, monkeypatch):
    """Idle at 1,000 networks, looking for fe80::a9fe:a9fe in every namespace every 5 s
    was most of the proxy's CPU. A namespace that never has it is looked at 5, 10, 20,
    40 s after the previous look, then every 60 s: 7 looks in 4 minutes, not 48."""
    visits: list[str] = []
    daemon = _v4_only_daemon(tmp_path, monkeypatch, ["a", "b"], visits)

    async def main():
        try:
            await daemon.reconcile()  # serves IPv4, looks once
            sites = list(daemon.sites.values())
            start = asyncio.get_running_loop().time()
            for second in range(1, 241):  # a round a second for 4 minutes
                await daemon._tend(sites, start + second)
        finally:
            await daemon.close()

    asyncio.run(main())
    assert visits.count("qdhcp-a") == visits.count("qdhcp-b") == 1 + 6  # 5 15 35 75 135 195


def test_sigusr1_looks_for_ipv6_in_every_namespace_lacking_it_at_once(tmp_path, monkeypatch):
    """enable adds fe80::a9fe:a9fe to a served network's tap, then sends SIGUSR1: the
    proxy serves it in the next round, not on its backed-off periodic look."""
    visits: list[str] = []
    v6 = {"qdhcp-b"}
    daemon = _v4_only_daemon(tmp_path, monkeypatch, ["a", "b"], visits, lambda ns: ns in v6)
    v6.clear()  # b gets its address only later
    rounds: list[int] = []

    async def main():
        real = daemon.reconcile

        async def reconcile():
            await real()
            rounds.append(len(visits))

        daemon.reconcile = reconcile
        stop = asyncio.Event()
        task = asyncio.create_task(daemon.serve(stop))
        while not rounds:
            await asyncio.sleep(0.01)
        assert daemon.sites["b"].v6_key is None and process.catches(os.getpid(), signal.SIGUSR1)
        await daemon.reconcile()  # a plain wake (SIGHUP's round): the look is not due
        assert len(visits) == 2
        v6.add("qdhcp-b")
        os.kill(os.getpid(), signal.SIGUSR1)
        for _ in range(200):
            if daemon.sites["b"].v6_key is not None:
                break
            await asyncio.sleep(0.01)
        assert daemon.sites["b"].v6_ifname == "tap0" and daemon.sites["a"].v6_key is None
        assert len(visits) == 4  # one look into each namespace lacking IPv6
        stop.set()
        await asyncio.wait_for(task, 5)

    previous = signal.getsignal(signal.SIGUSR1)
    asyncio.run(main())
    assert signal.getsignal(signal.SIGUSR1) == previous


def test_adding_the_metadata_ipv6_address_wakes_the_proxy_to_look(monkeypatch, tmp_path):
    """The one place mdtool adds fe80::a9fe:a9fe (the DHCP port's plan) wakes the proxy
    with SIGUSR1 once the address is there; other addresses do not."""
    from mdtool import daemons
    from mdtool.config import Config
    from mdtool.netns import actions as netns_actions, dhcp_port
    from mdtool.netns.actions import Action as NetnsAction
    from mdtool.pipeline import Node

    events: list[str] = []
    v6 = NetnsAction("add fe80::a9fe:a9fe/128 to tap0 (nodad)", "add_address",
                     {"ifname": "tap0", "cidr": dhcp_port.METADATA_V6, "netns": "ns", "nodad": True})
    v4 = NetnsAction("add 10.0.0.2/24 to tap0", "add_address",
                     {"ifname": "tap0", "cidr": "10.0.0.2/24", "netns": "ns", "nodad": False})
    monkeypatch.setattr(dhcp_port, "up", lambda nl, net, port, dry_run: [v4, v6])
    monkeypatch.setattr(netns_actions, "apply", lambda nl, acts: events.extend(a.op for a in acts))
    monkeypatch.setattr(daemons, "wake_proxy",
                        lambda config, ipv6=False: events.append(f"wake ipv6={ipv6}"))
    node = Node(Config(state_dir=str(tmp_path), environ={}), None, None)
    planned = node.plan_netns_up(None, None)
    planned[0].do()
    assert events == ["add_address"]
    planned[1].do()
    assert events == ["add_address", "add_address", "wake ipv6=True"]
