"""inspect against a real enable-isolated-metadata: green, then each daemon SIGKILLed in
turn is named with its fix, and enable makes it green again. Real namespace, dnsmasq,
daemons and HTTP; teardown always disables the network and kills what is left."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys

import pytest

from tests.e2e.helpers import (Cleanup, make_state_dir, netns_exists, processes_matching,
                               requires, wait_for)

pytestmark = requires("ip", "dnsmasq")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Mdtool:
    def __init__(self, state_dir, metadata_port: int):
        self.state_dir = state_dir
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith("MDTOOL_")}
        # Our own metadata port: another state dir's metadata service must not answer ours.
        self.env.update(MDTOOL_STATE_DIR=str(state_dir), MDTOOL_CONFIG="/dev/null",
                        MDTOOL_METADATA_LISTEN_PORT=str(metadata_port),
                        MDTOOL_NOVA_METADATA_PORT=str(metadata_port))

    def __call__(self, *args, check=True, timeout=60) -> subprocess.CompletedProcess:
        r = subprocess.run([sys.executable, "-m", "mdtool", *map(str, args)], env=self.env,
                           capture_output=True, text=True, timeout=timeout,
                           stdin=subprocess.DEVNULL)
        if check and r.returncode != 0:
            raise AssertionError(f"mdtool {' '.join(map(str, args))}: exit {r.returncode}\n"
                                 f"{r.stdout}\n{r.stderr}")
        return r

    def inspect(self, net: str) -> tuple[int, dict]:
        r = self("inspect", net, "-f", "json", check=False, timeout=30)
        assert r.returncode in (0, 1), r.stderr
        return r.returncode, json.loads(r.stdout)


def _pid(path) -> int:
    return int(open(path).read().split()[0])


def _kill(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not os.path.exists(f"/proc/{pid}") or
             open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] == "Z",
             5, f"pid {pid} gone")


@pytest.fixture
def setup():
    cleanup = Cleanup()
    state = make_state_dir(cleanup)
    m = Mdtool(state, _free_port())
    # Registered first, so they run last: kill whatever of this state dir survived.
    cleanup.processes(str(state))
    net_name = f"insp-{os.urandom(4).hex()}"
    cidr = f"10.{random.randint(100, 250)}.{random.randint(0, 255)}.0/24"
    net_id = m("net-create", net_name, "-f", "value", "-c", "id").stdout.strip()
    cleanup.nft_table(net_id)
    cleanup.add("no namespace left", lambda: None)  # placeholder, checked in the test body
    cleanup.add("disable", lambda: m("disable-isolated-metadata", net_id, check=False))
    try:
        m("subnet-create", net_id, cidr, "--no-gateway", "--name", "sub1")
        inst = m("instance-create", "vm-" + net_name, "-f", "value", "-c", "id").stdout.strip()
        port = json.loads(m("port-create", net_id, "--device-id", inst, "-f", "json").stdout)
        yield m, net_id, inst, port
    finally:
        try:
            cleanup.run()
        finally:
            leftovers = [n for n in os.listdir("/run/netns") if net_id in n] \
                if os.path.isdir("/run/netns") else []
            assert not leftovers, f"namespaces left behind: {leftovers}"
            assert not processes_matching(str(state)), "processes left behind"


def _assert_green(m, net_id, inst, port):
    code, d = m.inspect(net_id)
    failed = [c for c in d["checks"] if c["status"] != "ok"]
    assert code == 0 and not failed, json.dumps(failed, indent=1)
    ns = f"qdhcp-{net_id}"
    assert d["network"]["id"] == net_id
    assert d["namespace"] == {"name": ns, "present": True, "error": None}
    cidrs = [a["cidr"] for a in d["addresses"]]
    assert "169.254.169.254/32" in cidrs
    tap = d["dhcp_port"]["tap"]
    assert any(a["ifname"] == tap and a["cidr"].startswith(d["dhcp_port"]["fixed_ips"][0] + "/")
               for a in d["addresses"])
    subnet = port["fixed_ips"][0]["ip_address"].rsplit(".", 1)[0] + ".0"
    assert any(r["destination"] == subnet and r["genmask"] == "255.255.255.0"
               and r["iface"] == tap and r["flags"] == "U" for r in d["routes"]), d["routes"]
    proxy_pid = d["daemons"]["proxy"]["pid"]
    assert d["daemons"]["proxy"]["running"] and proxy_pid
    assert any(s["local"] == "169.254.169.254:80" and s["state"] == "LISTEN"
               and s["pid"] == proxy_pid and s["program"] == "mdtool-proxy"
               for s in d["listening"]), d["listening"]
    dm = d["dnsmasq"]
    assert dm["running"] and dm["pid"] and dm["cmdline_current"]
    assert any(s["pid"] == dm["pid"] and s["program"] == "dnsmasq" for s in d["listening"])
    assert all(f["current"] for f in dm["files"].values())
    assert any(f"169.254.169.254/32,{d['dhcp_port']['fixed_ips'][0]}" in l for l in dm["opts"])
    assert all(d["daemons"][r]["running"] for r in ("metadata", "agent", "proxy"))
    p = d["probe"]
    assert p["port"] == port["id"] and p["instance_id"] == inst
    assert p["agent"]["status"] == 200 and p["agent"]["uuid"] == inst and p["agent"]["ok"]
    assert p["proxy"]["status"] is not None and p["proxy"]["ok"]
    assert d["ok"] is True
    return d


# which check must fail when a piece dies
PIECES = [("dnsmasq", "dnsmasq running"), ("proxy", "proxy listening on :80"),
          ("agent", "agent socket answers"), ("metadata", "metadata service answers")]


def test_inspect_green_then_each_dead_daemon_is_named_and_fixed(setup):
    m, net_id, inst, port = setup
    m("enable-isolated-metadata", net_id)
    _assert_green(m, net_id, inst, port)

    for piece, check in PIECES:
        if piece == "dnsmasq":
            pid = _pid(m.state_dir / "dhcp" / net_id / "pid")
        else:
            pid = _pid(m.state_dir / f"{piece}.pid")
        _kill(pid)
        code, d = m.inspect(net_id)
        assert code == 1, f"{piece} killed but inspect exit {code}"
        failed = {c["name"]: c for c in d["checks"] if c["status"] == "fail"}
        assert check in failed, f"{piece} killed: failed checks {list(failed)}"
        assert piece in check
        assert "enable-isolated-metadata" in failed[check]["fix"]
        assert not d["ok"]
        m("enable-isolated-metadata", net_id)
        _assert_green(m, net_id, inst, port)

    # No instance ever asked: every request in the daemons' logs is inspect's, and tagged.
    from mdtool.accesslog import read
    lines = list(read([m.state_dir / "log" / f"{r}.log" for r in ("proxy", "agent", "metadata")]))
    assert {a.role for a in lines} == {"proxy", "agent", "metadata"}
    assert [a.line() for a in lines if not a.probe] == []

    m("disable-isolated-metadata", net_id)
    assert not netns_exists(f"qdhcp-{net_id}")


def _failures(d) -> list[tuple[str, str]]:
    return [(c["name"], c["fix"]) for c in d["checks"] if c["status"] == "fail"]


def test_each_fault_gives_one_cause_and_its_fix_repairs_it(setup):
    """A DHCP veth taken off its bridge (the tap keeps its carrier: it used to look all ok),
    and a removed opts file (it gave two causes with two fixes): one failing check each."""
    m, net_id, inst, port = setup
    m("enable-isolated-metadata", net_id)
    d = _assert_green(m, net_id, inst, port)
    end = "ns-" + d["dhcp_port"]["id"][:11]
    subprocess.run(["ip", "link", "set", end, "nomaster"], check=True)
    code, d = m.inspect(net_id)
    assert code == 1
    name = d["network"]["name"]  # fixes name the network by its (unique) name
    assert _failures(d) == [("DHCP port on the bridge", f"mdtool enable-isolated-metadata {name}")]
    fail = next(c for c in d["checks"] if c["status"] == "fail")
    assert f"{end} is not on bridge" in fail["detail"] and "nomaster" in fail["cause"]
    m("enable-isolated-metadata", net_id)
    _assert_green(m, net_id, inst, port)

    (m.state_dir / "dhcp" / net_id / "opts").unlink()
    code, d = m.inspect(net_id)
    assert code == 1
    assert _failures(d) == [("dnsmasq runs with the current files", f"mdtool dnsmasq reload {name}")]
    assert {c["name"]: c["status"] for c in d["checks"]}["opts carry the metadata route"] == "skip"
    m("dnsmasq", "reload", net_id)
    _assert_green(m, net_id, inst, port)
