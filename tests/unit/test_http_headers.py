"""Upstream headers come from one allow-list, used by the proxy, the agent and the client."""

from __future__ import annotations

import asyncio

import pytest

from mdtool.agent import handler as agent_handler
from mdtool.agent.index import PortIndex
from mdtool.agent.sign import sign_instance_id
from mdtool.http import client, headers
from mdtool.http.types import Request
from mdtool.proxy import rules
from tests.unit.test_agent import NET, SECRET, VM1, FakeUpstream, ports

# What an instance can send that Nova would read as identity: every spelling a WSGI
# server folds onto the same key, and the load-balancer path's headers.
SMUGGLED = [("X_Forwarded_For", "172.17.17.12"), ("X_Instance_ID", "victim"),
            ("x_tenant_id", "admin"), ("X_Instance_ID_Signature", "00"),
            ("X-Metadata-Provider", "lb-1"), ("X-Metadata-Provider-Signature", "00"),
            ("X_Metadata_Provider", "lb-1"), ("X_Neutron_Network_ID", "other"),
            ("X-Instance-ID", "victim"), ("X-Tenant-ID", "admin")]
HARMLESS = [("Host", "169.254.169.254"), ("User-Agent", "curl/8"), ("Accept", "*/*"),
            ("Content_Type", "x"), ("Cookie", "a=b"), ("Connection", "keep-alive"),
            ("Content-Type", "text/plain"), ("Transfer-Encoding", "chunked"),
            ("X-Other", "1")]


def test_agent_builds_upstream_headers_from_the_allow_list():
    req = Request("POST", "/openstack/latest/password",
                  [("X-Neutron-Network-ID", NET), *SMUGGLED, *HARMLESS,
                   ("X-Forwarded-For", "172.17.17.11")], b"pw")
    upstream = FakeUpstream()
    handler = agent_handler.AgentHandler(lambda: PortIndex(ports()), upstream, SECRET)
    resp = asyncio.run(handler.handle(req))
    assert resp.status == 200
    sent = upstream.requests[0][2]
    assert sent == [("User-Agent", "curl/8"), ("Accept", "*/*"), ("Content-Type", "text/plain"),
                    ("X-Forwarded-For", "172.17.17.11"), ("X-Instance-ID", VM1),
                    ("X-Tenant-ID", "proj-1"),
                    ("X-Instance-ID-Signature", sign_instance_id(SECRET, VM1))]


def test_proxy_passes_only_the_allow_list_and_states_identity():
    out = rules.upstream_headers([*SMUGGLED, *HARMLESS], "10.0.0.5", "net-1")
    assert out == [("User-Agent", "curl/8"), ("Accept", "*/*"), ("Content-Type", "text/plain"),
                   ("X-Forwarded-For", "10.0.0.5"), ("X-Neutron-Network-ID", "net-1")]


@pytest.mark.parametrize("name", [n for n, _ in SMUGGLED])
def test_every_spelling_of_identity_is_forged(name):
    assert rules.is_forged(name) and headers.is_identity(name)


@pytest.mark.parametrize("name", ["Host", "Accept", "X-Tenant", "X-Forwarded-Host",
                                  "X-Metadata", "Content-Type"])
def test_other_fields_are_not_identity(name):
    assert not headers.is_identity(name)


def test_one_source_for_every_hop():
    # The agent, the proxy and the client use the list of headers.py, not copies of it.
    assert agent_handler.HOP_BY_HOP is headers.HOP_BY_HOP
    assert client._HOP_BY_HOP is headers.HOP_BY_HOP
    assert rules._HOP_BY_HOP is headers.HOP_BY_HOP
    assert rules.FORWARDED_FOR == headers.FORWARDED_FOR
    assert rules.NETWORK_ID == headers.NETWORK_ID
    for module in (agent_handler, client, rules):
        names = {k for k, v in vars(module).items() if isinstance(v, frozenset)}
        assert all(vars(module)[k] is getattr(headers, k.lstrip("_"), None) for k in names), \
            f"{module.__name__} keeps its own header set: {names}"


def test_client_never_sends_or_relays_hop_by_hop_fields():
    raw = client.UpstreamPool._encode_request(
        "GET", "/", [("Connection", "close"), ("TE", "trailers"), ("Trailers", "x"),
                     ("Proxy-Authorization", "x"), ("Accept", "*/*")], b"", "h")
    assert raw == b"GET / HTTP/1.1\r\nAccept: */*\r\nHost: h\r\n\r\n"


def test_inspect_probes_are_tagged_by_their_user_agent():
    assert headers.probe_tag("mdtool-inspect/0.2.0") == " probe=mdtool-inspect"
    assert headers.probe_tag("curl/8") == "" and headers.probe_tag(None) == ""
