"""Render one mdtool network twice: with `mdtool dnsmasq render` and with Neutron's own
``neutron.agent.linux.dhcp.Dnsmasq`` (in .venv-openstack), from the same objects.

The objects are made with mdtool's CLI; the DHCP port is reserved as ``netns up`` reserves
it (no namespace needed to render). Neutron gets them as its RPC would hand them to its
DHCP agent: the network dict with its subnets and ports, in mdtool's order.
"""

from __future__ import annotations

import ipaddress
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from click.testing import CliRunner

from mdtool import model
from mdtool.cli import cli
from mdtool.config import Config
from mdtool.dnsmasq import control
from mdtool.netns import names
from mdtool.netns.ip_lib import Netlink
from mdtool.pipeline import Node
from mdtool.registry import open_registry

FILES = ("host", "opts", "addn_hosts", "leases")


@dataclass
class Rendered:
    files: dict[str, str]
    argv: list[str]


class Site:
    """A private state dir and registry, driven through the CLI."""

    def __init__(self, tmp_path: Path, monkeypatch, config_text: str = ""):
        self.state_dir = tmp_path / "state"
        self.confs_dir = tmp_path / "confs"
        monkeypatch.setenv("MDTOOL_STATE_DIR", str(self.state_dir))
        monkeypatch.delenv("MDTOOL_DB", raising=False)
        monkeypatch.setenv("MDTOOL_HOST", "interop-node")
        cfg = tmp_path / "mdtool.ini"
        cfg.write_text("[DEFAULT]\n" + config_text)
        monkeypatch.setenv("MDTOOL_CONFIG", str(cfg))
        self.runner = CliRunner()

    def __call__(self, *args, expect: int = 0) -> str:
        r = self.runner.invoke(cli, [str(a) for a in args], catch_exceptions=False)
        assert r.exit_code == expect, f"mdtool {' '.join(map(str, args))}: {r.output}"
        return r.stdout

    def id(self, *args) -> str:
        return self(*args, "-f", "value", "-c", "id").strip()

    def config(self) -> Config:
        return Config()

    def mdtool_render(self, network: str) -> tuple[Rendered, model.Network, model.Port]:
        cfg = self.config()
        reg = open_registry(cfg.db_url)
        st = Node(cfg, reg, Netlink()).dhcp(reg.get_network(network), create=True)
        net = reg.get_network(st.network.id)
        out = self.confs_dir / net.id
        self("dnsmasq", "render", network, "--output-dir", out)
        files = {k: (out / k).read_text() for k in FILES}
        argv = control.argv(cfg, net, st.port, out)
        shutil.rmtree(out)  # Neutron writes the same paths next
        return Rendered(files, argv), net, st.port


def neutron_network(net: model.Network) -> dict:
    """The network as Neutron's RPC hands it to the DHCP agent."""
    return {
        "id": net.id, "name": net.name, "mtu": net.mtu, "project_id": net.project_id,
        "subnets": [{
            "id": s.id, "name": s.name, "network_id": s.network_id, "cidr": s.cidr,
            "ip_version": s.ip_version, "enable_dhcp": s.enable_dhcp,
            "gateway_ip": s.gateway_ip, "dns_nameservers": list(s.dns_nameservers),
            "host_routes": [{"destination": r.destination, "nexthop": r.nexthop}
                            for r in s.host_routes],
            "ipv6_address_mode": getattr(s, "ipv6_address_mode", None),
            "ipv6_ra_mode": getattr(s, "ipv6_ra_mode", None),
            "project_id": s.project_id,
        } for s in net.subnets],
        "ports": [{
            "id": p.id, "name": p.name, "network_id": p.network_id,
            "mac_address": p.mac_address, "device_owner": p.device_owner,
            "device_id": p.device_id, "project_id": p.project_id,
            "fixed_ips": [{"subnet_id": f.subnet_id, "ip_address": f.ip_address}
                          for f in p.fixed_ips],
        } for p in net.ports],
    }


def render_both(site: Site, openstack, network: str) -> tuple[Rendered, Rendered]:
    """(mdtool's, Neutron's) files and argv for the same network."""
    mine, net, dhcp_port = site.mdtool_render(network)
    cfg = site.config()
    prefix = {s.id: ipaddress.ip_network(s.cidr).prefixlen for s in net.subnets}
    payload = {
        "network": neutron_network(net),
        "confs_dir": str(site.confs_dir),
        "interface": names.tap_name(dhcp_port.id),
        "interface_cidrs": [f"{f.ip_address}/{prefix[f.subnet_id]}" for f in dhcp_port.fixed_ips],
        "dns_integration": cfg.get("dns_integration"),
        "conf": {
            "dns_domain": cfg.get("dns_domain"),
            "dhcp_lease_duration": cfg.get("dhcp_lease_duration"),
            "dnsmasq_lease_max": cfg.get("dnsmasq_lease_max"),
            "dnsmasq_dns_servers": list(cfg.get("dnsmasq_dns_servers")),
        },
    }
    theirs = openstack.run("neutron_dnsmasq", payload)
    return mine, Rendered(theirs["files"], theirs["argv"])


def show(r: Rendered) -> str:
    return json.dumps({"files": r.files, "argv": r.argv}, indent=1)
