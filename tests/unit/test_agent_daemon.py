"""Both daemons as processes: Unix socket, forwarding, one log line per request, SIGTERM -> 0.

The registry is replaced by the in-memory fake of test_metadata_service (patched into
``mdtool.registry.open_registry`` inside each child), so no database is involved.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.unit.test_metadata_service import IID, NET, SECRET

ROOT = Path(__file__).resolve().parents[2]

CHILD = r"""
import sys
sys.path[:0] = [sys.argv[3], sys.argv[4]]
import test_metadata_service as fake
import mdtool.registry
registry = fake.make_registry()
mdtool.registry.open_registry = lambda url: registry
from mdtool.config import Config
cfg = Config(state_dir=sys.argv[2], config_file="/dev/null")
if sys.argv[1] == "metadata":
    from mdtool.metadata.daemon import run
else:
    from mdtool.agent.daemon import run
sys.exit(run(cfg))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawn(which: str, state_dir: Path, env: dict) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, which, str(state_dir), str(ROOT / "tests" / "unit"),
         str(ROOT)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_connect(family, address, proc, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"daemon exited {proc.returncode}: {proc.stderr.read()}")
        s = socket.socket(family, socket.SOCK_STREAM)
        try:
            s.connect(address)
            return
        except OSError:
            time.sleep(0.05)
        finally:
            s.close()
    raise AssertionError(f"nothing listens on {address}")


def _http(family, address, head: str, body: bytes = b"") -> tuple[int, bytes]:
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(address)
        s.sendall(head.encode() + b"\r\n" + body)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    status = int(data.split(b" ", 2)[1])
    return status, data.split(b"\r\n\r\n", 1)[1]


@pytest.fixture
def daemons(tmp_path):
    port = _free_port()
    env = dict(os.environ,
               MDTOOL_METADATA_PROXY_SHARED_SECRET=SECRET,
               MDTOOL_METADATA_LISTEN_PORT=str(port),
               MDTOOL_NOVA_METADATA_URL=f"http://127.0.0.1:{port}")
    env.pop("MDTOOL_CONFIG", None)
    sock_path = tmp_path / "metadata_proxy"
    # A stale socket file, as a killed agent leaves behind.
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(sock_path))
    stale.close()
    md = _spawn("metadata", tmp_path, env)
    agent = _spawn("agent", tmp_path, env)
    procs = {"metadata": md, "agent": agent}
    try:
        _wait_connect(socket.AF_INET, ("127.0.0.1", port), md)
        _wait_connect(socket.AF_UNIX, str(sock_path), agent)
        yield port, sock_path, procs
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()


def _stop(proc) -> tuple[int, str]:
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=15)
    return proc.returncode, err


def test_agent_and_metadata_daemons(daemons):
    port, sock_path, procs = daemons
    assert stat.S_IMODE(sock_path.stat().st_mode) & 0o007 == 0

    status, body = _http(socket.AF_UNIX, str(sock_path),
                         "GET /openstack/latest/meta_data.json HTTP/1.1\r\nHost: 169.254.169.254\r\n"
                         f"X-Neutron-Network-ID: {NET}\r\nX-Forwarded-For: 172.17.17.11\r\n"
                         "X-Instance-ID: forged\r\nConnection: close\r\n")
    assert status == 200, body
    assert json.loads(body)["uuid"] == IID

    status, body = _http(socket.AF_UNIX, str(sock_path),
                         "GET /latest/meta-data/local-ipv4 HTTP/1.1\r\nHost: x\r\n"
                         f"X-Neutron-Network-ID: {NET}\r\nX-Forwarded-For: 172.17.17.99\r\n"
                         "Connection: close\r\n")
    assert (status, body) == (404, f"Instance was not found on network {NET}".encode())

    # Straight to the metadata service without the agent's headers.
    status, _ = _http(socket.AF_INET, ("127.0.0.1", port),
                      "GET /openstack HTTP/1.1\r\nHost: x\r\nConnection: close\r\n")
    assert status == 400

    rc, err = _stop(procs["agent"])
    assert rc == 0, err
    assert f"instance={IID}" in err and "status=200" in err and "source=172.17.17.11" in err
    assert "status=404" in err
    assert not sock_path.exists()

    # Agent gone: nothing else changes for the metadata service; then stop it too.
    rc, err = _stop(procs["metadata"])
    assert rc == 0, err
    assert f"instance={IID} GET /openstack/latest/meta_data.json status=200" in err
    assert f"listening on {sock_path.parent}/metadata and 127.0.0.1:{port} " in err


def test_agent_answers_503_when_metadata_service_is_down(daemons):
    port, sock_path, procs = daemons
    rc, _ = _stop(procs["metadata"])
    assert rc == 0
    status, body = _http(socket.AF_UNIX, str(sock_path),
                         "GET /latest/meta-data/ HTTP/1.1\r\nHost: x\r\n"
                         f"X-Neutron-Network-ID: {NET}\r\nX-Forwarded-For: 172.17.17.11\r\n"
                         "Connection: close\r\n")
    assert status == 503 and body


def test_second_agent_refuses_a_live_socket(daemons, tmp_path):
    _, sock_path, procs = daemons
    env = dict(os.environ, MDTOOL_METADATA_PROXY_SHARED_SECRET=SECRET)
    second = _spawn("agent", tmp_path, env)
    _, err = second.communicate(timeout=15)
    assert second.returncode != 0
    assert "already listens" in err
    assert sock_path.exists()


def test_without_tcp_agent_and_metadata_meet_on_a_private_socket(tmp_path):
    """#13.1: by default no TCP port at all; the metadata socket is 0660, owned by us."""
    env = dict(os.environ, MDTOOL_METADATA_PROXY_SHARED_SECRET=SECRET)
    for var in ("MDTOOL_CONFIG", "MDTOOL_NOVA_METADATA_URL", "MDTOOL_NOVA_METADATA_HOST",
                "MDTOOL_METADATA_LISTEN_PORT", "MDTOOL_METADATA_LISTEN_HOST"):
        env.pop(var, None)
    md = _spawn("metadata", tmp_path, env)
    agent = _spawn("agent", tmp_path, env)
    try:
        md_sock, agent_sock = tmp_path / "metadata", tmp_path / "metadata_proxy"
        _wait_connect(socket.AF_UNIX, str(md_sock), md)
        _wait_connect(socket.AF_UNIX, str(agent_sock), agent)
        st = md_sock.stat()
        assert (stat.S_IMODE(st.st_mode), st.st_uid) == (0o660, os.geteuid())
        status, body = _http(socket.AF_UNIX, str(agent_sock),
                             "GET /openstack/latest/meta_data.json HTTP/1.1\r\nHost: x\r\n"
                             f"X-Neutron-Network-ID: {NET}\r\nX-Forwarded-For: 172.17.17.11\r\n"
                             "Connection: close\r\n")
        assert status == 200 and json.loads(body)["uuid"] == IID
        tcp = [f"/proc/{md.pid}/net/tcp", f"/proc/{md.pid}/net/tcp6"]
        inodes = {os.stat(f"/proc/{md.pid}/fd/{fd}").st_ino
                  for fd in os.listdir(f"/proc/{md.pid}/fd")}
        listening = [ln for f in tcp for ln in open(f).read().splitlines()[1:]
                     if ln.split()[3] == "0A" and int(ln.split()[9]) in inodes]
        assert listening == []  # the metadata service holds no TCP port
        rc, err = _stop(md)
        assert rc == 0 and f"listening on {md_sock} (registry" in err, err
        assert not md_sock.exists()
    finally:
        for p in (md, agent):
            if p.poll() is None:
                p.kill()
                p.wait()
