"""A smoke run of `mdtool bench --quick`, so the benchmark cannot rot (the real run is
not part of the test suite: see docs/benchmarks.md)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.timeout(480),
    pytest.mark.skipif(os.geteuid() != 0 or any(shutil.which(p) is None for p in
                                                ("ip", "wrk", "haproxy", "udhcpc", "dnsmasq", "ss")),
                       reason="needs root, wrk, haproxy, udhcpc, dnsmasq"),
]

ROOT = Path(__file__).resolve().parents[2]


def test_bench_quick_writes_every_section_and_the_plot(tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "out"
    res = subprocess.run([sys.executable, "-m", "mdtool", "bench", "--quick", "--output", str(out)],
                         capture_output=True, text=True, timeout=460, cwd=ROOT,
                         stdin=subprocess.DEVNULL)
    assert res.returncode == 0, res.stderr[-3000:]
    data = json.loads((out / "benchmarks.json").read_text())
    for section in ("throughput", "memory", "boot", "setup", "registry", "cli", "node", "storm",
                    "scale", "machine", "targets"):
        assert section in data, section
    tp = data["throughput"]
    assert set(tp["results"]) == {"ceiling", "neutron", "mdtool", "chain"}
    for kind in tp["results"].values():
        for cell in kind["by_connections"].values():
            assert cell["rps"] > 0 and cell["non2xx"] == 0
    assert all(v["c_over_b"] and v["c_over_a"] and v["d_over_b"] for v in tp["ratios"].values())
    assert data["memory"]["by_networks"]["1"]["mdtool"]["pss"] > 0
    assert data["boot"]["dhcp_ms"] > 0
    assert data["setup"]["rerun"]["networks"] >= 1
    assert data["registry"]["lookup"]["p99_us"] > 0
    node = data["node"]
    assert node["bring_up"]["networks"] == node["resync"]["networks"] == 2
    assert node["lease"]["p50_ms"] > 0 and node["change"]["p99_ms"] > 0
    assert set(node["respawn"]) == {"dnsmasq", "proxy", "agent", "metadata"}
    assert "skipped" in node["two_nodes"] or node["two_nodes"]["reload_p50_ms"] > 0
    assert set(data["cli"]["over_help"]) >= {"net-list", "port-show", "port-create"}
    for kind in ("mdtool", "neutron"):  # every boot of the storm read all it asked for
        storm = data["storm"]["results"][kind]
        assert storm["failures"] == 0 and storm["requests"] == 4 * data["storm"]["requests_per_boot"]
        assert storm["connects_per_request"] == 1  # no keep-alive, as cloud-init 22.4
        assert storm["cpu_s"]["clients"] > 0 and storm["lease_s_p50"] > 0
        assert storm["serving_cpu_ms_per_boot"] > 0 and storm["client_cpu_ms_per_boot"] > 0
    assert "haproxy" in data["storm"]["results"]["neutron"]["cpu_s"]
    assert "proxy" in data["storm"]["results"]["mdtool"]["cpu_s"]
    assert data["storm"]["serving_cpu_neutron_over_mdtool"] > 0
    assert data["storm"]["requests_phase_neutron_over_mdtool"] > 0
    assert data["storm"]["pinned"] is False  # the default: no core set aside for anyone
    scale = data["scale"]  # every network up, served by the one proxy, then all gone
    assert scale["enable"]["failed"] == scale["rerun"]["failed"] == scale["disable"]["failed"] == []
    assert scale["node_resync"]["networks"] == scale["networks"] == 20
    assert scale["proxy_listening"] == 20 and scale["proxy_memory_kb"]["pss"] > 0
    assert scale["idle"]["processes"] == 20 + 4  # a dnsmasq each, node, proxy, agent, metadata
    assert not any(scale["left_after_disable"].values()), scale["left_after_disable"]
    assert (out / "benchmarks.png").stat().st_size > 10_000
    assert "(c)/(b)" in (out / "benchmarks-table.md").read_text()
