"""process.exited: a starting daemon is judged by its state, not by its (changing) cmdline."""

from __future__ import annotations

import signal
import subprocess
import time

from mdtool import process


def test_running_then_exited_then_reaped():
    p = subprocess.Popen(["sleep", "5"])
    try:
        assert not process.exited(p.pid)
    finally:
        p.send_signal(signal.SIGKILL)
    deadline = time.monotonic() + 5
    while not process.exited(p.pid) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert process.exited(p.pid)  # reaped by exited() itself, no zombie left
    p.returncode = -9


def test_exec_in_progress_is_not_exited():
    # `sh -c 'exec sleep'` changes its cmdline under us, as `ip netns exec dnsmasq` does
    p = subprocess.Popen(["sh", "-c", "exec sleep 5"])
    try:
        for _ in range(50):
            assert not process.exited(p.pid)
    finally:
        p.kill()
        p.wait()
