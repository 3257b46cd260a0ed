"""The fast path (metadata_backend = local): the proxy's upstream is the agent's and the
metadata service's own code in-process, over a real SQLite registry."""

from __future__ import annotations

import asyncio
import json

import pytest

from mdtool.config import Config
from mdtool.http import headers as fields
from mdtool.registry import open_registry


@pytest.fixture
def node(tmp_path, monkeypatch):
    for var in ("MDTOOL_DB", "MDTOOL_CONFIG", "MDTOOL_NOVA_METADATA_URL", "MDTOOL_NOVA_METADATA_HOST",
                "MDTOOL_METADATA_BACKEND"):
        monkeypatch.delenv(var, raising=False)
    config = Config(state_dir=str(tmp_path / "state"), config_file="/dev/null")
    reg = open_registry(config.db_url)
    net = reg.create_network("fp-net")
    reg.create_subnet(net.id, "10.61.0.0/24", gateway=None)
    vm = reg.create_instance("fp-vm", user_data=b"#!/bin/sh\necho hi\n")
    port = reg.create_port(net.id, device_id=vm.id)
    return config, reg, net, vm, port


def _ask(backend, net_id, src, method="GET", target="/openstack/latest/meta_data.json", body=b""):
    headers = [(fields.FORWARDED_FOR, src), (fields.NETWORK_ID, net_id)] if net_id else []
    return backend.request(method, target, headers, body)


def test_config_chooses_the_fast_path_only_for_mdtool_s_own_metadata(node, monkeypatch):
    config = node[0]
    assert config.fast_path  # the default
    monkeypatch.setenv("MDTOOL_METADATA_BACKEND", "nova")
    assert not Config(state_dir=str(config.state_dir), config_file="/dev/null").fast_path
    monkeypatch.setenv("MDTOOL_METADATA_BACKEND", "local")
    monkeypatch.setenv("MDTOOL_NOVA_METADATA_HOST", "192.0.2.10")  # a remote Nova: the chain
    assert not Config(state_dir=str(config.state_dir), config_file="/dev/null").fast_path


def test_answers_as_the_chain_would(node):
    from mdtool.fastpath import LocalBackend
    config, reg, net, vm, port = node
    ip = port.fixed_ips[0].ip_address

    async def go():
        stop = asyncio.Event()
        backend = LocalBackend(config)
        await backend.open(stop)
        try:
            md = await _ask(backend, net.id, ip)
            ud = await _ask(backend, net.id, ip, target="/openstack/latest/user_data")
            ec2 = await _ask(backend, net.id, ip, target="/latest/meta-data/instance-id")
            unknown = await _ask(backend, net.id, "10.61.0.200")
            bare = await _ask(backend, None, ip)
            pw = await _ask(backend, net.id, ip, "POST", "/openstack/latest/password", b"sekrit")
            again = await _ask(backend, net.id, ip, "POST", "/openstack/latest/password", b"x")
            # a change in the registry is served once the followers see it (<= 1 s)
            reg.update_instance(vm.id, name="fp-renamed")
            for _ in range(40):
                renamed = await _ask(backend, net.id, ip)
                if json.loads(renamed.body)["name"] == "fp-renamed":
                    break
                await asyncio.sleep(0.05)
            return md, ud, ec2, unknown, bare, pw, again, renamed
        finally:
            stop.set()
            await backend.close()

    md, ud, ec2, unknown, bare, pw, again, renamed = asyncio.run(go())
    assert md.status == 200 and json.loads(md.body)["uuid"] == vm.id
    assert ud.status == 200 and ud.body == b"#!/bin/sh\necho hi\n"
    assert ec2.status == 200 and ec2.body.decode() == f"i-{vm.id[:8]}"  # EC2-style id
    assert unknown.status == 404 and bare.status == 400
    assert pw.status == 200 and again.status == 409
    assert reg.get_instance(vm.id).password == "sekrit"  # written through to the registry
    assert json.loads(renamed.body)["name"] == "fp-renamed"


def test_a_port_created_a_moment_ago_is_found_without_waiting_for_the_poll(node):
    from mdtool.fastpath import LocalBackend
    config, reg, net, vm, port = node

    async def go():
        stop = asyncio.Event()
        backend = LocalBackend(config)
        await backend.open(stop)
        await asyncio.sleep(0.05)
        backend.follower.feed.interval = 3600  # the follower will not see it on its own
        try:
            await asyncio.sleep(0.3)  # let the followers settle on their long sleep
            vm2 = reg.create_instance("fp-vm2")
            p2 = reg.create_port(net.id, device_id=vm2.id)
            r = await _ask(backend, net.id, p2.fixed_ips[0].ip_address)
            return vm2, r
        finally:
            stop.set()
            await backend.close()

    vm2, r = asyncio.run(go())
    assert r.status == 200 and json.loads(r.body)["uuid"] == vm2.id
