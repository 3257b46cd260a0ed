"""The storm's client: the curl config of cloud-init's recorded requests, replayed by the real
curl against a loopback server, opens one connection per request in the recorded order (as
cloud-init 22.4's url_helper does), and the boot's output is read back request by request."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from mdtool.bench.suite import STORM_WRITE_OUT, _storm_boot, recorded_requests
from mdtool.templates import render

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")


class _Recorder(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive unless the client says otherwise
    seen: list = []

    def do_GET(self):
        self.seen.append((self.command, self.path, self.client_address[1],
                          self.headers.get("User-Agent")))
        status = 404 if self.path.endswith("/user_data") else 200
        body = b"{}"
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    _Recorder.seen = []
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()


def test_replay_is_the_recorded_sequence_one_connection_each(server, tmp_path):
    requests = recorded_requests()
    assert len(requests) == 51 and requests[0] == ("GET", "/openstack")
    cfg = tmp_path / "requests.curl"
    cfg.write_text(render("bench/storm-requests.curl.j2", requests=requests,
                          address=f"127.0.0.1:{server.server_address[1]}",
                          write_out=STORM_WRITE_OUT, connect_timeout=5, max_time=10))
    res = subprocess.run(["curl", "--config", str(cfg)], capture_output=True, text=True,
                         timeout=60, stdin=subprocess.DEVNULL)
    seen = _Recorder.seen
    assert [(m, p) for m, p, _, _ in seen] == requests
    assert len({port for _, _, port, _ in seen}) == len(requests)  # a new connection each
    assert {ua for *_, ua in seen} == {"Cloud-Init/22.4"}

    boot = _storm_boot(f"start 100.0\nlease 100.25\n{res.stdout}done 101.0\n", 99.5)
    assert len(boot["requests"]) == len(requests)
    assert all(r["connects"] == 1 for r in boot["requests"])
    assert (boot["spawn_s"], boot["lease_s"], boot["requests_s"]) == (0.5, 0.25, 0.75)
    # the one 404 (user_data, the 3rd request) is a failure, and only it
    assert boot["failed"] == ["request 3: status 404, curl exit 0"]


def test_a_boot_without_lease_or_end_is_a_failure():
    assert _storm_boot("start 1.0\nnolease 21.0\n", 1.0)["failed"] == ["no lease"]
    assert _storm_boot("start 1.0\nlease 1.5\n", 1.0)["failed"] == ["did not finish"]


def test_the_boot_waits_at_the_barrier_with_its_curl_loaded(server, tmp_path):
    """The storm's boot script (started before the barrier) starts curl, which reads its
    requests and waits on the instance's FIFO, says "ready", and asks nothing until its
    stdin ends; then it takes the lease (udhcpc: a stand-in here, the bench runs the real
    one in a namespace), opens the FIFO, and curl replays every request in order."""
    requests = recorded_requests()
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo, 0o600)
    cfg = tmp_path / "requests.curl"
    cfg.write_text(render("bench/storm-requests.curl.j2", requests=requests,
                          address=f"127.0.0.1:{server.server_address[1]}",
                          write_out=STORM_WRITE_OUT, connect_timeout=5, max_time=10,
                          gate=fifo))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "udhcpc").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "udhcpc").chmod(0o755)
    script = tmp_path / "boot.sh"
    script.write_text(render("bench/storm-boot.sh.j2", interface="eth0",
                             hook=tmp_path / "hook.sh"))
    gate, release = os.pipe()
    proc = subprocess.Popen(["/bin/bash", str(script), str(fifo), str(cfg)], stdin=gate,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"})
    os.close(gate)
    try:
        word, _, curl = proc.stdout.readline().decode().partition(" ")
        assert word == "ready"
        wchan = Path(f"/proc/{int(curl)}/wchan")
        deadline = time.monotonic() + 10
        while wchan.read_text() != "wait_for_partner":  # curl loaded, waiting at the gate
            assert time.monotonic() < deadline, wchan.read_text()
            time.sleep(0.01)
        time.sleep(0.2)
        assert _Recorder.seen == []  # nothing asked before the barrier
        started = time.time()
        os.close(release)
        release = None
        out, err = proc.communicate(timeout=60)
    finally:
        if release is not None:
            os.close(release)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert [(m, p) for m, p, _, _ in _Recorder.seen] == requests
    boot = _storm_boot(out.decode(), started)
    assert len(boot["requests"]) == len(requests) and boot["lease_s"] is not None
    assert boot["failed"] == ["request 3: status 404, curl exit 0"]  # the server's one 404
