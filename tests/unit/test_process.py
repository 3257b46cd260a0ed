"""process.py: a process runs only when its pid file, liveness and exact argv agree."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest

from mdtool import process
from mdtool.errors import OperationFailed


@pytest.fixture
def marker():
    return "mdtool-test-" + uuid.uuid4().hex


def _sleeper(marker):
    # a long sleep whose cmdline carries the marker (as dnsmasq's carries the network id)
    return [sys.executable, "-c", "import time,sys; time.sleep(60)", marker]


def test_read_pid(tmp_path):
    f = tmp_path / "pid"
    assert process.read_pid(f) is None
    f.write_text("")
    assert process.read_pid(f) is None
    f.write_text("garbage\n")
    assert process.read_pid(f) is None
    f.write_text("1234\n")
    assert process.read_pid(f) == 1234


def _manager(tmp_path, marker, argv=None, **kw) -> process.ProcessManager:
    return process.ProcessManager("sleeper", argv or _sleeper(marker), pidfile=tmp_path / "pid",
                                  identity=[marker], logfile=tmp_path / "log", **kw)


def test_stale_pid_file_with_a_recycled_pid_is_not_running(tmp_path, marker):
    # the pid belongs to a live process, but not to the one we mean
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        pm = _manager(tmp_path, marker)
        pm.pidfile.write_text(f"{other.pid}\n")
        assert pm.check().pid is None and pm.check().state == "died"
        assert pm.disable() == []
        assert other.poll() is None, "disable() must not kill a stranger"
        assert not pm.pidfile.exists(), "a stale pid file is removed"
    finally:
        other.kill()
        other.wait()


def test_dead_pid_is_not_running(tmp_path, marker):
    p = subprocess.Popen(["true"])
    p.wait()
    pm = _manager(tmp_path, marker)
    pm.pidfile.write_text(f"{p.pid}\n")
    assert pm.check().state == "died"


def test_zombie_is_not_running(tmp_path, marker):
    argv = [sys.executable, "-c", "pass", marker]
    p = subprocess.Popen(argv)
    try:
        # not waited for: it stays a zombie of ours until check() reaps it
        pm = _manager(tmp_path, marker, argv)
        pm.pidfile.write_text(f"{p.pid}\n")
        import time
        deadline = time.monotonic() + 30
        # Wait for the zombie state itself: an empty cmdline alone also happens mid-exec.
        while time.monotonic() < deadline and process._proc_state(p.pid) != "Z":
            time.sleep(0.01)
        assert process._proc_state(p.pid) == "Z"
        assert pm.check().pid is None
    finally:
        try:
            p.wait(timeout=5)
        except ChildProcessError:
            pass


def test_spawn_check_signal_stop(tmp_path, marker):
    pm = _manager(tmp_path, marker)
    pm.pidfile = tmp_path / "run" / "x.pid"
    done = pm.enable()
    pid = process.read_pid(pm.pidfile)
    try:
        assert done == [f"start sleeper (pid {pid})"]
        assert pm.pid == pid and pm.active
        assert os.getsid(pid) == pid, "started in its own session"
        assert pm.signal(0) is True
        assert pm.disable() == [f"stop sleeper (pid {pid})"]
        assert pm.pid is None
        assert not pm.pidfile.exists()
        assert pm.disable() == []
        assert pm.signal(0) is False
    finally:
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass


def test_stop_escalates_to_sigkill(tmp_path, marker):
    code = "import signal,time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(60)"
    pm = _manager(tmp_path, marker, [sys.executable, "-c", code, marker], ready_marker=b"ready",
                  stop_timeout=0.3)
    pm.enable()
    pid = pm.pid
    assert pm.disable() == [f"stop sleeper (pid {pid})"]
    assert pm.pid is None
    assert not process.pid_matches(pid, [marker])


def test_spawn_missing_program_is_operation_failed(tmp_path):
    with pytest.raises(OperationFailed):
        process.spawn(["/nonexistent/program"], pidfile=tmp_path / "pid")


def test_spawn_in_missing_namespace_is_operation_failed(tmp_path):
    with pytest.raises(OperationFailed, match="does not exist"):
        process.spawn(["true"], pidfile=tmp_path / "pid", netns="mdtool-no-such-ns-" + uuid.uuid4().hex[:6])


def test_run():
    assert process.run(["sh", "-c", "echo hi"]).stdout == "hi\n"
    assert process.run(["sh", "-c", "exit 3"], check=False).returncode == 3
    with pytest.raises(OperationFailed, match="boom"):
        process.run(["sh", "-c", "echo boom >&2; exit 1"])
    with pytest.raises(OperationFailed, match="not found"):
        process.run(["/nonexistent/program"])
