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
