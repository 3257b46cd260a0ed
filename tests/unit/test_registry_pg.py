"""The registry on a real PostgreSQL: driver, NOTIFY on commit, the agent's change feed.

Each test gets a fresh database (tests/conftest.py ``pg_url``) and is skipped without a
server. The figures (notification latency, idle query rate) are printed: ``pytest -s``.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

import pytest

from mdtool.agent.handler import IndexFollower
from mdtool.errors import BadInput
from mdtool.registry import Registry, notify

WRITER = """
import sys, time
from mdtool.registry import Registry
reg = Registry(sys.argv[1])
reg.revision()  # connected: the time below is the write's, not the start-up's
start = time.time()
reg.create_port("n", device_id=sys.argv[2], fixed_ips=[{"ip_address": sys.argv[3]}])
print(start, time.time(), flush=True)
"""
# Latency = (seen by the reader) - (write started): an upper bound, the write included
# (create_port: the write transaction, then reading the port back). The commit lies
# between the two times the writer prints.


def _world(url: str):
    reg = Registry(url)
    net = reg.create_network("n")
    reg.create_subnet("n", "10.0.0.0/24", no_gateway=True)
    inst = reg.create_instance("vm1")
    return reg, net, inst


def _count_statements(reg: Registry) -> list[str]:
    seen: list[str] = []
    reg.engine.listeners.append(seen.append)
    return seen


@pytest.mark.parametrize("scheme", ["postgresql", "postgres", "postgresql+psycopg2"])
def test_postgresql_urls_use_psycopg2(pg_url, scheme):
    url = scheme + pg_url[pg_url.index(":"):]
    reg = Registry(url)
    assert reg.engine.dialect == "postgresql"
    assert reg.changes().kind == "listen"
    reg.create_network("n")
    assert [n.name for n in reg.list_networks()] == ["n"]
    reg.engine.dispose()


def test_sqlite_feed_polls(tmp_path):
    feed = Registry(f"sqlite:///{tmp_path}/r.db").changes()
    assert feed.kind == "poll" and feed.interval == notify.SQLITE_POLL


def test_notify_on_commit_only(pg_url):
    reg = Registry(pg_url)
    listener = Registry(pg_url).changes()
    assert listener.wait_blocking(0.05) is False  # connects, nothing pending
    reg.create_network("n")
    assert listener.wait_blocking(2.0) is True
    assert listener.last_payload == str(reg.revision())
    with pytest.raises(BadInput):  # refused inside the write transaction: rolled back
        reg.create_subnet("n", "10.0.0.1/24")
    assert listener.wait_blocking(0.3) is False
    listener.close()


def test_concurrent_first_start_on_an_empty_database(pg_url):
    """Several processes opening a fresh database at once: one creates the schema."""
    code = "import sys; from mdtool.registry import Registry; Registry(sys.argv[1]).revision()"
    procs = [subprocess.Popen([sys.executable, "-c", code, pg_url], stderr=subprocess.PIPE,
                              text=True) for _ in range(6)]
    errors = [p.communicate(timeout=60)[1] for p in procs]
    assert all(p.returncode == 0 for p in procs), errors
    assert Registry(pg_url).revision() == 1


def test_change_from_another_process_reaches_the_agent_index_within_a_second(pg_url):
    reg, net, inst = _world(pg_url)
    follower = IndexFollower(reg)
    latencies, writes = [], []

    async def scenario():
        stop = asyncio.Event()
        task = asyncio.create_task(follower.run(stop))
        loop = asyncio.get_running_loop()
        while follower.current.revision != reg.revision() or follower.feed is None \
                or follower.feed.conn is None:
            await asyncio.sleep(0.01)
        for i in range(3):
            ip = f"10.0.0.{50 + i}"
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-c", WRITER, pg_url, inst.id, ip, stdout=asyncio.subprocess.PIPE)
            deadline = loop.time() + 30
            while not follower().lookup(net.id, ip) and loop.time() < deadline:
                await asyncio.sleep(0.002)
            seen = time.time()
            started, ended = map(float, (await proc.stdout.read()).split())
            assert await proc.wait() == 0
            writes.append(ended - started)
            assert follower().lookup(net.id, ip)[0].instance_id == inst.id
            latencies.append(seen - started)
        stop.set()
        await task

    asyncio.run(scenario())
    follower.close()
    print(f"\nwrite start -> agent index (upper bound): {', '.join(f'{x * 1000:.1f} ms' for x in latencies)}"
          f" (create_port itself took {', '.join(f'{x * 1000:.1f} ms' for x in writes)})")
    # The fallback poll is 5 s: well under a second means the notification did it.
    assert max(latencies) < 1.0, latencies


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_idle_agent_reads_the_registry_rarely(request, tmp_path, backend):
    url = (f"sqlite:///{tmp_path}/r.db" if backend == "sqlite"
           else request.getfixturevalue("pg_url"))
    reg, _net, _inst = _world(url)
    follower = IndexFollower(reg)
    statements = _count_statements(reg)
    idle = 6.0

    async def scenario():
        stop = asyncio.Event()
        task = asyncio.create_task(follower.run(stop))
        await asyncio.sleep(0.5)  # start-up: the first build and the LISTEN connection
        statements.clear()
        await asyncio.sleep(idle)
        n = len(statements)
        stop.set()
        await task
        return n

    n = asyncio.run(scenario())
    follower.close()
    rate = n / idle
    print(f"\n{backend}: idle agent: {n} registry statements in {idle:.0f} s = {rate:.2f}/s")
    if backend == "postgresql":
        # One revision read (2 statements: SET TRANSACTION, SELECT) per 5 s fallback poll.
        assert rate < 1.0, statements
    else:
        assert rate < 20


def test_metadata_service_drops_its_cache_on_notify(pg_url):
    """The metadata daemon's poller sleeps on the same feed: a change made by another
    process invalidates its cached documents well before the 5 s fallback."""
    from mdtool.metadata import daemon as mdaemon
    from mdtool.metadata.service import MetadataService

    reg, _net, inst = _world(pg_url)
    service = MetadataService(reg, "s3cret", follow_source=False)
    feed = reg.changes()

    async def scenario():
        stop = asyncio.Event()
        await service.refresh()
        task = asyncio.create_task(mdaemon.follow_revisions(service, stop, feed))
        while feed.conn is None:
            await asyncio.sleep(0.01)
        before = service.revision
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", WRITER, pg_url, inst.id, "10.0.0.60", stdout=asyncio.subprocess.PIPE)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while service.revision == before and loop.time() < deadline:
            await asyncio.sleep(0.002)
        seen = time.time()
        started, _ended = map(float, (await proc.stdout.read()).split())
        await proc.wait()
        stop.set()
        await task
        return seen - started

    latency = asyncio.run(scenario())
    service.close()
    feed.close()
    print(f"\nwrite start -> metadata cache dropped (upper bound): {latency * 1000:.1f} ms")
    assert latency < 1.0
