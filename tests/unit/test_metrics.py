"""Prometheus metrics: the agent and metadata daemons as processes, scraped after traffic;
the counting wrappers in-process."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import sys
import urllib.request

import pytest

from mdtool.http.types import Response
from tests.unit.test_agent_daemon import _free_port, _http, _spawn, _stop, _wait_connect
from tests.unit.test_metadata_service import NET, SECRET


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return r.read().decode()


def sample(text: str, name: str, labels: str = "") -> float:
    m = re.search(rf"^{re.escape(name)}{re.escape(labels)} (\S+)$", text, re.M)
    assert m, f"{name}{labels} not in:\n{text}"
    return float(m.group(1))


def test_agent_and_metadata_metrics_after_traffic(tmp_path):
    port, m_agent, m_md = _free_port(), _free_port(), _free_port()
    env = dict(os.environ, MDTOOL_METADATA_PROXY_SHARED_SECRET=SECRET,
               MDTOOL_METADATA_LISTEN_PORT=str(port),
               MDTOOL_NOVA_METADATA_URL=f"http://127.0.0.1:{port}",
               MDTOOL_METRICS_PORT_AGENT=str(m_agent), MDTOOL_METRICS_PORT_METADATA=str(m_md))
    env.pop("MDTOOL_CONFIG", None)
    sock_path = tmp_path / "metadata_proxy"
    md = _spawn("metadata", tmp_path, env)
    agent = _spawn("agent", tmp_path, env)
    try:
        _wait_connect(socket.AF_INET, ("127.0.0.1", port), md)
        _wait_connect(socket.AF_UNIX, str(sock_path), agent)
        before = scrape(m_agent)
        assert sample(before, "mdtool_agent_requests_total", '{code="200"}') == 0
        for ip, _ in (("172.17.17.11", 200), ("172.17.17.11", 200), ("172.17.17.99", 404)):
            status, _ = _http(socket.AF_UNIX, str(sock_path),
                              "GET /openstack/latest/meta_data.json HTTP/1.1\r\nHost: x\r\n"
                              f"X-Neutron-Network-ID: {NET}\r\nX-Forwarded-For: {ip}\r\n"
                              "Connection: close\r\n")
        a = scrape(m_agent)
        assert sample(a, "mdtool_agent_requests_total", '{code="200"}') == 2
        assert sample(a, "mdtool_agent_requests_total", '{code="404"}') == 1
        assert sample(a, "mdtool_agent_lookups_total", '{result="hit"}') == 2
        assert sample(a, "mdtool_agent_lookups_total", '{result="miss"}') == 1
        assert sample(a, "mdtool_agent_request_duration_seconds_count") == 3
        assert sample(a, "mdtool_agent_upstream_errors_total", '{kind="unavailable"}') == 0
        assert "process_resident_memory_bytes" in a
        m = scrape(m_md)
        assert sample(m, "mdtool_metadata_requests_total", '{code="200"}') == 2
        assert sample(m, "mdtool_metadata_request_duration_seconds_count") == 2

        # The metadata service goes away: the agent counts an upstream error.
        assert _stop(md)[0] == 0
        status, _ = _http(socket.AF_UNIX, str(sock_path),
                          "GET /latest/meta-data/ HTTP/1.1\r\nHost: x\r\n"
                          f"X-Neutron-Network-ID: {NET}\r\nX-Forwarded-For: 172.17.17.11\r\n"
                          "Connection: close\r\n")
        assert status == 503
        a = scrape(m_agent)
        assert sample(a, "mdtool_agent_upstream_errors_total", '{kind="unavailable"}') == 1
        assert sample(a, "mdtool_agent_requests_total", '{code="503"}') == 1
        rc, err = _stop(agent)
        assert rc == 0, err
        assert f"agent metrics on http://127.0.0.1:{m_agent}/metrics" in err
    finally:
        for p in (md, agent):
            if p.poll() is None:
                p.kill()
                p.wait()


def test_metrics_port_in_use_fails_at_start(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        env = dict(os.environ, MDTOOL_METADATA_PROXY_SHARED_SECRET=SECRET,
                   MDTOOL_METADATA_LISTEN_PORT=str(_free_port()),
                   MDTOOL_METRICS_PORT_METADATA=str(busy.getsockname()[1]))
        env.pop("MDTOOL_CONFIG", None)
        p = _spawn("metadata", tmp_path, env)
        _, err = p.communicate(timeout=15)
    assert p.returncode == 1
    assert "cannot serve metadata metrics on 127.0.0.1:" in err


def test_wrappers_in_process():
    from prometheus_client import generate_latest

    from mdtool.http.client import UpstreamTimeout
    from mdtool.metrics import DaemonMetrics

    m = DaemonMetrics("proxy", process_metrics=False)
    statuses = iter([200, 429, 299])

    async def handler(req):
        return Response(next(statuses), b"", [])

    class Pool:
        async def request(self, *a):
            raise UpstreamTimeout("slow")

        async def close(self):
            return "closed"

    async def go():
        h = m.wrap(handler)
        for _ in range(3):
            await h(None)
        pool = m.upstream(Pool())
        with pytest.raises(UpstreamTimeout):
            await pool.request("GET", "/", [], b"")
        assert await pool.close() == "closed"

    asyncio.run(go())
    text = generate_latest(m.registry).decode()
    assert sample(text, "mdtool_proxy_requests_total", '{code="200"}') == 1
    assert sample(text, "mdtool_proxy_requests_total", '{code="299"}') == 1
    assert sample(text, "mdtool_proxy_rate_limited_requests_total") == 1
    assert sample(text, "mdtool_proxy_upstream_errors_total", '{kind="timeout"}') == 1
    assert sample(text, "mdtool_proxy_request_duration_seconds_count") == 3


def test_no_port_no_prometheus_import(tmp_path):
    """A daemon without a metrics port never imports prometheus_client."""
    import subprocess
    code = ("import sys; from mdtool.config import Config; from mdtool import metrics;"
            f"c = Config(state_dir={str(tmp_path)!r}, config_file='/dev/null', environ={{}});"
            "assert metrics.start(c, 'proxy') is None;"
            "assert 'prometheus_client' not in sys.modules, 'imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
