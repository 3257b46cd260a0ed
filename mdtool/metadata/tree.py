"""The metadata documents of one instance, rendered purely from model objects.

Nothing here does I/O: :class:`InstanceDocs` takes an instance, its ports and their
networks (subnets filled) and answers ``lookup(path)`` for both the OpenStack tree
(``/openstack/...``) and the EC2 tree (``/<version>/...``), caching each rendered
document so a hot instance costs a dict lookup per request.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import os
from dataclasses import dataclass

from mdtool import model

OS_VERSIONS = ("2012-08-10", "2013-04-04", "2013-10-17", "2015-10-15", "2016-06-30",
               "2016-10-06", "2017-02-22", "2018-08-27", "2020-10-14", "2025-04-04")
EC2_VERSIONS = ("1.0", "2007-01-19", "2007-03-01", "2007-08-29", "2007-10-10", "2007-12-15",
                "2008-02-01", "2008-09-01", "2009-04-04")
LATEST = "latest"

# The OpenStack version that introduced each file or field (as Nova gates them).
_GRIZZLY, _HAVANA, _LIBERTY, _NEWTON_ONE, _NEWTON_TWO = OS_VERSIONS[1:6]
_VICTORIA = OS_VERSIONS[8]

# What Nova's network_data.json calls a link plugged into a Linux bridge (its VIF type).
VIF_TYPE = "bridge"

# Nova answers through webob, which adds the charset to both.
JSON_TYPE = "application/json"
TEXT_TYPE = "text/plain; charset=UTF-8"
HTML_TYPE = "text/html; charset=UTF-8"  # webob's default: Nova's password answers

MAX_PASSWORD_BYTES = 256
RANDOM_SEED_BYTES = 512


@dataclass(frozen=True)
class Doc:
    body: bytes
    content_type: str = TEXT_TYPE


class _Dir(dict):
    """A directory of the EC2 tree; ``label`` replaces ``name/`` in its parent's listing."""

    def __init__(self, entries=(), label: str | None = None):
        super().__init__(entries)
        self.label = label


def _listing(names: list[str]) -> Doc:
    return Doc("\n".join(names).encode())


def _ec2_listing(d: dict) -> Doc:
    names = []
    for key in sorted(d):
        value = d[key]
        if isinstance(value, _Dir) and value.label:
            names.append(value.label)
        elif isinstance(value, dict):
            names.append(key + "/")
        else:
            names.append(key)
    return _listing(names)


def _version_at_least(version: str, first: str, versions: tuple[str, ...]) -> bool:
    return version == LATEST or versions.index(version) >= versions.index(first)


def _json(obj) -> Doc:
    return Doc(json.dumps(obj, sort_keys=False).encode(), JSON_TYPE)


def fqdn(hostname: str, domain: str) -> str:
    """Nova's hostname: the instance's hostname, then ``.`` and ``[api] dhcp_domain`` when
    that is set (Nova appends it even to a name that has dots)."""
    return f"{hostname}.{domain}" if domain else hostname


def _dns_services(subnet: model.Subnet) -> list[dict]:
    return [{"type": "dns", "address": ns} for ns in subnet.dns_nameservers]


def _ec2_suffix(instance_id: str) -> str:
    return instance_id.replace("-", "")[:8].lower().rjust(8, "0")


def ec2_instance_id(instance_id: str) -> str:
    """EC2-style id ``i-xxxxxxxx`` taken from the UUID, as stable as the UUID itself."""
    return "i-" + _ec2_suffix(instance_id)


def first_ipv4(ports: list[model.Port]) -> tuple[str, str]:
    """(ip, mac) of the first IPv4 fixed address of the first port that has one."""
    for port in ports:
        for fip in port.fixed_ips:
            try:
                if ipaddress.ip_address(fip.ip_address).version == 4:
                    return fip.ip_address, port.mac_address
            except ValueError:
                continue
    return "", (ports[0].mac_address if ports else "")


EC2_ROOT = _listing(list(EC2_VERSIONS) + [LATEST])


class InstanceDocs:
    """Every document served to one instance at one registry revision."""

    def __init__(self, instance: model.Instance, ports: list[model.Port],
                 networks: dict[str, model.Network], *, dhcp_domain: str = "",
                 revision: int = 0):
        self.instance = instance
        self.ports = [p for p in ports if p.device_id == instance.id]
        self.networks = networks
        self.dhcp_domain = dhcp_domain
        self.revision = revision
        self.hostname = fqdn(instance.hostname or instance.name, dhcp_domain)
        # Nova draws a new seed per metadata object; one per cached revision is as good.
        self.random_seed = base64.b64encode(os.urandom(RANDOM_SEED_BYTES)).decode()
        self._cache: dict[str, Doc | None] = {}

    # Lookup ------------------------------------------------------------------------

    def lookup(self, path: str) -> Doc | None:
        """The document at ``path`` (any trailing slash accepted), or None for 404."""
        try:
            return self._cache[path]
        except KeyError:
            pass
        doc = self._render(path)
        if len(self._cache) < 256:  # bound what a client probing random paths can pin
            self._cache[path] = doc
        return doc

    def _render(self, path: str) -> Doc | None:
        parts = [p for p in path.split("/") if p]
        if not parts:
            return EC2_ROOT
        if parts[0] == "openstack":
            return self._render_openstack(parts[1:])
        return self._render_ec2(parts)

    # OpenStack tree ----------------------------------------------------------------

    def _render_openstack(self, parts: list[str]) -> Doc | None:
        if not parts:
            return _listing(list(OS_VERSIONS) + [LATEST])
        version = parts[0]
        if version != LATEST and version not in OS_VERSIONS:
            return None
        files = self.openstack_files(version)
        if len(parts) == 1:
            return _listing(files)
        if len(parts) != 2 or parts[1] not in files:
            return None
        name = parts[1]
        if name == "meta_data.json":
            return _json(self.meta_data(version))
        if name == "user_data":
            return Doc(self.instance.user_data or b"")
        if name == "vendor_data.json":
            return _json(self.instance.vendor_data or {})
        if name == "vendor_data2.json":
            return _json({"static": self.instance.vendor_data or {}})
        if name == "network_data.json":
            # Nova leaves this one as text/plain; its body is JSON all the same.
            return Doc(_json(self.network_data()).body)
        if name == "password":
            return Doc((self.instance.password or "").encode(), HTML_TYPE)
        return None

    def openstack_files(self, version: str) -> list[str]:
        files = ["meta_data.json"]
        if self.instance.user_data is not None:
            files.append("user_data")
        if _version_at_least(version, _GRIZZLY, OS_VERSIONS):
            files.append("password")
        if _version_at_least(version, _HAVANA, OS_VERSIONS):
            files.append("vendor_data.json")
        if _version_at_least(version, _LIBERTY, OS_VERSIONS):
            files.append("network_data.json")
        if _version_at_least(version, _NEWTON_TWO, OS_VERSIONS):
            files.append("vendor_data2.json")
        return files

    def meta_data(self, version: str = LATEST) -> dict:
        """Nova's keys in Nova's order (``meta`` only when there is some; no ``files``:
        mdtool injects none)."""
        inst = self.instance
        md: dict = {"uuid": inst.id}
        if inst.meta:
            md["meta"] = dict(inst.meta)
        if inst.public_keys:
            md["public_keys"] = dict(inst.public_keys)
            md["keys"] = [{"name": name, "type": "ssh", "data": data}
                          for name, data in inst.public_keys.items()]
        md["hostname"] = self.hostname
        md["name"] = inst.name
        md["launch_index"] = inst.launch_index
        md["availability_zone"] = inst.availability_zone
        if _version_at_least(version, _GRIZZLY, OS_VERSIONS):
            md["random_seed"] = self.random_seed
        if _version_at_least(version, _LIBERTY, OS_VERSIONS):
            md["project_id"] = inst.project_id
        if _version_at_least(version, _NEWTON_ONE, OS_VERSIONS):
            md["devices"] = []
        if _version_at_least(version, _VICTORIA, OS_VERSIONS):
            md["dedicated_cpus"] = []  # no CPU pinning here
        return md

    def network_data(self) -> dict:
        """Links, networks and services as Nova's ``get_network_metadata`` writes them.

        One link per port, typed by its VIF type; per port, its first IPv4 and its first
        IPv6 address become one network each. A subnet with DHCP (and no IPv6 address
        mode) is ``ipv4_dhcp``/``ipv6_dhcp`` without an address: the instance must ask
        DHCP, or it would miss the option-121 route to 169.254.169.254. An IPv6 subnet
        with a mode is ``ipv6_<mode>``, static like a subnet without DHCP. The link's
        MTU is null when one of its subnets has DHCP (DHCP hands it out).
        """
        links, nets, services = [], [], []
        for port in self.ports:
            network = self.networks.get(port.network_id)
            subnets = {s.id: s for s in (network.subnets if network else [])}
            firsts: dict[int, tuple[model.FixedIP, model.Subnet]] = {}
            for fip in port.fixed_ips:
                subnet = subnets.get(fip.subnet_id)
                if subnet is not None:
                    firsts.setdefault(subnet.ip_version, (fip, subnet))
            if not firsts:
                continue
            link_id = "tap" + port.id[:11]
            dhcp = any(subnets[f.subnet_id].enable_dhcp for f in port.fixed_ips
                       if f.subnet_id in subnets)
            links.append({"id": link_id, "vif_id": port.id, "type": VIF_TYPE,
                          "mtu": None if dhcp or not network.mtu else network.mtu,
                          "ethernet_mac_address": port.mac_address})
            for ip_version in (4, 6):
                if ip_version not in firsts:
                    continue
                fip, subnet = firsts[ip_version]
                nets.append(self._network_entry(len(nets), link_id, port, fip, subnet))
                for dns in _dns_services(subnet):
                    if dns not in services:
                        services.append(dns)
        return {"links": links, "networks": nets, "services": services}

    @staticmethod
    def _network_entry(index: int, link_id: str, port: model.Port, fip: model.FixedIP,
                       subnet: model.Subnet) -> dict:
        v = subnet.ip_version
        if subnet.ipv6_address_mode is None and subnet.enable_dhcp:
            return {"id": f"network{index}", "type": f"ipv{v}_dhcp", "link": link_id,
                    "network_id": port.network_id}
        net = ipaddress.ip_network(subnet.cidr, strict=False)
        routes = []
        if subnet.gateway_ip:
            default = "0.0.0.0" if v == 4 else "::"
            routes.append({"network": default, "netmask": default, "gateway": subnet.gateway_ip})
        for hr in subnet.host_routes:
            dest = ipaddress.ip_network(hr.destination, strict=False)
            routes.append({"network": str(dest.network_address), "netmask": str(dest.netmask),
                           "gateway": hr.nexthop})
        mode = f"_{subnet.ipv6_address_mode}" if subnet.ipv6_address_mode else ""
        return {"id": f"network{index}", "type": f"ipv{v}{mode}", "link": link_id,
                "ip_address": fip.ip_address, "netmask": str(net.netmask), "routes": routes,
                "network_id": port.network_id, "services": _dns_services(subnet)}

    # EC2 tree ----------------------------------------------------------------------

    def _render_ec2(self, parts: list[str]) -> Doc | None:
        version = parts[0]
        if version != LATEST and version not in EC2_VERSIONS:
            return None
        top: dict = {"meta-data": _Dir()}
        if self.instance.user_data is not None:
            top["user-data"] = self.instance.user_data
        if len(parts) == 1:
            return _ec2_listing(top)
        if parts[1] == "user-data":
            if len(parts) != 2 or self.instance.user_data is None:
                return None
            return Doc(self.instance.user_data)
        if parts[1] != "meta-data":
            return None
        node = self.ec2_meta_data(version)
        for name in parts[2:]:
            if not isinstance(node, dict) or name not in node:
                return None
            node = node[name]
        if isinstance(node, dict):
            return _ec2_listing(node)
        return Doc(node.encode() if isinstance(node, str) else node)

    def ec2_meta_data(self, version: str = LATEST) -> dict:
        inst = self.instance
        ip, mac = first_ipv4(self.ports)

        def since(first: str) -> bool:
            return _version_at_least(version, first, EC2_VERSIONS)

        md: dict = {
            "ami-id": "ami-00000000",
            "ami-launch-index": str(inst.launch_index),
            "ami-manifest-path": "FIXME",
            "hostname": self.hostname,
            "instance-id": ec2_instance_id(inst.id),
            "local-ipv4": ip,
            "reservation-id": "r-" + _ec2_suffix(inst.id[::-1]),
            "security-groups": "default",
        }
        if inst.public_keys:
            md["public-keys"] = _Dir(
                (str(i), _Dir({"openssh-key": key}, label=f"{i}={name}"))
                for i, (name, key) in enumerate(inst.public_keys.items()))
        if since("2007-01-19"):
            md["local-hostname"] = self.hostname
            md["public-hostname"] = self.hostname
            md["public-ipv4"] = ""
            md["mac"] = mac
        if since("2007-08-29"):
            md["instance-type"] = inst.flavor
        if since("2007-12-15"):
            md["block-device-mapping"] = _Dir({"ami": "vda", "root": "/dev/vda"})
        if since("2008-02-01"):
            md["placement"] = _Dir({"availability-zone": inst.availability_zone})
        if since("2008-09-01"):
            md["instance-action"] = "none"
        return md
