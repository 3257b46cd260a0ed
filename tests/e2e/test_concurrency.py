"""20 CLI writers at once while the agent serves an instance.

Every writer is a separate ``python -m mdtool port-create`` process, started together.
None may fail, none may print "database is locked", every port exists exactly once with
its own address and MAC, and the instance keeps getting its metadata (200) throughout.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.test_faults import Load
from tests.e2e.helpers import wait_for

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("dnsmasq") is None or shutil.which("udhcpc") is None,
    reason="needs root, dnsmasq and udhcpc")

ROOT = Path(__file__).resolve().parents[2]
WRITERS = 20
COUNTS: dict[str, int] = {}


def parallel(site, argvs: list[list[str]]) -> list[subprocess.CompletedProcess]:
    env = {**os.environ, **site.env}
    procs = [subprocess.Popen([sys.executable, "-m", "mdtool", *argv], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              stdin=subprocess.DEVNULL) for argv in argvs]
    out = []
    try:
        for p, argv in zip(procs, argvs):
            stdout, stderr = p.communicate(timeout=120)
            out.append(subprocess.CompletedProcess(argv, p.returncode, stdout, stderr))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return out


def storm(site, rounds: int) -> None:
    net = site.network("conc-net", "10.87.0.0/22")
    site.mdtool("enable-isolated-metadata", net)
    vm = site.instance("vm-conc", net)
    site.mdtool("dnsmasq", "reload", net)
    site.boot(vm)
    with Load(vm.namespace) as load:
        wait_for(lambda: load.ok_since(0), 10, "load to start")
        for r in range(rounds):
            names = [f"cw-{r}-{i}" for i in range(WRITERS)]
            results = parallel(site, [["port-create", net, "--name", n, "-f", "value", "-c", "id"]
                                      for n in names])
            COUNTS["writers"] = COUNTS.get("writers", 0) + len(results)
            for res in results:
                assert res.returncode == 0, res.stderr
                assert "locked" not in res.stderr.lower(), res.stderr
            ids = [res.stdout.strip() for res in results]
            assert len(set(ids)) == WRITERS
            ports = [p for p in site.json("port-list", "--network", net)
                     if p["name"].startswith(f"cw-{r}-")]
            assert sorted(p["name"] for p in ports) == sorted(names)
            assert sorted(p["id"] for p in ports) == sorted(ids)
            ips = [f["ip_address"] for p in ports for f in p["fixed_ips"]]
            assert len(ips) == WRITERS and len(set(ips)) == WRITERS, ips
            assert len({p["mac_address"] for p in ports}) == WRITERS
            if rounds > 1:  # the long version deletes them again, 20 at once too
                for res in parallel(site, [["port-delete", i] for i in ids]):
                    assert res.returncode == 0 and "locked" not in res.stderr.lower(), res.stderr
                    COUNTS["writers"] += 1
    codes = [c for _, c in load.results]
    COUNTS["instance requests"] = COUNTS.get("instance requests", 0) + len(codes)
    assert codes and all(c == 200 for c in codes), {c: codes.count(c) for c in set(codes)}
    print(f"\nconcurrency: {COUNTS}, 0 lost, 0 duplicated, 0 'database is locked'")


@pytest.mark.timeout(240)
def test_twenty_parallel_cli_writers_while_the_agent_serves(site):
    storm(site, rounds=1)


@pytest.mark.long
@pytest.mark.timeout(1800)
def test_parallel_cli_writers_long(site):
    storm(site, rounds=10)
