"""mdtool logs (issue 16.5): one instance's or one network's requests across the proxy, the
agent and the metadata service, merged in time order, from a real pipeline."""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import sys
import time

import pytest

from tests.e2e.conftest import http

pytestmark = pytest.mark.skipif(shutil.which("dnsmasq") is None or shutil.which("udhcpc") is None,
                                reason="needs dnsmasq and udhcpc")


def _lines(site, *args) -> list[str]:
    return [ln for ln in site.mdtool("logs", "-n", "0", *args).stdout.splitlines() if ln]


@pytest.mark.chain
def test_logs_of_an_instance_and_of_a_network(site):
    net = site.network("logs-net", "10.71.0.0/24")
    vm1 = site.instance("logs-vm1", net)
    vm2 = site.instance("logs-vm2", net)
    site.mdtool("enable-isolated-metadata", net)
    for vm in (vm1, vm2):
        site.boot(vm)
    assert http(site.curl(vm1, "/openstack/latest/meta_data.json"))[0] == 200
    assert http(site.curl(vm2, "/latest/meta-data/instance-id"))[0] == 200
    assert http(site.curl(vm2, "/openstack/nope"))[0] == 404

    mine = []
    for _ in range(50):  # the daemons' lines reach their files asynchronously
        mine = _lines(site, "--instance", "logs-vm1")
        if {ln.split()[2] for ln in mine} >= {"proxy", "agent", "metadata"}:
            break
        time.sleep(0.1)
    # vm1's one request, once per daemon it crossed, and nothing of vm2's
    assert sorted(ln.split()[2] for ln in mine) == ["agent", "metadata", "proxy"], mine
    assert all("meta_data.json" in ln for ln in mine), mine
    assert all(vm2.ip not in ln and vm2.id not in ln for ln in mine)
    stamps = [ln.split()[0] + " " + ln.split()[1] for ln in mine]
    assert stamps == sorted(stamps)

    everyone = _lines(site, "--network", "logs-net")
    assert any(vm2.ip in ln and "/openstack/nope" in ln and " 404 " in ln + " " for ln in everyone)
    assert len([ln for ln in everyone if "meta_data.json" in ln]) == 3
    last_two = site.mdtool("logs", "--network", "logs-net", "-n", "2").stdout.splitlines()
    assert last_two == everyone[-2:]


def test_fast_path_logs_one_line_a_request_found_by_address(site):
    # metadata_backend = local: the proxy answers in-process and alone logs the request.
    net = site.network("fastlog-net", "10.73.0.0/24")
    vm1 = site.instance("fastlog-vm1", net)
    vm2 = site.instance("fastlog-vm2", net)
    site.mdtool("enable-isolated-metadata", net)
    for vm in (vm1, vm2):
        site.boot(vm)
    assert http(site.curl(vm1, "/openstack/latest/meta_data.json"))[0] == 200
    assert http(site.curl(vm2, "/openstack/latest/meta_data.json"))[0] == 200
    mine = []
    for _ in range(50):
        mine = _lines(site, "--instance", "fastlog-vm1")
        if mine:
            break
        time.sleep(0.1)
    assert [ln.split()[2] for ln in mine] == ["proxy"], mine
    assert vm1.ip in mine[0] and "meta_data.json" in mine[0]


@pytest.mark.chain
def test_logs_follow_prints_new_requests(site):
    net = site.network("follow-net", "10.72.0.0/24")
    vm = site.instance("follow-vm", net)
    site.mdtool("enable-isolated-metadata", net)
    site.boot(vm)
    follower = subprocess.Popen([sys.executable, "-m", "mdtool", "logs", "--follow", "-n", "0",
                                 "--instance", "follow-vm"], stdout=subprocess.PIPE,
                                env={**os.environ, **site.env})
    site.cleanup.add("follower", follower.kill)
    time.sleep(1.0)  # let it take its starting offsets
    assert http(site.curl(vm, "/latest/meta-data/local-ipv4"))[0] == 200
    out = b""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and out.count(b"\n") < 3:
        if select.select([follower.stdout], [], [], 0.2)[0]:
            out += os.read(follower.stdout.fileno(), 65536)
    follower.kill()
    seen = out.decode().splitlines()
    assert sorted(ln.split()[2] for ln in seen) == ["agent", "metadata", "proxy"], seen


def test_logs_refuses_both_scopes(site):
    res = site.mdtool("logs", "--network", "x", "--instance", "y", check=False)
    assert res.returncode == 2 and "exclude each other" in res.stderr
