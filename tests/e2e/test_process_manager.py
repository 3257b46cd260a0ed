"""The process manager against hostile and broken surroundings, for real.

- An unprivileged user's process holds the metadata port and serves fake user-data:
  ``enable-isolated-metadata`` exits 1 naming it (pid, user, command line), never says
  "started", and an instance never receives the squatter's bytes.
- A pid file naming an unrelated process (``sleep``): ``enable`` neither starts a second
  daemon nor orphans the first, and never signals the stranger.
- The agent's socket deleted under a running agent: ``enable`` repairs it.
- ``--dry-run`` right before each repair prints exactly what the real run then reports.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap

import pytest

from tests.e2e.conftest import http
from tests.e2e.helpers import _kill, processes_matching, wait_for

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("dnsmasq") is None or shutil.which("udhcpc") is None
    or shutil.which("setpriv") is None, reason="needs root, dnsmasq, udhcpc and setpriv")

FAKE_USER_DATA = b"#!/bin/sh\necho pwned-by-squatter\n"

SQUATTER = textwrap.dedent("""
    import http.server, sys
    BODY = sys.argv[2].encode()
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", str(len(BODY)))
            self.end_headers()
            self.wfile.write(BODY)
        def log_message(self, *a):
            pass
    http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
""")


@pytest.fixture
def squatter(site):
    """Start a fake metadata service as user nobody on the site's metadata port."""
    procs = []

    def start() -> subprocess.Popen:
        p = subprocess.Popen(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                              "/usr/bin/python3", "-c", SQUATTER, str(site.metadata_port),
                              FAKE_USER_DATA.decode()],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        procs.append(p)
        wait_for(lambda: _answers(site.metadata_port) or p.poll() is not None, 10, "the squatter")
        assert p.poll() is None, p.stderr.read()
        return p

    yield start
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait()


def _answers(port: int) -> bool:
    import socket
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _strings(doc) -> list[str]:
    if isinstance(doc, str):
        return [doc]
    if isinstance(doc, dict):
        doc = list(doc.values())
    return [t for d in doc for t in _strings(d)] if isinstance(doc, list) else []


def _last_error(res) -> str:
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def _actions(stderr: str) -> list[str]:
    """The action lines of an enable/disable report: "would " of a dry run dropped, and the
    " (pid N)" a real start appends (a dry run cannot know the pid a start will get)."""
    import re
    out = []
    for line in stderr.splitlines():
        if line.startswith("     ") and not line.strip().startswith(("kept", "not started",
                                                                     "subnet(s)")):
            text = line.strip()
            text = text[len("would "):] if text.startswith("would ") else text
            out.append(re.sub(r" \(pid \d+\)$", "", text))  # what a start got
    return out


def test_a_squatter_on_the_metadata_port_is_named_and_never_served(site, squatter):
    net = site.network("pm-squat", "10.91.0.0/24")
    vm = site.instance("vm-squat", net)
    p = squatter()
    res = site.mdtool("enable-isolated-metadata", net, check=False)
    assert res.returncode == 1, res.stdout + res.stderr
    err = _last_error(res)
    want = (f"127.0.0.1:{site.metadata_port} is held by pid {p.pid} (user nobody: "
            f"/usr/bin/python3 -c ")
    assert want in err and "not by mdtool" in err, err
    assert "start mdtool metadata" not in res.stderr.replace("would start", "")
    assert "Traceback" not in res.stderr
    # inspect names the squatter with the same sentence
    sentence = err[err.index(f"127.0.0.1:{site.metadata_port} is held by"):err.index("not by mdtool")]
    seen = site.mdtool("inspect", net, "-f", "json", check=False)
    assert any(sentence + "not by mdtool" in text for text in _strings(json.loads(seen.stdout))), \
        seen.stdout
    # nothing of ours serves: the instance cannot reach the squatter through mdtool
    assert not processes_matching("mdtool", str(site.state_dir))
    site.plug(vm)
    got = site.curl(vm, "/openstack/latest/user_data")
    assert FAKE_USER_DATA.decode().strip() not in got.stdout
    # the squatter gone, enable serves the instance its own metadata
    p.kill()
    p.wait()
    site.mdtool("enable-isolated-metadata", net)
    assert site.dhcp.udhcpc(vm.namespace), site.dhcp.output("udhcpc")
    code, body = http(site.curl(vm, "/openstack/latest/meta_data.json"))
    assert code == 200 and json.loads(body)["uuid"] == vm.id


def test_a_squatter_after_the_metadata_service_died_is_named(site, squatter):
    net = site.network("pm-squat2", "10.92.0.0/24")
    site.mdtool("enable-isolated-metadata", net)
    pid = site.pid("metadata")
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not processes_matching("mdtool", str(site.state_dir), "metadata", "run"),
             10, "the metadata service to die")
    p = squatter()
    dry = site.mdtool("enable-isolated-metadata", net, "--dry-run", check=False)
    res = site.mdtool("enable-isolated-metadata", net, check=False)
    assert res.returncode == 1, res.stdout + res.stderr
    for out in (dry, res):
        assert f"is held by pid {p.pid} (user nobody: " in out.stderr, out.stderr
    assert dry.returncode == 1
    assert "start mdtool metadata" not in res.stderr.replace("would start", "")


def test_a_pid_file_naming_a_stranger_never_makes_a_second_daemon(site):
    net = site.network("pm-stale", "10.93.0.0/24")
    site.mdtool("enable-isolated-metadata", net)
    roles = ("metadata", "agent", "proxy")
    before = {r: site.pid(r) for r in roles}
    dnsmasq_pidfile = site.state_dir / "dhcp" / net / "pid"
    dnsmasq_before = int(dnsmasq_pidfile.read_text().split()[0])
    stranger = subprocess.Popen(["sleep", "300"])
    try:
        for r in roles:
            (site.state_dir / f"{r}.pid").write_text(f"{stranger.pid}\n")
        dnsmasq_pidfile.write_text(f"{stranger.pid}\n")
        dry = site.mdtool("enable-isolated-metadata", net, "--dry-run")
        res = site.mdtool("enable-isolated-metadata", net)
        assert stranger.poll() is None, "the stranger was signalled"
        for r in roles:
            mine = processes_matching(sys.executable, str(site.state_dir), "run") if r != "proxy" \
                else processes_matching("mdtool.proxy", str(site.state_dir))
            if r != "proxy":
                mine = [p for p in mine if r in open(f"/proc/{p}/cmdline").read().split("\0")]
            assert mine == [before[r]], (r, mine, before, res.stderr)
            assert site.pid(r) == before[r], f"the {r} pid file was not repaired"
        assert processes_matching("dnsmasq", net) == [dnsmasq_before]
        assert int(dnsmasq_pidfile.read_text().split()[0]) == dnsmasq_before
        assert _actions(dry.stderr) == _actions(res.stderr) != []
        again = site.mdtool("enable-isolated-metadata", net)
        assert "nothing changed" in again.stderr
    finally:
        stranger.kill()
        stranger.wait()


def test_a_deleted_agent_socket_is_repaired(site):
    net = site.network("pm-sock", "10.94.0.0/24")
    site.mdtool("enable-isolated-metadata", net)
    vm = site.instance("vm-sock", net)
    site.mdtool("dnsmasq", "reload", net)
    site.boot(vm)
    assert http(site.curl(vm, "/openstack/latest/meta_data.json"))[0] == 200
    sock = site.state_dir / "metadata_proxy"
    sock.unlink()
    dry = site.mdtool("enable-isolated-metadata", net, "--dry-run")
    res = site.mdtool("enable-isolated-metadata", net)
    assert "nothing changed" not in res.stderr, res.stderr
    assert "agent" in "\n".join(_actions(res.stderr)), res.stderr
    assert _actions(dry.stderr) == _actions(res.stderr)
    assert sock.is_socket()
    code, body = http(site.curl(vm, "/openstack/latest/meta_data.json"))
    assert code == 200 and json.loads(body)["uuid"] == vm.id
    assert len(processes_matching("mdtool", str(site.state_dir), "agent", "run")) == 1


def test_dry_run_equals_the_real_run_when_dnsmasq_files_changed(site):
    net = site.network("pm-files", "10.95.0.0/24")
    site.mdtool("enable-isolated-metadata", net)
    site.instance("vm-files", net)   # a new port: the host file must change, dnsmasq SIGHUPed
    (site.state_dir / "dhcp" / net / "opts").write_text("edited by hand\n")
    dry = site.mdtool("enable-isolated-metadata", net, "--dry-run")
    res = site.mdtool("enable-isolated-metadata", net)
    acts = _actions(res.stderr)
    assert any("host" in a for a in acts) and any("opts" in a for a in acts), res.stderr
    assert any("SIGHUP" in a for a in acts), res.stderr
    assert _actions(dry.stderr) == acts


def test_dry_run_equals_the_real_run_when_daemons_died(site):
    net = site.network("pm-dead", "10.96.0.0/24")
    site.mdtool("enable-isolated-metadata", net)
    for role in ("proxy", "agent"):
        _kill(site.pid(role))
    dnsmasq_pid = int((site.state_dir / "dhcp" / net / "pid").read_text().split()[0])
    _kill(dnsmasq_pid)
    dry = site.mdtool("enable-isolated-metadata", net, "--dry-run")
    res = site.mdtool("enable-isolated-metadata", net)
    acts = _actions(res.stderr)
    assert any("start mdtool proxy" in a for a in acts), res.stderr
    assert any("start mdtool agent" in a for a in acts), res.stderr
    assert any("dnsmasq" in a for a in acts), res.stderr
    assert _actions(dry.stderr) == acts
