"""The per-instance view's verdicts (pure), from hand-made views."""

from mdtool import model, plugs
from mdtool.accesslog import parse
from mdtool.inspect import instance
from mdtool.inspect.instance import InstanceView, Lease, parse_leases
from mdtool.netns.ip_lib import Route

NET, SUB = "11111111-2222-3333-4444-555555555555", "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
PORT, VM = "p0000000-0000-4000-8000-000000000001", "99999999-0000-0000-0000-000000000000"
MAC = "fa:16:3e:00:00:05"


def view(**kw) -> InstanceView:
    port = model.Port(PORT, "", NET, MAC, [model.FixedIP(SUB, "172.17.17.5")], device_id=VM)
    v = InstanceView("net1", port, None, "/s/host",
                     [f"{MAC},host-172-17-17-5.openstacklocal.,172.17.17.5"], "/s/leases",
                     [Lease(1900000000, MAC, "172.17.17.5")], ["172.17.17.2"],
                     plug=plugs.Plug(PORT, NET, "vm1ns", "eth0", "brq1"), plug_ns_exists=True,
                     routes=[Route("169.254.169.254", 32, "172.17.17.2", "eth0", 4),
                             Route("172.17.17.0", 24, None, "eth0", 4)],
                     last=parse(f"2026-12-02 10:00:00,100 INFO mdtool.proxy.access: network={NET} "
                                "src=172.17.17.5 GET /latest/meta-data/ 200 1.2ms"))
    for k, val in kw.items():
        setattr(v, k, val)
    return v


def statuses(v) -> dict[str, str]:
    return {c.name: c.status for c in instance.evaluate(v)}


def test_healthy_instance():
    assert set(statuses(view()).values()) == {"ok"}


def test_leases_file_parsing():
    assert parse_leases(f"0 {MAC} 172.17.17.5 * *\n1900000000 {MAC} 172.17.17.6 vm1 01:aa\nx\n") == [
        Lease(0, MAC, "172.17.17.5"), Lease(1900000000, MAC, "172.17.17.6")]


def test_seeded_lease_is_a_warning_and_a_foreign_one_a_failure():
    assert statuses(view(leases=[Lease(0, MAC, "172.17.17.5")]))["lease"] == "warn"
    assert statuses(view(leases=[Lease(1, MAC, "172.17.17.9")]))["lease"] == "fail"
    assert statuses(view(leases=[]))["lease"] == "warn"


def test_only_a_default_route_is_no_metadata_route():
    v = view(routes=[Route("0.0.0.0", 0, "172.17.17.1", "eth0", 4)])
    c = {c.name: c for c in instance.evaluate(v)}["route to 169.254.169.254 in the instance"]
    assert c.status == "fail" and "default via 172.17.17.1" in c.detail
    assert "udhcpc -i eth0 -O staticroutes" in c.fix


def test_route_via_another_server():
    v = view(routes=[Route("169.254.169.254", 32, "172.17.17.3", "eth0", 4)])
    assert statuses(v)["route to 169.254.169.254 in the instance"] == "fail"


def test_not_in_the_host_file_hides_the_lease_verdict():
    got = statuses(view(host_lines=[]))
    assert got["MAC in dnsmasq's host file"] == "fail" and got["lease"] == "skip"


def test_failed_request_is_a_warning():
    last = parse(f"2026-12-02 10:00:00,100 INFO mdtool.proxy.access: network={NET} "
                 "src=172.17.17.5 GET /latest/meta-data/ 404 1.2ms")
    assert statuses(view(last=last))["last metadata request"] == "warn"
    assert statuses(view(last=None))["last metadata request"] == "warn"
