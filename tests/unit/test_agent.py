"""The metadata agent: port lookup, EUI-64, signing and forwarding, index refresh (pure)."""

from __future__ import annotations

import asyncio
import ipaddress
import logging

import pytest

from mdtool import logs, model
from mdtool.agent.handler import AgentHandler, IndexFollower
from mdtool.agent.index import PortIndex, mac_from_link_local, normalize_ip
from mdtool.agent.sign import sign_instance_id
from mdtool.errors import NotFound
from mdtool.http.client import UpstreamTimeout, UpstreamUnavailable
from mdtool.http.types import Request, Response

SECRET = "agent-secret"
NET = "11111111-2222-3333-4444-555555555555"
NET2 = "99999999-2222-3333-4444-555555555555"
VM1 = "0f6c8b4e-2a3d-4d5e-9f10-1a2b3c4d5e6f"
VM2 = "7a6b5c4d-0000-4000-8000-000000000002"


def port(pid, mac, ips, device_id="", owner=model.COMPUTE_OWNER, project="proj-1", net=NET):
    return model.Port(id=pid, name="", network_id=net, mac_address=mac,
                      fixed_ips=[model.FixedIP("sub", ip) for ip in ips], device_id=device_id,
                      device_owner=owner if device_id else "", project_id=project)


def ports():
    return [
        port("dhcp", "fa:16:3e:00:00:01", ["172.17.17.2"], device_id="dhcp-host",
             owner=model.DHCP_OWNER),
        port("p1", "fa:16:3e:00:00:0b", ["172.17.17.11", "fd00:1::b"], device_id=VM1),
        port("p2", "FA:16:3E:00:00:0C", ["172.17.17.12"], device_id=VM2, project=""),
        port("unbound", "fa:16:3e:00:00:0d", ["172.17.17.13"]),
        # Same address on another network: a different instance.
        port("p3", "fa:16:3e:00:00:0b", ["172.17.17.11"], device_id=VM2, net=NET2,
             project="proj-2"),
    ]


# Pure lookups ------------------------------------------------------------------------

@pytest.mark.parametrize("addr,mac", [
    ("fe80::f816:3eff:fe00:b", "fa:16:3e:00:00:0b"),
    ("fe80::f816:3eff:fe12:3456", "fa:16:3e:12:34:56"),
    ("fe80::0211:22ff:fe33:4455", "00:11:22:33:44:55"),
    ("fe80::1", None),  # not EUI-64
    ("fd00::f816:3eff:fe00:b", None),  # not link-local
])
def test_mac_from_link_local(addr, mac):
    assert mac_from_link_local(ipaddress.IPv6Address(addr)) == mac


def test_normalize_ip():
    assert str(normalize_ip("fe80::F816:3eff:fe00:b%tap1")) == "fe80::f816:3eff:fe00:b"
    assert str(normalize_ip("::ffff:172.17.17.11")) == "172.17.17.11"
    assert str(normalize_ip("[fd00:1::b]")) == "fd00:1::b"
    assert normalize_ip("not-an-ip") is None


def test_lookup_ipv4_ipv6_and_link_local():
    idx = PortIndex(ports())
    [m] = idx.lookup(NET, "172.17.17.11")
    assert (m.instance_id, m.project_id, m.port_id) == (VM1, "proj-1", "p1")
    assert idx.lookup(NET, "fd00:1:0::B")[0].port_id == "p1"
    assert idx.lookup(NET, "fe80::f816:3eff:fe00:b")[0].port_id == "p1"
    assert idx.lookup(NET, "fe80::f816:3eff:fe00:c%eth0")[0].port_id == "p2"  # MAC case
    assert idx.lookup(NET2, "172.17.17.11")[0].instance_id == VM2
    assert idx.lookup(NET2, "fe80::f816:3eff:fe00:b")[0].port_id == "p3"


def test_lookup_misses():
    idx = PortIndex(ports())
    assert idx.lookup(NET, "172.17.17.2") == []  # the DHCP port is no instance
    assert idx.lookup(NET, "172.17.17.13") == []  # no device_id
    assert idx.lookup(NET, "172.17.17.99") == []
    assert idx.lookup("other-net", "172.17.17.11") == []
    assert idx.lookup(NET, "garbage") == []
    assert idx.lookup(NET, "fe80::1") == []


def test_project_falls_back_to_the_instance():
    idx = PortIndex(ports(), instance_projects={VM2: "proj-2"})
    assert idx.lookup(NET, "172.17.17.12")[0].project_id == "proj-2"


# Handler -------------------------------------------------------------------------------

class FakeUpstream:
    def __init__(self, response=None, error=None):
        self.response = response or Response(
            200, b'{"uuid": "x"}', [("Content-Type", "application/json"),
                                    ("Connection", "keep-alive"), ("Keep-Alive", "timeout=5"),
                                    ("Transfer-Encoding", "chunked"), ("X-Other", "1")])
        self.error = error
        self.requests = []

    async def request(self, method, target, headers, body):
        self.requests.append((method, target, headers, body))
        if self.error:
            raise self.error
        return self.response


def agent_req(path="/openstack/latest/meta_data.json", net=NET, src="172.17.17.11",
              extra=(), method="GET", body=b""):
    headers = [("Host", "169.254.169.254"), ("Accept", "*/*")]
    if net is not None:
        headers.append(("X-Neutron-Network-ID", net))
    if src is not None:
        headers.append(("X-Forwarded-For", src))
    headers += list(extra)
    return Request(method, path, headers, body)


def serve(req, upstream=None, idx=None):
    upstream = upstream or FakeUpstream()
    idx = idx or PortIndex(ports())
    handler = AgentHandler(lambda: idx, upstream, SECRET)
    resp = asyncio.run(handler.handle(req))
    logs.flush_deferred()  # the access lines wait a few ms (logs.DeferredLines)
    return resp, upstream


def sent_headers(upstream):
    return upstream.requests[0][2]


def test_missing_network_header_is_400():
    resp, up = serve(agent_req(net=None))
    assert resp.status == 400 and not up.requests


def test_missing_forwarded_for_is_400():
    resp, up = serve(agent_req(src=None))
    assert resp.status == 400 and not up.requests


@pytest.mark.parametrize("src", ["172.17.17.99", "172.17.17.2", "172.17.17.13", "fe80::1"])
def test_unknown_source_is_404(src):
    resp, up = serve(agent_req(src=src))
    assert resp.status == 404
    assert resp.body.decode() == f"Instance was not found on network {NET}"
    assert not up.requests


def test_ambiguous_source_is_404(caplog):
    dup = ports() + [port("p9", "fa:16:3e:00:00:99", ["172.17.17.11"], device_id=VM2)]
    with caplog.at_level(logging.WARNING, "mdtool.agent"):
        resp, up = serve(agent_req(), idx=PortIndex(dup))
    assert resp.status == 404
    assert resp.body.decode() == f"Instance was not found on network {NET}"
    assert not up.requests
    assert "2 ports match" in caplog.text


def test_forwards_signed_request_and_relays_answer():
    resp, up = serve(agent_req("/latest/meta-data/?x=1"))
    method, target, headers, body = up.requests[0]
    assert (method, target, body) == ("GET", "/latest/meta-data/?x=1", b"")
    h = {k: v for k, v in headers}
    assert h["X-Instance-ID"] == VM1
    assert h["X-Tenant-ID"] == "proj-1"
    assert h["X-Instance-ID-Signature"] == sign_instance_id(SECRET, VM1)
    assert h["X-Forwarded-For"] == "172.17.17.11"
    assert h["Accept"] == "*/*"
    assert "Host" not in h and "X-Neutron-Network-ID" not in h
    assert resp.status == 200 and resp.body == b'{"uuid": "x"}'
    names = [k.lower() for k, _ in resp.headers]
    assert names == ["content-type", "x-other"]  # hop-by-hop dropped


def test_client_identity_headers_are_overwritten():
    forged = [("X-Instance-ID", VM2), ("x-tenant-id", "proj-2"),
              ("X-Instance-ID-Signature", sign_instance_id(SECRET, VM2)),
              ("X-Neutron-Router-ID", "r"), ("X-Quantum-Network-ID", NET2),
              ("Connection", "x-instance-id")]
    resp, up = serve(agent_req(extra=forged))
    headers = sent_headers(up)
    for name in ("x-instance-id", "x-tenant-id", "x-instance-id-signature", "x-forwarded-for"):
        assert [v for k, v in headers if k.lower() == name] != [], name
        assert len([v for k, v in headers if k.lower() == name]) == 1, name
    h = {k.lower(): v for k, v in headers}
    assert h["x-instance-id"] == VM1 and h["x-tenant-id"] == "proj-1"
    assert not any(k.lower().startswith(("x-neutron", "x-quantum", "connection"))
                   for k, _ in headers)


def test_spoofed_forwarded_for_before_the_proxys_is_ignored():
    # haproxy's "option forwardfor" appends: the trusted address is the last one.
    req = agent_req(src=None, extra=[("X-Forwarded-For", "172.17.17.12"),
                                     ("X-Forwarded-For", "172.17.17.11")])
    resp, up = serve(req)
    assert {k: v for k, v in sent_headers(up)}["X-Instance-ID"] == VM1
    resp, up = serve(agent_req(src="172.17.17.12, 172.17.17.11"))
    assert {k: v for k, v in sent_headers(up)}["X-Instance-ID"] == VM1


def test_link_local_source_is_forwarded_for_its_port():
    resp, up = serve(agent_req(src="fe80::f816:3eff:fe00:b"))
    h = {k: v for k, v in sent_headers(up)}
    assert h["X-Instance-ID"] == VM1 and h["X-Forwarded-For"] == "fe80::f816:3eff:fe00:b"


def test_post_body_is_forwarded():
    resp, up = serve(agent_req("/openstack/latest/password", method="POST", body=b"pw",
                               extra=[("Content-Length", "2")]))
    method, target, headers, body = up.requests[0]
    assert (method, body) == ("POST", b"pw")
    assert "content-length" not in [k.lower() for k, _ in headers]


@pytest.mark.parametrize("status", [400, 403, 404, 409, 500])
def test_upstream_statuses_are_relayed(status):
    resp, _ = serve(agent_req(), FakeUpstream(Response.text(status, "nova says")))
    assert resp.status == status and resp.body == b"nova says"


def test_upstream_unreachable_is_503():
    resp, _ = serve(agent_req(), FakeUpstream(error=UpstreamUnavailable("refused")))
    assert resp.status == 503 and resp.body


def test_upstream_timeout_is_504():
    resp, _ = serve(agent_req(), FakeUpstream(error=UpstreamTimeout("slow")))
    assert resp.status == 504 and resp.body


def test_one_log_line_per_request(caplog):
    with caplog.at_level(logging.INFO, "mdtool.agent"):
        serve(agent_req("/latest/meta-data/instance-id"))
    lines = [r.getMessage() for r in caplog.records if r.name == "mdtool.agent"]
    assert len(lines) == 1
    for part in (f"network={NET}", "source=172.17.17.11", f"instance={VM1}",
                 "/latest/meta-data/instance-id", "status=200", "ms="):
        assert part in lines[0]


# Index refresh ----------------------------------------------------------------------

class FakeRegistry:
    def __init__(self):
        self.rev = 1
        self.ports = ports()
        self.builds = 0

    def revision(self):
        return self.rev

    def list_ports(self, network=None):
        self.builds += 1
        return list(self.ports)

    def get_instance(self, ref):
        if ref == VM2:
            return model.Instance(id=VM2, name="vm2", hostname="vm2", project_id="proj-2")
        raise NotFound(ref)


def test_follower_rebuilds_only_when_revision_moves():
    reg = FakeRegistry()
    follower = IndexFollower(reg)

    async def scenario():
        assert await follower.refresh() is True
        assert follower().lookup(NET, "172.17.17.12")[0].project_id == "proj-2"
        assert await follower.refresh() is False
        assert reg.builds == 1
        # A port moves to another address, through the CLI: revision bumps.
        reg.ports = [p for p in reg.ports if p.id != "p1"] + [
            port("p1", "fa:16:3e:00:00:0b", ["172.17.17.21"], device_id=VM1)]
        reg.rev += 1
        assert await follower.refresh() is True
        assert follower().lookup(NET, "172.17.17.11") == []
        assert follower().lookup(NET, "172.17.17.21")[0].instance_id == VM1

    asyncio.run(scenario())
    follower.close()


def test_follower_run_picks_up_changes_within_a_second():
    reg = FakeRegistry()
    follower = IndexFollower(reg, interval=0.05)

    async def scenario():
        stop = asyncio.Event()
        task = asyncio.create_task(follower.run(stop))
        await asyncio.sleep(0.1)
        assert follower().lookup(NET, "172.17.17.11")
        reg.ports = []
        reg.rev += 1
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 1.0
        while follower().lookup(NET, "172.17.17.11") and loop.time() < deadline:
            await asyncio.sleep(0.01)
        assert follower().lookup(NET, "172.17.17.11") == []
        stop.set()
        await task

    asyncio.run(scenario())
    follower.close()


def test_follower_keeps_last_index_when_registry_fails():
    reg = FakeRegistry()
    follower = IndexFollower(reg, interval=0.02)

    async def scenario():
        await follower.refresh()
        reg.revision = lambda: (_ for _ in ()).throw(RuntimeError("db gone"))
        stop = asyncio.Event()
        task = asyncio.create_task(follower.run(stop))
        await asyncio.sleep(0.1)
        assert follower().lookup(NET, "172.17.17.11")
        stop.set()
        await task

    asyncio.run(scenario())
    follower.close()


def test_repeated_404s_of_one_source_are_summarised(caplog, monkeypatch):
    """An instance asking again and again for what it may not have: the first 404 is a
    line, the rest one summary per window, reported with a later request."""
    from mdtool.agent import handler as agent_handler
    from mdtool.agent.handler import AgentHandler
    clock = [100.0]
    monkeypatch.setattr(agent_handler.time, "monotonic", lambda: clock[0])
    idx = PortIndex(ports())
    h = AgentHandler(lambda: idx, FakeUpstream(), SECRET)

    async def many():
        for _ in range(1000):
            await h.handle(agent_req(src="172.17.17.99"))
            clock[0] += 0.001
        clock[0] = 111.0
        await h.handle(agent_req())  # another source, a 200: it brings the summary out

    with caplog.at_level(logging.INFO, "mdtool.agent"):
        asyncio.run(many())
        logs.flush_deferred()
    lines = [r.getMessage() for r in caplog.records if r.name == "mdtool.agent"]
    assert len(lines) == 3, lines
    assert "source=172.17.17.99" in lines[0] and "status=404" in lines[0]
    assert lines[1] == f"network={NET} source=172.17.17.99: 999 more 404 in 11 s"
    assert "status=200" in lines[2]
