"""enable-isolated-metadata / disable-isolated-metadata and the demo, for real."""

from __future__ import annotations

import json
import os
import shutil
import socket

import pytest

from tests.e2e.conftest import http
from tests.e2e.helpers import netns_exists, host_link_exists, processes_matching

pytestmark = pytest.mark.skipif(shutil.which("dnsmasq") is None or shutil.which("udhcpc") is None,
                                reason="needs dnsmasq and udhcpc")

ROLES = ("metadata", "agent", "proxy")


def pids(site, net_id):
    out = {r: site.pid(r) for r in ROLES}
    try:
        out["dnsmasq"] = int((site.state_dir / "dhcp" / net_id / "pid").read_text().split()[0])
    except (OSError, ValueError):
        out["dnsmasq"] = None
    return out


def test_enable_twice_is_a_no_op_that_says_so(site):
    net = site.network("e2e-twice", "10.81.0.0/24")
    first = site.mdtool("enable-isolated-metadata", net)
    assert "isolated metadata enabled" in first.stderr
    before = pids(site, net)
    assert all(before.values()), before
    second = site.mdtool("enable-isolated-metadata", net)
    assert "already enabled" in second.stderr and "nothing changed" in second.stderr
    assert "changed" not in second.stderr.replace("nothing changed", "")
    assert pids(site, net) == before
    vm = site.instance("vm-twice", net)
    third = site.mdtool("enable-isolated-metadata", net)   # a new port: dnsmasq files change
    assert "write host" in third.stderr and "SIGHUP" in third.stderr
    assert pids(site, net) == before
    site.boot(vm)
    code, body = http(site.curl(vm, "/openstack/latest/meta_data.json"))
    assert code == 200 and json.loads(body)["uuid"] == vm.id


def test_dry_run_creates_nothing(site):
    net = site.network("e2e-dry", "10.82.0.0/24")
    res = site.mdtool("enable-isolated-metadata", net, "--dry-run")
    assert "would reserve DHCP port" in res.stderr and "would start mdtool proxy" in res.stderr
    assert not netns_exists(f"qdhcp-{net}")
    assert not host_link_exists("brq" + net[:11])
    assert site.json("port-list") == []
    assert not processes_matching(str(site.state_dir))
    assert not (site.state_dir / "dhcp" / net).exists()


def test_disable_leaves_nothing_behind(site):
    net = site.network("e2e-off", "10.83.0.0/24")
    site.mdtool("enable-isolated-metadata", net)
    dhcp_port = [p for p in site.json("port-list") if p["device_owner"] == "network:dhcp"][0]
    host_end = "ns-" + dhcp_port["id"][:11]
    assert host_link_exists(host_end)
    res = site.mdtool("disable-isolated-metadata", net)
    assert "isolated metadata disabled" in res.stderr
    assert not netns_exists(f"qdhcp-{net}")
    assert not host_link_exists(host_end)
    assert not host_link_exists("brq" + net[:11])
    assert not processes_matching(str(site.state_dir))
    assert not processes_matching("dnsmasq", net)
    assert site.json("port-list") == []
    assert not (site.state_dir / "dhcp" / net).exists()
    assert site.json("net-show", net)["hosts"] == []
    again = site.mdtool("disable-isolated-metadata", net)
    assert "already disabled" in again.stderr


def test_shared_daemons_stay_while_another_network_needs_them(site):
    a = site.network("e2e-keep-a", "10.84.0.0/24")
    b = site.network("e2e-keep-b", "10.85.0.0/24")
    site.mdtool("enable-isolated-metadata", a)
    site.mdtool("enable-isolated-metadata", b)
    daemons = {r: site.pid(r) for r in ROLES}
    res = site.mdtool("disable-isolated-metadata", a)
    assert "kept" in res.stderr
    assert {r: site.pid(r) for r in ROLES} == daemons
    assert netns_exists(f"qdhcp-{b}") and not netns_exists(f"qdhcp-{a}")


def test_an_address_held_by_another_process_fails_before_changing_anything(site):
    net = site.network("e2e-held", "10.86.0.0/24")
    blocker = socket.socket()
    blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    blocker.bind(("127.0.0.1", site.metadata_port))
    blocker.listen(1)
    try:
        # something else holds the metadata port: named, and the plan stops before any change
        res = site.mdtool("enable-isolated-metadata", net, check=False)
    finally:
        blocker.close()
    assert res.returncode == 1, res.stderr
    err = res.stderr.strip().splitlines()[-1]
    assert err.startswith("mdtool: error: step 'metadata service' failed: "
                          f"127.0.0.1:{site.metadata_port} is held by pid {os.getpid()} "), err
    assert err.endswith("not by mdtool; rolled back: reserve DHCP port on e2e-held"), err
    assert not netns_exists(f"qdhcp-{net}")
    assert site.json("port-list") == []
    site.mdtool("enable-isolated-metadata", net)
    assert netns_exists(f"qdhcp-{net}")


def test_a_failed_step_rolls_back_what_this_run_created(site):
    net = site.network("e2e-fail", "10.87.0.0/24")
    # 192.0.2.1 is no address of this host: the metadata service dies at start (bind)
    res = site.mdtool("enable-isolated-metadata", net, check=False,
                      env={"MDTOOL_METADATA_LISTEN_HOST": "192.0.2.1"})
    assert res.returncode == 1, res.stderr
    err = res.stderr.strip().splitlines()[-1]
    assert err.startswith("mdtool: error: step 'metadata service' failed: mdtool metadata "
                          "exited at start: "), err
    assert "rolled back: start dnsmasq for e2e-fail" in err and "create namespace" in err, err
    assert "reserve DHCP port on e2e-fail" in err and "could not undo" not in err, err
    assert not netns_exists(f"qdhcp-{net}")
    assert not processes_matching("dnsmasq", net)
    assert site.json("port-list") == []
    # and the next run does the whole thing
    site.mdtool("enable-isolated-metadata", net)
    assert netns_exists(f"qdhcp-{net}")


def test_demo_runs_and_cleans_up(site):
    res = site.mdtool("demo", timeout=180)
    assert "both instances received their own metadata" in res.stdout, res.stdout + res.stderr
    assert res.stdout.count("demo-vm") >= 4
    # The inspect view its --help promises (it was silently skipped by a swallowed ImportError).
    assert "mdtool inspect demo" in res.stdout and "route -n" in res.stdout, res.stdout
    assert "removed demo network" in res.stderr
    logs = site.state_dir / "log"
    assert not logs.exists() or not [p.name for p in logs.iterdir() if p.name.startswith("dnsmasq-")]
    assert site.json("net-list") == [] and site.json("instance-list") == []
    assert not processes_matching(str(site.state_dir))
    left = [n for n in os.listdir("/run/netns") if n.startswith("demo-vm")] if os.path.isdir("/run/netns") else []
    assert left == []


def test_enable_and_disable_say_what_changed_as_json(site):
    net = site.network("json-net", "10.74.0.0/24")
    plan = json.loads(site.mdtool("enable-isolated-metadata", net, "--dry-run", "-f", "json").stdout)
    assert [r["network"] for r in plan] == [net] and plan[0]["ok"] and plan[0]["dry_run"]
    planned = [s["step"] for s in plan[0]["steps"] if s["changes"]]
    done = json.loads(site.mdtool("enable-isolated-metadata", net, "-f", "json").stdout)[0]
    assert done["ok"] and done["changes"] > 0 and not done["dry_run"]
    assert [s["step"] for s in done["steps"] if s["changes"]] == planned  # the steps it planned
    again = json.loads(site.mdtool("enable-isolated-metadata", net, "-f", "json").stdout)[0]
    assert again["changes"] == 0 and all(s["changes"] == [] for s in again["steps"])
    off = json.loads(site.mdtool("disable-isolated-metadata", net, "-f", "json").stdout)[0]
    assert off["ok"] and off["changes"] > 0
    bad = site.mdtool("enable-isolated-metadata", net, "no-such-net", "-f", "json", check=False)
    rows = json.loads(bad.stdout)
    assert bad.returncode == 1 and [r["ok"] for r in rows] == [True, False]
    assert "no-such-net" in rows[1]["error"]


# Run mdtool with ip_lib's socket openers counted, and the registry reads: what one
# command over several networks costs in netlink sockets and registry reads.
SPY = r'''
import collections, json, os, sys
from mdtool.netns import ip_lib
from mdtool.registry import api
counts = {"route": collections.Counter(), "plain": 0, "networks_with_ports": 0, "get_network": 0}
real_route, real_open_route, real_plain = ip_lib.IPRoute, ip_lib._open_route, ip_lib._open_plain
def route(*a, **k):
    if "fileno" not in k:  # else the namespace's socket, counted by open_route
        counts["route"]["host"] += 1
    return real_route(*a, **k)
def open_route(netns):
    counts["route"][netns] += 1
    return real_open_route(netns)
def plain():
    counts["plain"] += 1
    return real_plain()
ip_lib.IPRoute, ip_lib._open_route, ip_lib._open_plain = route, open_route, plain
for name in ("networks_with_ports", "get_network"):
    def counted(self, *a, _name=name, _real=getattr(api.Registry, name), **k):
        counts[_name] += 1
        return _real(self, *a, **k)
    setattr(api.Registry, name, counted)
def report():
    with open(os.environ["SPY_OUT"], "w") as f:
        json.dump(counts, f)
import atexit
atexit.register(report)
sys.argv = ["mdtool", *sys.argv[1:]]
from mdtool.cli import main
main()
'''


def test_one_command_over_networks_opens_one_socket_per_namespace_and_reads_once(site, tmp_path):
    import subprocess
    import sys
    nets = [site.network(f"e2e-spy{i}", f"10.86.{i}.0/24") for i in range(3)]
    out = tmp_path / "counts.json"

    def spied(*args):
        r = subprocess.run([sys.executable, "-c", SPY, *args], capture_output=True, text=True,
                           timeout=120, env={**os.environ, **site.env, "SPY_OUT": str(out)})
        assert r.returncode == 0, r.stderr
        return json.loads(out.read_text())

    first = spied("enable-isolated-metadata", *nets)
    # every namespace is created, wired and addressed through one RTNL socket of its own
    assert first["route"] == {"host": 1, **{f"qdhcp-{n}": 1 for n in nets}}, first
    assert first["plain"] <= 1 + len(nets), first
    assert first["networks_with_ports"] == 1, first
    # read again only after this run's own write moved the registry (DHCP port, record)
    assert first["get_network"] <= 2 * len(nets), first

    again = spied("enable-isolated-metadata", *nets)  # nothing to do: one read, no writes
    assert again["route"] == {}, again
    assert again["plain"] == 1 + len(nets), again  # the host's links, each namespace read once
    assert (again["networks_with_ports"], again["get_network"]) == (1, 0), again


# One batch (what enable --all runs) over two networks, with the proxy frozen once it serves
# the first: the second network's wait, handed to the batch, fails at its end.
FROZEN_PROXY = r'''
import json, os, signal, sys, time
from mdtool import daemons, enable as en, process
from mdtool.config import Config
from mdtool.netns.ip_lib import Netlink
from mdtool.registry import open_registry
config = Config(None, None, None)
registry = open_registry(config.db_url)
served, stalled = sys.argv[1:3]
with Netlink() as nl, en.batch(config) as b:
    en.enable(config, registry, nl, served, batch=b)
    first = b.take_deferred()
    pid = daemons.manager(config, "proxy").pid
    deadline = time.monotonic() + 20
    while not process.listener_holders(en._proxy_listener(first[0]), pid)[0]:
        assert time.monotonic() < deadline, "the proxy never served the first network"
        time.sleep(0.05)
    os.kill(pid, signal.SIGSTOP)
    try:
        en.enable(config, registry, nl, stalled, batch=b)
        second = b.take_deferred()
        late = b.finish(timeout=1.0)
    finally:
        os.kill(pid, signal.SIGCONT)
print(json.dumps({"first": late.get(id(first[1])), "second": late.get(id(second[1])),
                  "checked": sorted(b.daemons_ok)}))
'''


def test_a_batch_reports_a_network_the_proxy_never_served_and_rolls_it_back(site):
    import subprocess
    import sys
    served = site.network("e2e-batch1", "10.88.1.0/24")
    stalled = site.network("e2e-batch2", "10.88.2.0/24")
    r = subprocess.run([sys.executable, "-c", FROZEN_PROXY, served, stalled], capture_output=True,
                       text=True, timeout=120, env={**os.environ, **site.env})
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["first"] is None, out  # served: done, nothing undone
    err = out["second"]
    assert err.startswith(f"step 'proxy serving' failed: the proxy does not listen on "
                          f"169.254.169.254:80 in qdhcp-{stalled} "), err
    assert "rolled back: " in err and f"create namespace qdhcp-{stalled}" in err, err
    assert "reserve DHCP port on e2e-batch2" in err and "could not undo" not in err, err
    assert out["checked"] == list(sorted(ROLES))
    # the first network serves; nothing of the second is left
    assert netns_exists(f"qdhcp-{served}") and not netns_exists(f"qdhcp-{stalled}")
    assert processes_matching("dnsmasq", served) and not processes_matching("dnsmasq", stalled)
    assert len(site.json("port-list", "--network", served)) == 1
    assert site.json("port-list", "--network", stalled) == []
    assert site.json("net-show", stalled)["hosts"] == []
    # and enable --all makes both whole, each step once per network, the daemons once
    again = json.loads(site.mdtool("enable-isolated-metadata", "--all", "-f", "json").stdout)
    assert [(r["network"], r["ok"]) for r in again] == [("e2e-batch1", True), ("e2e-batch2", True)]
    changed = {r["network"]: [s["step"] for s in r["steps"] if s["changes"]] for r in again}
    assert changed["e2e-batch1"] == [], changed
    assert "namespace" in changed["e2e-batch2"] and "proxy serving" in changed["e2e-batch2"]
    assert netns_exists(f"qdhcp-{stalled}")


def test_an_ipv6_subnet_added_later_is_served_as_soon_as_enable_returns(site):
    """The proxy looks for fe80::a9fe:a9fe in a namespace lacking it only every minute
    when idle; enable, adding that address for a new IPv6 subnet, wakes it to look now.
    (Before: a look every 5 s, so up to 5 s after enable returned.)"""
    import subprocess
    import time

    from tests.e2e.helpers import wait_for
    net = site.network("v6-later", "10.91.0.0/24")
    site.mdtool("enable-isolated-metadata", net)
    ns = f"qdhcp-{net}"

    def v6_listening() -> bool:
        out = subprocess.run(["ip", "netns", "exec", ns, "ss", "-Hltn", "sport = :80"],
                             capture_output=True, text=True, timeout=10).stdout
        return "fe80::a9fe:a9fe" in out
    assert not v6_listening()
    site.mdtool("subnet-create", net, "fd00:91::/64", "--ip-version", "6", "--no-gateway")
    out = site.mdtool("enable-isolated-metadata", net).stderr
    assert "add fe80::a9fe:a9fe/128" in out, out
    returned = time.monotonic()
    wait_for(v6_listening, 1.0, "the proxy on [fe80::a9fe:a9fe%tap]:80 within 1 s of enable")
    assert time.monotonic() - returned < 1.0
