"""inspect's verdicts (pure): each check judged from a hand-made Observation."""

import dataclasses

import pytest

from mdtool import model
from mdtool.inspect import checks
from mdtool.inspect.observe import DaemonState, DnsmasqState, FileState, Observation, ProbeState
from mdtool.inspect.probe import Answer
from mdtool.inspect.procnet import Socket
from mdtool.netns import portsec
from mdtool.netns.ip_lib import Address, Link

NET = "11111111-2222-3333-4444-555555555555"
SUB = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
DHCP = "dddddddd-0000-0000-0000-000000000000"
TAP = "tapdddddddd-00"
INST = "99999999-0000-0000-0000-000000000000"


def healthy() -> Observation:
    sub = model.Subnet(SUB, "sub1", NET, "172.17.17.0/24", 4, None, True)
    port = model.Port(DHCP, "", NET, "fa:16:3e:00:00:01", [model.FixedIP(SUB, "172.17.17.1")],
                      device_owner=model.DHCP_OWNER, host="node1")
    net = model.Network(NET, "net1", "brq1", 1500, subnets=[sub], ports=[port])
    opts = [f"tag:subnet-{SUB},option:classless-static-route,169.254.169.254/32,172.17.17.1",
            f"tag:subnet-{SUB},249,169.254.169.254/32,172.17.17.1", f"tag:subnet-{SUB},option:router"]
    argv = ["dnsmasq", "--no-hosts", f"--interface={TAP}"]
    return Observation(
        ref="net1", network=net, host="node1", namespace="qdhcp-" + NET, namespace_exists=True,
        dhcp_port=port, tap=TAP,
        links=[Link(2, TAP, "veth", None, 1500, True, None, None, "UP", 0x11043)],
        bridge=Link(5, "brq1", "bridge", None, 1500, True, None, "mdtool:" + NET, "UP", 0x11043),
        bridge_end=Link(6, "nsdddddddd-00", "veth", None, 1500, True, "brq1", None, "UP", 0x11043),
        addresses=[Address(TAP, "172.17.17.1", 24, 4, 0), Address(TAP, "169.254.169.254", 32, 4, 0)],
        sockets=[Socket("tcp", "169.254.169.254", 80, "0.0.0.0", 0, "LISTEN", 0, 0, 7,
                        pid=300, program="mdtool-proxy")],
        dnsmasq=DnsmasqState(100, argv, argv[1:], {"opts": FileState("/x/opts", True, True)},
                             opts, "/x/pid", "/x/log"),
        daemons={r: DaemonState(r, pid, f"/s/{r}.pid", f"/s/log/{r}.log")
                 for r, pid in (("metadata", 100), ("agent", 200), ("proxy", 300))},
        agent_socket="/s/metadata_proxy", agent=Answer(404), metadata_url="http://127.0.0.1:8775",
        metadata=Answer(400), secret=Answer(200),
        probe=ProbeState("p1", "172.17.17.5", INST, "proj", Answer(200, b'{"uuid": "%s"}' % INST.encode()),
                         Answer(404)),
        port_security=portsec.State("mdtool-" + NET),
    )


def verdicts(o):
    return {c.name: c for c in checks.evaluate(o)}


def test_healthy_is_all_ok():
    got = verdicts(healthy())
    assert [c.status for c in got.values()] == ["ok"] * len(checks.CHECKS), got
    assert got["proxy listening on :80"].detail == "169.254.169.254:80 by 300/mdtool-proxy"


def test_missing_namespace():
    o = dataclasses.replace(healthy(), namespace_exists=False, links=[], addresses=[], sockets=[])
    got = verdicts(o)
    c = got["namespace exists"]
    assert c.status == "fail" and c.fix == "mdtool enable-isolated-metadata net1"
    # one cause: what needs the namespace is not judged
    assert got["DHCP port up"].status == "skip"
    assert got["proxy listening on :80"].status == "skip"
    assert [c.name for c in got.values() if c.status == "fail"] == ["namespace exists"]


def test_tap_down_and_missing_address():
    o = healthy()
    o.links = [dataclasses.replace(o.links[0], flags=0x1002, oper_state="DOWN")]
    assert verdicts(o)["DHCP port up"].status == "fail"
    o = healthy()
    o.addresses = o.addresses[:1]
    c = verdicts(o)["169.254.169.254 present"]
    assert c.status == "fail" and "169.254.169.254/32" in c.detail


def test_dead_dnsmasq():
    o = healthy()
    o.dnsmasq = dataclasses.replace(o.dnsmasq, pid=None, cmdline=None)
    got = verdicts(o)
    assert got["dnsmasq running"].status == "fail"
    assert "enable-isolated-metadata" in got["dnsmasq running"].fix
    assert got["dnsmasq runs with the current files"].status == "skip"


@pytest.mark.parametrize("change", ["cmdline", "file"])
def test_stale_dnsmasq_is_fixed_by_reload(change):
    o = healthy()
    if change == "cmdline":
        o.dnsmasq.expected_cmdline = ["--no-hosts", "--interface=other"]
    else:
        o.dnsmasq.files["opts"] = FileState("/x/opts", True, False)
    c = verdicts(o)["dnsmasq runs with the current files"]
    assert c.status == "fail" and c.fix == "mdtool dnsmasq reload net1"


def test_opts_without_metadata_route():
    o = healthy()
    o.dnsmasq.opts_lines = [f"tag:subnet-{SUB},option:router"]
    c = verdicts(o)["opts carry the metadata route"]
    assert c.status == "fail" and "169.254.169.254/32,172.17.17.1" in c.detail


def test_dead_proxy_names_the_pid_file():
    o = healthy()
    o.sockets = []
    o.daemons["proxy"] = DaemonState("proxy", None, "/s/proxy.pid", "/s/log/proxy.log")
    c = verdicts(o)["proxy listening on :80"]
    assert c.status == "fail" and "mdtool proxy is not running" in c.cause
    assert c.fix == "mdtool enable-isolated-metadata net1"


def test_foreign_proxy_holding_the_port():
    o = healthy()
    o.sockets = [dataclasses.replace(o.sockets[0], pid=999, program="mdtool-proxy")]
    c = verdicts(o)["proxy listening on :80"]
    assert c.status == "fail" and c.fix.startswith("kill 999")


def test_dead_agent():
    o = healthy()
    o.agent = Answer(None, error="Connection refused")
    o.daemons["agent"] = DaemonState("agent", None, "/s/agent.pid", "/s/log/agent.log")
    o.probe.agent = Answer(None, error="Connection refused")
    got = verdicts(o)
    assert got["agent socket answers"].status == "fail"
    assert "mdtool agent is not running" in got["agent socket answers"].cause
    assert got["probe: agent as port 172.17.17.5"].status == "skip"


def test_dead_metadata_leaves_the_secret_unjudged():
    o = healthy()
    o.metadata = Answer(None, error="Connection refused")
    o.secret = Answer(None, error="Connection refused")
    o.daemons["metadata"] = DaemonState("metadata", None, "/s/metadata.pid", "/s/log/m.log")
    o.probe.agent = Answer(503)
    got = verdicts(o)
    assert got["metadata service answers"].status == "fail"
    assert "enable-isolated-metadata" in got["metadata service answers"].fix
    assert got["shared secret agrees"].status == "skip"
    assert got["probe: agent as port 172.17.17.5"].status == "skip"
    assert [c.name for c in got.values() if c.status == "fail"] == ["metadata service answers"]


def test_someone_else_on_the_metadata_port():
    o = healthy()
    o.daemons["metadata"] = DaemonState("metadata", None, "/s/metadata.pid", "/s/log/m.log")
    assert verdicts(o)["metadata service answers"].status == "fail"


def test_remote_nova_down_is_not_fixed_by_enable():
    o = dataclasses.replace(healthy(), metadata_local=False, metadata_url="http://nova:8775",
                            metadata=Answer(None, error="timed out"))
    c = verdicts(o)["metadata service answers"]
    assert c.status == "fail" and "nova:8775" in c.fix


@pytest.mark.parametrize("status,verdict", [(200, "ok"), (404, "ok"), (403, "fail"), (500, "warn")])
def test_secret_verdicts(status, verdict):
    o = healthy()
    o.secret = Answer(status)
    assert verdicts(o)["shared secret agrees"].status == verdict


def test_probe_for_another_instance_fails():
    o = healthy()
    o.probe.agent = Answer(200, b'{"uuid": "someone-else"}')
    assert verdicts(o)["probe: agent as port 172.17.17.5"].status == "fail"


def test_no_instance_port_skips_the_probe_with_a_warning():
    o = healthy()
    o.probe = ProbeState(skipped="no port with an instance", proxy=Answer(404))
    o.secret, o.secret_note = None, "no instance"
    got = verdicts(o)
    assert got["probe: agent as port"].status == "warn"
    assert all(c.ok for c in got.values())


def test_dead_proxy_while_another_holds_the_port():
    o = healthy()
    o.sockets = [dataclasses.replace(o.sockets[0], pid=999)]
    o.daemons["proxy"] = DaemonState("proxy", None, "/s/proxy.pid", "/s/log/proxy.log", 300)
    c = verdicts(o)["proxy listening on :80"]
    assert c.status == "fail" and "died" in c.cause and "999" in c.detail
    assert c.fix == "mdtool enable-isolated-metadata net1"


def test_dhcp_veth_taken_off_its_bridge_is_a_failure():
    """ip link set ns-… nomaster: the tap still has carrier, but nothing reaches it."""
    o = healthy()
    o.bridge_end = dataclasses.replace(o.bridge_end, master=None)
    got = verdicts(o)
    c = got["DHCP port on the bridge"]
    assert c.status == "fail" and "nsdddddddd-00 is not on bridge brq1 (master: none)" in c.detail
    assert "nomaster" in c.cause and c.fix == "mdtool enable-isolated-metadata net1"
    assert [x.name for x in got.values() if x.status == "fail"] == ["DHCP port on the bridge"]


def test_missing_bridge():
    o = healthy()
    o.bridge = None
    assert verdicts(o)["DHCP port on the bridge"].status == "fail"


def test_removed_opts_file_is_one_cause_with_one_fix():
    """rm opts: dnsmasq's files are stale (fix: reload); the missing route is its consequence."""
    o = healthy()
    o.dnsmasq.files["opts"] = FileState("/x/opts", False, False)
    o.dnsmasq.opts_lines = None
    got = verdicts(o)
    failed = [c for c in got.values() if c.status == "fail"]
    assert [(c.name, c.fix) for c in failed] == [("dnsmasq runs with the current files",
                                                 "mdtool dnsmasq reload net1")]
    assert got["opts carry the metadata route"].status == "skip"
    assert "needs 'dnsmasq runs with the current files'" in got["opts carry the metadata route"].detail


def test_every_check_depends_only_on_earlier_ones():
    seen = set()
    for check, needs in checks.CHECKS:
        assert set(needs) <= seen, check.__name__
        seen.add(check)
