"""A no-change pipeline step does not write the registry (a write moves the revision, and
every move makes the agent rebuild its index and the metadata service drop its cache)."""

from __future__ import annotations

from mdtool.config import Config
from mdtool.netns.ip_lib import Netlink
from mdtool.pipeline import Node
from mdtool.registry import open_registry


def test_reserving_an_existing_dhcp_port_writes_nothing(tmp_path):
    cfg = Config(str(tmp_path), None, None, environ={"MDTOOL_HOST": "node1"})
    reg = open_registry(cfg.db_url)
    net = reg.create_network("n")
    reg.create_subnet(net.id, "10.9.0.0/24", no_gateway=True)
    node = Node(cfg, reg, Netlink())  # the DHCP port only: no socket is opened
    first = node.dhcp(reg.get_network(net.id), create=True)
    assert first.changes and first.port is not None
    rev = reg.revision()
    again = node.dhcp(first.network, create=True)
    assert again.changes == [] and again.port.id == first.port.id
    assert reg.revision() == rev
    # a new DHCP subnet still gets its address on the next call
    reg.create_subnet(net.id, "10.9.1.0/24", no_gateway=True)
    third = node.dhcp(reg.get_network(net.id), create=True)
    assert third.changes and len(third.port.fixed_ips) == 2
