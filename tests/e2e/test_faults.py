"""Faults: SIGKILL of every daemon under load, SQLite killed during a write storm, and a
full or read-only state dir.

- Each of dnsmasq, proxy, agent and metadata is SIGKILLed while an instance asks for its
  metadata in a bounded loop; ``enable-isolated-metadata`` brings the missing piece back,
  the instance gets 200 again, the registry is byte for byte what it was, the lease of
  the instance is still in dnsmasq's lease file and a DHCP renewal gets the same address.
- Writer processes create networks and print each id once its transaction committed; they
  are SIGKILLed mid-storm; the database passes ``PRAGMA integrity_check`` and holds every
  printed id.
- A small tmpfs as state dir, filled up, then remounted read-only: ``dnsmasq render`` and
  ``port-create`` fail with one line (exit 1 or 2), and the files rendered before are
  intact, with no temp file left behind.

Short versions run by default; ``-m long`` repeats the faults.
"""

from __future__ import annotations

import errno
import json
import os
import random
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
from contextlib import closing
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from mdtool.netns import switch
from tests.e2e.conftest import http
from tests.e2e.helpers import _is_zombie, wait_for

ROOT = Path(__file__).resolve().parents[2]
COUNTS: dict[str, int] = {}
root_only = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
needs_pipeline = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("dnsmasq") is None or shutil.which("udhcpc") is None,
    reason="needs root, dnsmasq and udhcpc")


def _count(key: str, n: int = 1) -> None:
    COUNTS[key] = COUNTS.get(key, 0) + n


@pytest.fixture(scope="module", autouse=True)
def report_counts():
    yield
    if COUNTS:
        print(f"\nfaults: {COUNTS}")


def dump(db: Path) -> dict[str, list]:
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")]
        return {t: sorted(conn.execute(f'SELECT * FROM "{t}"').fetchall(), key=repr)
                for t in tables}


def integrity(db: Path) -> str:
    with closing(sqlite3.connect(db)) as conn:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]


def dead(pid: int) -> bool:
    return not os.path.exists(f"/proc/{pid}") or _is_zombie(pid)


# SIGKILL of every daemon under load ---------------------------------------------------

@dataclass
class Load:
    """An instance asking for its metadata every 20 ms (1 s timeout) until stopped."""

    ns: str
    results: list[tuple[float, int]] = field(default_factory=list)  # (time, status or 0)
    stop: threading.Event = field(default_factory=threading.Event)

    def _one(self) -> int:
        (s,) = switch.run_in_netns(self.ns, lambda: [socket.socket()])
        try:
            s.settimeout(1.0)
            s.connect(("169.254.169.254", 80))
            s.sendall(b"GET /openstack/latest/meta_data.json HTTP/1.1\r\n"
                      b"Host: 169.254.169.254\r\nConnection: close\r\n\r\n")
            data = b""
            while len(data) < 12:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
            return int(data[9:12]) if data.startswith(b"HTTP/1.1 ") else 0
        except OSError:
            return 0
        finally:
            s.close()

    def run(self) -> None:
        deadline = time.monotonic() + 900
        while not self.stop.is_set() and time.monotonic() < deadline:
            self.results.append((time.monotonic(), self._one()))
            self.stop.wait(0.02)

    def ok_since(self, t: float) -> bool:
        return any(ts >= t and code == 200 for ts, code in self.results)

    def __enter__(self):
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(5)


def leases(path: Path) -> dict[str, str]:
    """mac -> ip of dnsmasq's lease file."""
    out = {}
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) >= 3:
            out[parts[1].lower()] = parts[2]
    return out


def logs_of(site) -> dict[str, str]:
    """The last lines of every daemon log, for a failure message."""
    out = {}
    for p in sorted((site.state_dir / "log").glob("*.log")):
        out[p.name] = "\n".join(p.read_text(errors="replace").splitlines()[-5:])
    return out


def switch_addr(ns: str) -> str | None:
    """The instance's IPv4 address on eth0."""
    out = subprocess.run(["ip", "netns", "exec", ns, "ip", "-4", "-o", "addr", "show", "dev",
                          "eth0"], capture_output=True, text=True).stdout.split()
    return out[out.index("inet") + 1].split("/")[0] if "inet" in out else None


def kill_daemons_under_load(site, rounds: int) -> None:
    net = site.network("fault-net", "10.85.0.0/24")
    site.mdtool("enable-isolated-metadata", net)
    vm = site.instance("vm-fault", net)
    site.mdtool("dnsmasq", "reload", net)
    site.boot(vm)
    db = site.state_dir / "mdtool.db"
    lease_file = site.state_dir / "dhcp" / net / "leases"
    wait_for(lambda: vm.mac in leases(lease_file), 10, "the instance's lease")
    registry = dump(db)
    pids = {
        "dnsmasq": lambda: int((site.state_dir / "dhcp" / net / "pid").read_text().split()[0]),
        "proxy": lambda: site.pid("proxy"),
        "agent": lambda: site.pid("agent"),
        "metadata": lambda: site.pid("metadata"),
    }
    rng = random.Random(7)
    with Load(vm.namespace) as load:
        wait_for(lambda: load.ok_since(0), 10, "load to start")
        for _ in range(rounds):
            for role in rng.sample(sorted(pids), len(pids)):
                pid = pids[role]()
                assert pid and not dead(pid), role
                os.kill(pid, signal.SIGKILL)
                _count("daemons SIGKILLed")
                wait_for(lambda: dead(pid), 5, f"{role} to die")
                t0 = time.monotonic()
                res = site.mdtool("enable-isolated-metadata", net, check=False)
                assert res.returncode == 0, (res.stdout, res.stderr, logs_of(site))
                wait_for(lambda: load.ok_since(t0), 10, f"200 again after killing {role}")
                COUNTS["worst recovery ms"] = max(COUNTS.get("worst recovery ms", 0),
                                                  int((time.monotonic() - t0) * 1000))
                assert dump(db) == registry, f"the registry changed after killing {role}"
                assert leases(lease_file).get(vm.mac) == vm.ip, f"lease lost ({role})"
                if role == "dnsmasq":
                    site.dhcp.flush(vm.namespace)
                    assert site.dhcp.udhcpc(vm.namespace), site.dhcp.output("udhcpc")
                    got = switch_addr(vm.namespace)
                    assert got == vm.ip, f"DHCP after the restart gave {got}, not {vm.ip}"
                    t1 = time.monotonic()
                    wait_for(lambda: load.ok_since(t1), 10, "200 after DHCP")
    codes = [c for _, c in load.results]
    _count("requests under faults", len(codes))
    _count("requests answered 200", codes.count(200))
    assert integrity(db) == "ok"
    code, body = http(site.curl(vm, "/openstack/latest/meta_data.json"))
    assert code == 200 and json.loads(body)["uuid"] == vm.id
    _count("registry rows lost", 0)


@needs_pipeline
@pytest.mark.timeout(240)
def test_sigkill_of_each_daemon_under_load(site):
    kill_daemons_under_load(site, rounds=1)


@needs_pipeline
@pytest.mark.long
@pytest.mark.timeout(1800)
def test_sigkill_of_each_daemon_under_load_long(site):
    kill_daemons_under_load(site, rounds=10)


# SQLite killed during a write storm ---------------------------------------------------

WRITER = r"""
import sys
from mdtool.registry import open_registry
reg = open_registry(sys.argv[1])
for i in range(100000):
    net = reg.create_network(f"{sys.argv[2]}-{i}")
    print(net.id, flush=True)   # only after the commit
"""


def write_storm(tmp_path: Path, rounds: int, writers: int = 4) -> None:
    db = tmp_path / "storm.db"
    url = f"sqlite:///{db}"
    printed: set[str] = set()
    rng = random.Random(11)
    for r in range(rounds):
        procs = [subprocess.Popen([sys.executable, "-c", WRITER, url, f"w{r}-{w}"], cwd=ROOT,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for w in range(writers)]
        outs: list[list[str]] = [[] for _ in procs]

        def pump(p, out):
            for line in p.stdout:
                out.append(line.strip())

        pumps = [threading.Thread(target=pump, args=(p, o), daemon=True)
                 for p, o in zip(procs, outs)]
        for t in pumps:
            t.start()
        try:
            # SIGKILL lands mid-storm: once every writer committed a random number of rows
            want = rng.randint(20, 120)
            wait_for(lambda: all(len(o) >= want for o in outs) or
                     any(p.poll() is not None for p in procs), 60, "the storm")
            for p in procs:
                p.send_signal(signal.SIGKILL)
            for p, t, o in zip(procs, pumps, outs):
                p.wait(10)
                t.join(10)
                err = p.stderr.read()
                assert p.returncode == -signal.SIGKILL, err
                assert "locked" not in err, err
                printed.update(i for i in o if len(i) == 36)
                _count("writers SIGKILLed")
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
        assert integrity(db) == "ok"
        with closing(sqlite3.connect(db)) as conn:
            stored = {row[0] for row in conn.execute("SELECT id FROM networks")}
        missing = printed - stored
        assert not missing, f"{len(missing)} committed writes lost"
    _count("committed writes checked", len(printed))


@pytest.mark.timeout(120)
def test_sqlite_killed_in_a_write_storm_keeps_every_committed_write(tmp_path):
    write_storm(tmp_path, rounds=2)


@pytest.mark.long
@pytest.mark.timeout(1800)
def test_sqlite_killed_in_a_write_storm_long(tmp_path):
    write_storm(tmp_path, rounds=25)


# a full or read-only state dir ---------------------------------------------------------

def mdtool(state: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "MDTOOL_STATE_DIR": str(state), "MDTOOL_DB": "", "MDTOOL_CONFIG": "",
           "MDTOOL_HOST": "fault-node"}
    return subprocess.run([sys.executable, "-m", "mdtool", *args], capture_output=True,
                          text=True, timeout=60, env=env, cwd=ROOT, stdin=subprocess.DEVNULL)


def one_line_error(res: subprocess.CompletedProcess) -> str:
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert res.returncode in (1, 2), (res.returncode, res.stderr)
    assert len(lines) == 1 and lines[0].startswith("mdtool: error: "), res.stderr
    assert "Traceback" not in res.stderr
    return lines[0]


def snapshot(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir()) if p.is_file()}


@root_only
@pytest.mark.timeout(120)
def test_full_and_read_only_state_dir_fail_cleanly(tmp_path):
    mnt = Path(tempfile.mkdtemp(prefix="mdtool-full-"))
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0755", "tmpfs", str(mnt)],
                   check=True)
    try:
        state = mnt / "state"
        net = mdtool(state, "net-create", "full-net", "-f", "value", "-c", "id").stdout.strip()
        assert net
        assert mdtool(state, "subnet-create", net, "10.86.0.0/24", "--no-gateway").returncode == 0
        # This node's DHCP port (what `netns up` records), without touching any namespace.
        seed = subprocess.run([sys.executable, "-c",
                               "import sys; from mdtool.registry import open_registry; "
                               "open_registry(sys.argv[1]).ensure_dhcp_port(sys.argv[2], "
                               "'fault-node')", f"sqlite:///{state}/mdtool.db", net],
                              cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert seed.returncode == 0, seed.stderr
        assert mdtool(state, "dnsmasq", "render", net).returncode == 0
        dhcp = state / "dhcp" / net
        before = snapshot(dhcp)
        assert set(before) >= {"host", "opts", "addn_hosts"}
        # the registry moves on: the next render would change the host file
        assert mdtool(state, "port-create", net, "--name", "p-before").returncode == 0
        db = state / "mdtool.db"
        rows = dump(db)

        # fill the file system
        filler = mnt / "filler"
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            for _ in range(8192):  # bounded: 4 MiB in 512-byte writes at most
                try:
                    os.write(fd, b"\0" * 512)
                except OSError as e:
                    assert e.errno == errno.ENOSPC
                    break
        finally:
            os.close(fd)
        err = one_line_error(mdtool(state, "dnsmasq", "render", net))
        assert "disk full" in err or "no space left" in err, err
        assert snapshot(dhcp) == before
        res = mdtool(state, "port-create", net, "--name", "p-full")
        if res.returncode != 0:  # SQLite may still fit one row into pages it holds
            err = one_line_error(res)
            assert "full" in err or "no space left" in err, err
            assert dump(db) == rows
        _count("full-disk writes refused cleanly", 1 + (res.returncode != 0))
        assert integrity(db) == "ok"
        rows = dump(db)

        # read-only
        filler.unlink()
        subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
        err = one_line_error(mdtool(state, "dnsmasq", "render", net))
        assert "read-only" in err, err
        assert snapshot(dhcp) == before
        one_line_error(mdtool(state, "port-create", net, "--name", "p-ro"))
        assert dump(db) == rows
        _count("read-only writes refused cleanly", 2)
        subprocess.run(["mount", "-o", "remount,rw", str(mnt)], check=True)
        assert integrity(db) == "ok"
        assert not [p for p in dhcp.iterdir() if p.name.startswith(".")], "temp file left"
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)
        if os.path.ismount(mnt):
            subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
        shutil.rmtree(mnt, ignore_errors=True)
