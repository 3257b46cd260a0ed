"""node run's pure parts: the restart backoff and the node lock."""

import os
import subprocess
import sys
import time

from mdtool.node import BACKOFF_FREE, BACKOFF_MAX, Backoff


def test_backoff_is_free_for_a_few_restarts_then_doubles_up_to_a_ceiling():
    b = Backoff()
    delays = [b.record(100.0 + i) for i in range(BACKOFF_FREE + 8)]
    assert delays[:BACKOFF_FREE] == [0.0] * BACKOFF_FREE
    assert delays[BACKOFF_FREE:BACKOFF_FREE + 4] == [1.0, 2.0, 4.0, 8.0]
    assert max(delays) == BACKOFF_MAX
    assert b.not_before == 100.0 + BACKOFF_FREE + 7 + BACKOFF_MAX
    assert b.record(10_000.0) == 0.0  # a process that stayed up a while starts fresh


def test_node_lock_makes_a_second_holder_wait(tmp_path):
    from mdtool.files import locked
    lock = tmp_path / "node.lock"
    code = ("import sys, time; from mdtool.files import locked\n"
            f"with locked({str(lock)!r}):\n    print('in', flush=True); time.sleep(30)\n")
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline() == b"in\n"
        t0 = time.monotonic()
        import threading
        threading.Timer(0.3, holder.kill).start()
        with locked(lock):  # waits until the holder dies: the kernel drops its lock
            waited = time.monotonic() - t0
        assert waited >= 0.25
        assert os.stat(lock).st_mode & 0o777 == 0o600
    finally:
        holder.kill()
        holder.wait()
