"""inspect NETWORK --instance VM / --port P: one instance's view, for real: a booted
instance (udhcpc, option 121) is in the host file, holds a lease, is plugged with the
metadata route, and its last request is the one it made (not inspect's probes); each
fault is one failing check with its fix."""

from __future__ import annotations

import json
import random
import shutil
import subprocess

import pytest

from tests.e2e.conftest import http

pytestmark = pytest.mark.skipif(shutil.which("dnsmasq") is None or shutil.which("udhcpc") is None,
                                reason="needs dnsmasq and udhcpc")


def _view(site, net, *args) -> tuple[int, dict]:
    r = site.mdtool("inspect", net, *args, "-f", "json", check=False, timeout=60)
    assert r.returncode in (0, 1), r.stderr
    d = json.loads(r.stdout)
    return r.returncode, d


def _statuses(d) -> dict[str, str]:
    return {c["name"]: c["status"] for c in d["instance"]["checks"]}


def test_instance_view_of_a_booted_instance_and_its_faults(site):
    net = site.network("iv-net", f"10.{random.randint(100, 250)}.{random.randint(0, 255)}.0/24")
    site.cleanup.link("brq" + net[:11])
    site.mdtool("enable-isolated-metadata", net)
    vm = site.instance("iv-vm", net)
    site.mdtool("dnsmasq", "reload", net)
    site.boot(vm)
    code, body = http(site.curl(vm, "/latest/meta-data/instance-id"))
    assert code == 200, body

    code, d = _view(site, net, "--instance", vm.name)
    v = d["instance"]
    assert code == 0 and d["ok"], json.dumps(v, indent=1)
    assert all(s == "ok" for s in _statuses(d).values()), _statuses(d)
    assert v["port"]["id"] == vm.port_id and v["instance"]["id"] == vm.id
    assert v["host_file"]["line"].startswith(vm.mac + ",") and v["host_file"]["line"].endswith(vm.ip)
    assert v["lease"]["ip"] == vm.ip and v["lease"]["expiry"] > 0
    assert v["plugged"] == {"namespace": vm.namespace, "ifname": "eth0", "present": True}
    assert v["metadata_route"]["cidr"] == "169.254.169.254/32"
    assert v["metadata_route"]["gateway"] == d["dhcp_port"]["fixed_ips"][0]
    # its own request, not inspect's probes (which ran since, as this port)
    assert v["last_request"]["role"] == "proxy"
    assert "GET /latest/meta-data/instance-id 200" in v["last_request"]["line"]
    assert d["probe"]["port"] == vm.port_id

    # the route lost in the instance: one failing check, the route's
    subprocess.run(["ip", "netns", "exec", vm.namespace, "ip", "route", "del",
                    "169.254.169.254/32"], check=True)
    code, d = _view(site, net, "--port", vm.port_id)
    assert code == 1
    failed = [(c["name"], c["fix"]) for c in d["instance"]["checks"] if c["status"] == "fail"]
    assert [n for n, _ in failed] == ["route to 169.254.169.254 in the instance"], failed
    assert "option 121" in failed[0][1]
    assert all(c["status"] == "ok" for c in d["checks"])  # the network itself is fine

    # a port created after dnsmasq wrote its files: not in the host file, fix: reload
    late = site.instance("iv-late", net)
    code, d = _view(site, net, "--instance", late.name)
    assert code == 1
    failed = [(c["name"], c["fix"]) for c in d["instance"]["checks"] if c["status"] == "fail"]
    assert failed == [("MAC in dnsmasq's host file", f"mdtool dnsmasq reload {site_name(d)}")]
    assert _statuses(d)["lease"] == "skip"
    assert _statuses(d)["plugged on this node"] == "warn"   # never plugged here

    # text view: the port section with its checks
    r = site.mdtool("inspect", net, "--instance", late.name, check=False)
    assert f"# port {late.port_id}" in r.stdout and "MAC in dnsmasq's host file" in r.stdout


def site_name(d) -> str:
    return d["network"]["name"]


def test_instance_without_a_port_on_the_network_is_bad_input(site):
    net = site.network("iv-none", "10.199.3.0/24")
    site.mdtool("instance-create", "iv-lonely")
    r = site.mdtool("inspect", net, "--instance", "iv-lonely", check=False)
    assert r.returncode == 2 and "has no port on network" in r.stderr
