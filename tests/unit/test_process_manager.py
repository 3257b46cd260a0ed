"""ProcessManager: exact argv, listeners held by the process itself, a lock around starts,
and the sentence that names whoever else holds an address."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid

import pytest

from mdtool import process
from mdtool.errors import OperationFailed
from mdtool.process import Holder, Listener, ProcessManager


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


SERVER = textwrap.dedent("""
    import socket, sys, time
    kind, where = sys.argv[1], sys.argv[2]
    if kind == "tcp":
        s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", int(where)))
    else:
        s = socket.socket(socket.AF_UNIX); s.bind(where)
    s.listen(8)
    print("listening", flush=True)
    time.sleep(120)
""")


@pytest.fixture
def marker():
    return "pm-test-" + uuid.uuid4().hex[:12]


@pytest.fixture
def managers():
    made: list[ProcessManager] = []
    yield made
    for pm in made:
        pm.disable()


def server_manager(tmp_path, marker, kind: str, where: str, managers) -> ProcessManager:
    listener = Listener.tcp("127.0.0.1", int(where)) if kind == "tcp" else Listener.unix(where)
    pm = ProcessManager(f"server {marker}", [sys.executable, "-c", SERVER, kind, where, marker],
                        pidfile=tmp_path / "server.pid", identity=[marker],
                        logfile=tmp_path / "server.log", listeners=[listener], start_timeout=20)
    managers.append(pm)
    return pm


def stranger(kind: str, where: str) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, "-c", SERVER, kind, where], stdout=subprocess.PIPE,
                         text=True)
    assert p.stdout.readline().strip() == "listening"
    return p


def test_held_sentence_names_pid_user_and_command_line():
    h = Holder(4242, 65534, ("python3", "fake.py"))
    assert process.held_sentence(Listener.tcp("127.0.0.1", 8775), h) == \
        "127.0.0.1:8775 is held by pid 4242 (user nobody: python3 fake.py), not by mdtool"
    assert str(Listener.tcp("[::1]", 80, netns="qdhcp-x")) == "[::1]:80 in qdhcp-x"
    assert Holder(1, 0, ("python3", "-c", "a\nb")).describe() == "pid 1 (user root: python3 -c a b)"
    assert "cannot see" in Holder(None, 0).describe()


def test_start_check_stop_tcp(tmp_path, marker, managers):
    pm = server_manager(tmp_path, marker, "tcp", str(free_port()), managers)
    assert pm.check().state == "stopped"
    done = pm.enable()
    assert len(done) == 1 and done[0].startswith(f"start server {marker} (pid ")
    st = pm.check()
    assert st.state == "running" and st.active and pm.pid == st.pid
    assert pm.enable() == []
    assert pm.disable() == [f"stop server {marker} (pid {st.pid})"]
    assert pm.check().state == "stopped" and not pm.pidfile.exists()
    assert pm.disable() == []


def test_a_port_held_by_another_process_is_named_and_never_started(tmp_path, marker, managers):
    port = str(free_port())
    other = stranger("tcp", port)
    try:
        pm = server_manager(tmp_path, marker, "tcp", port, managers)
        st = pm.check()
        assert st.state == "blocked"
        want = f"127.0.0.1:{port} is held by pid {other.pid} (user root: {sys.executable} -c "
        assert st.blocked[0].startswith(want) and st.blocked[0].endswith(", not by mdtool")
        assert process.held_by_other(Listener.tcp("127.0.0.1", int(port))) == st.blocked[0]
        with pytest.raises(OperationFailed, match=f"is held by pid {other.pid}"):
            pm.enable()
        assert not pm.pidfile.exists()
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()


def test_a_unix_socket_deleted_under_its_process_is_deaf_and_restarted(tmp_path, marker, managers):
    path = str(tmp_path / "sock")
    pm = server_manager(tmp_path, marker, "unix", path, managers)
    pm.enable()
    first = pm.check().pid
    os.unlink(path)
    st = pm.check()
    assert st.state == "deaf" and st.missing == (Listener.unix(path),)
    assert pm.plan(st) == [f"restart server {marker}: pid {first} no longer holds {path}"]
    done = pm.enable()
    assert done[0].startswith(f"restart server {marker}: pid {first} no longer holds")
    assert pm.check().active and pm.check().pid != first
    assert process.cmdline(first) is None or not process.pid_matches(first, [marker])


def test_a_unix_socket_rebound_by_a_stranger_is_named(tmp_path, marker, managers):
    path = str(tmp_path / "sock")
    pm = server_manager(tmp_path, marker, "unix", path, managers)
    pm.enable()
    os.unlink(path)
    other = stranger("unix", path)
    try:
        st = pm.check()
        assert st.state == "blocked" and f"{path} is held by pid {other.pid}" in st.blocked[0]
        with pytest.raises(OperationFailed, match=f"held by pid {other.pid}"):
            pm.enable()
    finally:
        other.kill()
        other.wait()


def test_a_pid_file_naming_a_stranger_adopts_ours_and_spares_the_stranger(tmp_path, marker, managers):
    pm = server_manager(tmp_path, marker, "tcp", str(free_port()), managers)
    pm.enable()
    ours = pm.check().pid
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        pm.pidfile.write_text(f"{sleeper.pid}\n")
        st = pm.check()
        assert st.state == "unrecorded" and st.pid == ours and st.recorded == sleeper.pid
        assert pm.enable() == [f"record pid {ours} of server {marker} in {pm.pidfile}: it named "
                               f"pid {sleeper.pid}"]
        assert process.read_pid(pm.pidfile) == ours and pm.check().active
        pm.pidfile.write_text(f"{sleeper.pid}\n")
        assert pm.disable() == [f"stop server {marker} (pid {ours})"]
        assert sleeper.poll() is None, "the stranger was signalled"
    finally:
        sleeper.kill()
        sleeper.wait()


def test_an_older_argv_is_restarted_not_duplicated(tmp_path, marker, managers):
    port = str(free_port())
    old = server_manager(tmp_path, marker, "tcp", port, managers)
    old.enable()
    first = old.check().pid
    new = ProcessManager(old.name, old.argv + ["--new-option"], pidfile=old.pidfile,
                         identity=[marker], logfile=old.logfile, listeners=old.listeners)
    managers.append(new)
    st = new.check()
    assert st.state == "outdated" and st.pid == first
    assert new.enable()[0].startswith(f"restart server {marker}: its command line changed")
    assert new.check().active and new.check().pid != first


def test_concurrent_enables_start_one(tmp_path, marker, managers):
    pm = server_manager(tmp_path, marker, "tcp", str(free_port()), managers)
    results, errors = [], []

    def go():
        try:
            results.append(pm.enable())
        except OperationFailed as e:
            errors.append(e)

    threads = [threading.Thread(target=go) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and sorted(len(r) for r in results) == [0, 0, 0, 1]
    assert len([p for p in os.listdir("/proc") if p.isdigit()
                and marker in (process.cmdline(int(p)) or [])]) == 1


def test_exits_at_start_with_its_last_words(tmp_path, marker):
    pm = ProcessManager("failing", [sys.executable, "-c", "import sys; sys.exit('boom ' + sys.argv[1])",
                                    marker], pidfile=tmp_path / "f.pid", identity=[marker],
                        logfile=tmp_path / "f.log", ready_marker=b"ready")
    with pytest.raises(OperationFailed, match=f"failing exited at start: boom {marker}"):
        pm.enable()
    assert not pm.pidfile.exists()


def test_a_manager_without_argv_only_judges_and_stops(tmp_path, marker, managers):
    pm = server_manager(tmp_path, marker, "tcp", str(free_port()), managers)
    pm.enable()
    judge = ProcessManager("server", None, pidfile=pm.pidfile, identity=[marker])
    assert judge.check().pid == pm.check().pid
    with pytest.raises(OperationFailed, match="command line is unknown"):
        judge.plan(judge.check())
    assert judge.disable() and pm.check().state == "stopped"


def test_a_stray_copy_is_stopped_before_a_start_and_by_disable(tmp_path, marker, managers):
    pm = server_manager(tmp_path, marker, "tcp", str(free_port()), managers)

    def copy() -> subprocess.Popen:
        # a copy of ours (its identity) that no pid file names, e.g. left by a crash
        argv = [sys.executable, "-c", "import time; time.sleep(60)", marker]
        p = subprocess.Popen(argv)
        import time
        deadline = time.monotonic() + 10
        while process.cmdline(p.pid) != argv:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        return p

    strays = [copy(), copy()]
    try:
        assert pm.check().state == "outdated"  # found by identity, never a second start
        done = pm.enable()
        assert done[0].startswith(f"restart server {marker}: its command line changed")
        assert any(d.startswith(f"stop a stray server {marker} (pid ") for d in done), done
        assert all(p.wait(5) is not None for p in strays)
        assert pm.check().active
        strays.append(copy())
        assert f"stop a stray server {marker} (pid {strays[-1].pid})" in pm.disable()
        assert strays[-1].wait(5) is not None
    finally:
        for p in strays:
            p.kill()
            p.wait()


def test_looking_for_a_lost_process_judges_only_candidates(tmp_path, monkeypatch):
    """With no pid file, check() scans /proc: only processes whose argv holds the identity
    are judged (two more reads each), not every process on a node of 1,000 dnsmasq."""
    marker = f"--mdtool-test-{uuid.uuid4().hex}"
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", marker])
    try:
        for _ in range(500):  # its cmdline reads empty until the exec is through
            if marker in (process.cmdline(proc.pid) or []):
                break
            time.sleep(0.01)
        pm = ProcessManager("sleeper", [sys.executable, "-c", "pass", marker, "--other"],
                            pidfile=tmp_path / "pid", identity=[marker])
        judged = []
        real = ProcessManager._judge
        monkeypatch.setattr(ProcessManager, "_judge",
                            lambda self, pid: judged.append(pid) or real(self, pid))
        st = pm.check()
        assert st.pid == proc.pid and not st.current  # found: an older argv of ours
        assert set(judged) == {proc.pid}, judged
    finally:
        proc.kill()
        proc.wait()


def test_a_process_s_descriptors_are_listed_once_while_it_holds_its_sockets(monkeypatch):
    """The proxy holds a listening socket per network: whether it holds one network's
    must not list its 1,000+ descriptors every time (once per network in enable --all).
    A socket not known to be held is looked up afresh, so a stranger is still named."""
    port, other = free_port(), free_port()
    ours, theirs = stranger("tcp", str(port)), stranger("tcp", str(other))
    listed = []
    real = process.socket_inodes
    monkeypatch.setattr(process, "socket_inodes", lambda pid: listed.append(pid) or real(pid))
    try:
        for _ in range(5):
            assert process.listener_holders(Listener.tcp("127.0.0.1", port), ours.pid) == (True, [])
        assert listed == [ours.pid]
        held, others = process.listener_holders(Listener.tcp("127.0.0.1", other), ours.pid)
        assert not held and [h.pid for h in others] == [theirs.pid]
        assert listed == [ours.pid, ours.pid]  # not known to be held: read again
    finally:
        for p in (ours, theirs):
            p.kill()
            p.wait()


# What dnsmasq does with --pid-file: unlink the old file, then create it exclusively, and
# only then say it started. The pause between the two is what a loaded machine stretches.
OWN_PIDFILE = textwrap.dedent("""
    import os, sys, time
    pidfile = sys.argv[1]
    try:
        os.unlink(pidfile)
    except FileNotFoundError:
        pass
    time.sleep(0.5)
    try:
        fd = os.open(pidfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        print("failed to open pidfile: File exists", flush=True)
        sys.exit(3)
    os.write(fd, f"{os.getpid()}\\n".encode()); os.close(fd)
    print("started, version test", flush=True)
    time.sleep(120)
""")


def test_a_program_that_writes_its_own_pid_file_is_never_raced(tmp_path, marker, managers,
                                                                monkeypatch):
    # A loaded machine: mdtool gets the CPU back only after the program unlinked its file.
    write = process.write_atomic

    def late_write(*args, **kwargs):
        time.sleep(0.25)
        return write(*args, **kwargs)

    monkeypatch.setattr(process, "write_atomic", late_write)
    pidfile = tmp_path / "own.pid"
    pidfile.write_text("999999\n")  # left by a dnsmasq that was killed
    pm = ProcessManager(f"own {marker}", [sys.executable, "-c", OWN_PIDFILE, str(pidfile), marker],
                        pidfile=pidfile, identity=[marker], logfile=tmp_path / "own.log",
                        ready_marker=b"started, version", start_timeout=20, writes_pidfile=True)
    managers.append(pm)
    done = pm.enable()
    pid = process.read_pid(pidfile)
    assert done and f"(pid {pid})" in done[0], done
    assert pm.check().state == "running" and pm.pid == pid


def _sleeper(*argv: str) -> subprocess.Popen:
    """A sleeping process whose argv carries ``argv``, returned once its exec is through."""
    full = [sys.executable, "-c", "import time; time.sleep(60)", *argv]
    proc = subprocess.Popen(full)
    for _ in range(500):
        if process.cmdline(proc.pid) == full:
            return proc
        time.sleep(0.01)
    proc.kill()
    raise AssertionError("the sleeper did not exec")


def test_inside_one_scan_proc_is_listed_once_and_answers_like_a_scan(tmp_path, monkeypatch):
    """A batch lists /proc once; each manager then finds its marked processes in that
    listing, the same ones a scan of its own finds."""
    marker = f"--mdtool-test-{uuid.uuid4().hex}"
    procs = [_sleeper(marker, "--one"), _sleeper(marker, "--two"), _sleeper("--other-" + marker)]
    try:
        pm = ProcessManager("sleeper", [sys.executable, "-c", "pass", marker],
                            pidfile=tmp_path / "pid", identity=[marker])
        alone = sorted(pm._marked())
        listed = []
        real = process._list_processes
        monkeypatch.setattr(process, "_list_processes", lambda: listed.append(1) or real())
        with process.one_scan():
            for _ in range(3):
                assert sorted(pm._marked()) == alone
                assert sorted(pm._strays(None)) == [procs[0].pid, procs[1].pid]
            with process.one_scan():  # nested: the same listing
                assert sorted(pm._marked()) == alone
        assert len(listed) == 1
        assert [p for p, _ in alone] == sorted([procs[0].pid, procs[1].pid])
    finally:
        for p in procs:
            p.kill()
            p.wait()


def test_one_scan_never_takes_a_process_that_ended_since_and_sees_what_it_started(
        tmp_path, marker, managers):
    gone = _sleeper(marker, "--gone")
    with process.one_scan():
        gone.kill()
        gone.wait()
        pm = server_manager(tmp_path, marker, "tcp", str(free_port()), managers)
        assert pm._strays(None) == []      # listed, but judged by its live /proc entry
        assert pm.check().state == "stopped"
        pm.enable()                        # started inside the batch: in its listing
        pid = pm.check().pid
        pm.pidfile.unlink()                # found without its pid file, in the listing
        st = pm.check()
        assert st.pid == pid and st.current and st.state == "unrecorded"
        assert pm.enable() == [f"record pid {pid} of server {marker} in {pm.pidfile}: it named "
                               "nothing"]
