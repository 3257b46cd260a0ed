"""Resources as the rows the OpenStack client prints (Neutron's and Nova's field names)."""

from __future__ import annotations

from typing import Any

from mdtool import model
from mdtool.cli.output import Shown


def network(n: model.Network) -> dict[str, Any]:
    return {"id": n.id, "name": n.name, "bridge": n.bridge, "mtu": n.mtu,
            "subnets": [s.id for s in n.subnets], "project_id": n.project_id,
            "tenant_id": n.project_id, "hosts": list(n.hosts)}


def network_list_row(n: model.Network) -> dict[str, Any]:
    """net-list's row: a table shows each subnet's id and CIDR; json, yaml and csv carry the
    subnet ids, as net-show does."""
    row = network(n)
    row["subnets"] = Shown([s.id for s in n.subnets], "\n".join(f"{s.id} {s.cidr}" for s in n.subnets))
    return row


def subnet(s: model.Subnet) -> dict[str, Any]:
    rec = {
        "allocation_pools": [{"start": p.start, "end": p.end} for p in s.allocation_pools],
        "cidr": s.cidr,
        "dns_nameservers": list(s.dns_nameservers),
        "enable_dhcp": s.enable_dhcp,
        "gateway_ip": s.gateway_ip,
        "host_routes": [{"destination": h.destination, "nexthop": h.nexthop} for h in s.host_routes],
        "id": s.id,
        "ip_version": s.ip_version,
        "name": s.name,
        "network_id": s.network_id,
        "project_id": s.project_id,
        "tenant_id": s.project_id,
    }
    if s.ip_version == 6:  # the story's IPv4 table stays as the 2013 client printed it
        rec["ipv6_address_mode"] = s.ipv6_address_mode
        rec["ipv6_ra_mode"] = s.ipv6_ra_mode
    return dict(sorted(rec.items()))


def port(p: model.Port) -> dict[str, Any]:
    return {"id": p.id, "name": p.name, "network_id": p.network_id, "mac_address": p.mac_address,
            "fixed_ips": [{"subnet_id": f.subnet_id, "ip_address": f.ip_address} for f in p.fixed_ips],
            "device_id": p.device_id, "device_owner": p.device_owner, "project_id": p.project_id,
            "tenant_id": p.project_id, "binding:host_id": p.host,
            "port_security_enabled": p.port_security_enabled}


def instance(i: model.Instance) -> dict[str, Any]:
    return {"id": i.id, "name": i.name, "hostname": i.hostname, "project_id": i.project_id,
            "key_name": i.key_name, "public_keys": dict(i.public_keys), "meta": dict(i.meta),
            "user_data": "present" if i.user_data is not None else "",
            "user_data_bytes": len(i.user_data) if i.user_data is not None else 0,
            "vendor_data": i.vendor_data, "availability_zone": i.availability_zone,
            "flavor": i.flavor, "created": i.created_at}
