"""#13.1: a local unprivileged user can neither reach the metadata service nor answer in its
place, while the pipeline keeps serving instances."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess

import pytest

from tests.e2e.conftest import http
from tests.e2e.helpers import wait_for

pytestmark = pytest.mark.skipif(
    shutil.which("dnsmasq") is None or shutil.which("udhcpc") is None
    or shutil.which("setpriv") is None, reason="needs dnsmasq, udhcpc and setpriv")

NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"]

# Run as nobody: try one thing, print "ok" or the errno's name.
ATTEMPT = r"""
import errno, socket, sys
what, where = sys.argv[1], sys.argv[2]
fam = socket.AF_UNIX if where.startswith("/") else socket.AF_INET
s = socket.socket(fam, socket.SOCK_STREAM)
addr = where if fam == socket.AF_UNIX else ("127.0.0.1", int(where))
try:
    s.connect(addr) if what == "connect" else s.bind(addr)
    print("ok")
except OSError as e:
    print(errno.errorcode.get(e.errno, str(e.errno)))
"""

# Run as nobody: listen on a port, say "ready", count connections until told to stop.
ROGUE = r"""
import errno, socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError as e:
    sys.exit(print(errno.errorcode.get(e.errno, str(e.errno)), flush=True))
s.listen(16)
print("ready", flush=True)
sys.stdin.readline()
s.setblocking(False)
n = 0
while True:
    try:
        s.accept()
        n += 1
    except BlockingIOError:
        break
print(n, flush=True)
"""


def as_nobody(what: str, where: str) -> str:
    res = subprocess.run([*NOBODY, "/usr/bin/python3", "-c", ATTEMPT, what, where],
                         capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stderr
    return res.stdout.strip()


def test_local_users_can_neither_reach_nor_replace_the_metadata_service(site):
    # The defaults: no TCP anywhere between agent and metadata service.
    for var in ("MDTOOL_METADATA_LISTEN_PORT", "MDTOOL_NOVA_METADATA_PORT"):
        site.env.pop(var)
    net = site.network("e2e-local", "10.82.0.0/24")
    site.mdtool("enable-isolated-metadata", net)
    vm = site.instance("vm-local", net)
    site.mdtool("dnsmasq", "reload", net)
    site.boot(vm)

    def served() -> bool:
        code, body = http(site.curl(vm, "/openstack/latest/meta_data.json"))
        return code == 200 and json.loads(body)["uuid"] == vm.id

    assert served()
    md_sock = site.state_dir / "metadata"
    st = md_sock.stat()
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o660 and st.st_uid == 0
    assert stat.S_IMODE(site.state_dir.stat().st_mode) & 0o022 == 0

    # Connecting: refused on both sockets.
    assert as_nobody("connect", str(md_sock)) == "EACCES"
    assert as_nobody("connect", str(site.state_dir / "metadata_proxy")) == "EACCES"

    # Serving in its place on TCP: a listener on Nova's default port gets no request,
    # the agent talks to the socket only.
    rogue = subprocess.Popen([*NOBODY, "/usr/bin/python3", "-c", ROGUE, "8775"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    site.cleanup.add("rogue", lambda: rogue.poll() is None and rogue.kill())
    first = rogue.stdout.readline().strip()
    # Another service of this machine may hold the port (not ours: we listen on no TCP).
    assert first in ("ready", "EADDRINUSE"), first
    if first == "ready":
        assert served() and served()
        rogue.stdin.write("\n")
        rogue.stdin.flush()
        assert rogue.stdout.readline().strip() == "0"  # not one connection reached it
    rogue.wait(timeout=10)

    # Serving in its place on the socket path: with the service stopped, the path is free,
    # and nobody still cannot bind it.
    os.kill(site.pid("metadata"), signal.SIGTERM)
    wait_for(lambda: not md_sock.exists(), 15, "the metadata socket to go away")
    assert as_nobody("bind", str(md_sock)) == "EACCES"
    assert not md_sock.exists()
    site.mdtool("enable-isolated-metadata", net)  # starts what is missing
    assert served()
