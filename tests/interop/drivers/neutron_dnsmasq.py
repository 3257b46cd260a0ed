"""Neutron's own ``neutron.agent.linux.dhcp.Dnsmasq`` renders dnsmasq's files and argv.

Payload::

    {"network": {...Neutron's network dict, with "subnets" and "ports"...},
     "confs_dir": DIR,              # Neutron's dhcp_confs: files go to DIR/<network id>/
     "interface": "tap...",         # the DHCP port's device in the namespace
     "interface_cidrs": ["ip/len"], # the addresses on it (what `ip addr` would show)
     "conf": {"dns_domain": ..., "dhcp_lease_duration": ..., ...},  # DHCP agent options
     "host_tag_supported": true,    # dnsmasq >= 2.81 (the version probe's answer)
     "dns_integration": true}       # ports carry the server's dns_assignment (ML2 "dns")

Answer: ``{"files": {host, opts, addn_hosts, leases}, "argv": [...]}``.

Stubbed, because they need a server or a namespace: the addresses of the DHCP interface
(``ip_lib.get_devices_with_ip``), dnsmasq's host-tag probe, and the plugin RPC (no OVN
metadata port). Everything that decides a byte of output is Neutron's.
"""

from pathlib import Path

FILES = ("host", "opts", "addn_hosts", "leases")


class _PluginRpc:
    """Neutron server RPC stand-in: no OVN metadata port, no other network."""

    def get_ports(self, port_filters=None):
        return []

    def get_networks(self, filters=None, fields=None):
        return []


def _conf(payload):
    from neutron.conf.agent import common as agent_config
    from neutron.conf.agent import dhcp as dhcp_config
    from neutron.conf import common as base_config
    from oslo_config import cfg

    conf = cfg.ConfigOpts()
    conf.register_opts(base_config.core_opts)
    conf.register_opts(dhcp_config.DHCP_OPTS)
    conf.register_opts(dhcp_config.DNSMASQ_OPTS)
    conf.register_opts(dhcp_config.DHCP_AGENT_OPTS)
    conf.register_opts(agent_config.DHCP_PROTOCOL_OPTS)
    agent_config.register_external_process_opts(conf)
    agent_config.register_interface_driver_opts_helper(conf)
    agent_config.register_interface_opts(conf)
    conf([], project="neutron")
    conf.set_override("interface_driver", "neutron.agent.linux.interface.NullDriver")
    conf.set_override("dhcp_confs", payload["confs_dir"])
    conf.set_override("enable_isolated_metadata", True)
    for name, value in payload.get("conf", {}).items():
        conf.set_override(name, value)
    return conf


def _dns_assignments(network, dns_domain):
    """What Neutron's server adds to each port with the ML2 ``dns`` extension driver on:
    computed by that driver's own code (``neutron.conf`` ``dns_domain`` = the agent's)."""
    from neutron.conf import common as base_config
    from neutron.plugins.ml2.extensions import dns_integration
    from oslo_config import cfg

    try:
        cfg.CONF.register_opts(base_config.core_opts)
    except cfg.DuplicateOptError:
        pass
    cfg.CONF([], project="neutron")
    cfg.CONF.set_override("dns_domain", dns_domain)
    driver = dns_integration.DNSExtensionDriverML2()
    for port in network["ports"]:
        port["dns_name"] = ""
        port["dns_assignment"] = driver._get_dns_names_for_port(port["fixed_ips"], None)


def main(payload):
    from unittest import mock

    from neutron.agent.linux import dhcp, ip_lib

    conf = _conf(payload)
    if payload.get("dns_integration", True):
        _dns_assignments(payload["network"], conf.dns_domain)
    network = dhcp.NetModel(payload["network"])
    cidrs = [{"cidr": c} for c in payload["interface_cidrs"]]
    with mock.patch.object(ip_lib, "get_devices_with_ip", return_value=cidrs), \
            mock.patch.object(dhcp.checks, "dnsmasq_host_tag_support",
                              return_value=payload.get("host_tag_supported", True)):
        dm = dhcp.Dnsmasq(conf, network, process_monitor=mock.Mock(), plugin=_PluginRpc())
        dm.interface_name = payload["interface"]
        # What spawn_process writes, in its order: the lease seed, then host/addn_hosts/opts.
        dm._output_init_lease_file()
        dm._output_config_files()
        argv = dm._build_cmdline_callback(dm.get_conf_file_name("pid"))
    files = {k: Path(dm.get_conf_file_name(k)).read_text() for k in FILES}
    return {"files": files, "argv": argv}
