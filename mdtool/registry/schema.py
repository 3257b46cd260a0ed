"""Tables of the registry (SQLAlchemy Core: portable across SQLite and PostgreSQL)."""

from __future__ import annotations

import sqlalchemy as sa

from mdtool.model import DEFAULT_FLAVOR

metadata = sa.MetaData()

# One row. ``revision`` is bumped first in every write transaction: it serialises writers
# on both SQLite and PostgreSQL (so IP allocation needs no other lock) and lets readers
# (the agent) notice a change with one cheap query.
registry_state = sa.Table(
    "registry_state", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("schema_version", sa.Integer, nullable=False),
    sa.Column("revision", sa.BigInteger, nullable=False),
)

networks = sa.Table(
    "networks", metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("name", sa.String(255), nullable=False, index=True),
    sa.Column("bridge", sa.String(15), nullable=False),
    sa.Column("mtu", sa.Integer, nullable=False),
    sa.Column("project_id", sa.String(64), nullable=False),
    sa.Column("created_at", sa.String(32), nullable=False),
)

subnets = sa.Table(
    "subnets", metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("network_id", sa.String(36), sa.ForeignKey("networks.id"), nullable=False, index=True),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("cidr", sa.String(64), nullable=False),
    sa.Column("ip_version", sa.Integer, nullable=False),
    sa.Column("gateway_ip", sa.String(64), nullable=True),
    sa.Column("enable_dhcp", sa.Boolean, nullable=False),
    sa.Column("allocation_pools", sa.JSON, nullable=False),
    sa.Column("dns_nameservers", sa.JSON, nullable=False),
    sa.Column("host_routes", sa.JSON, nullable=False),
    sa.Column("project_id", sa.String(64), nullable=False),
    sa.Column("ipv6_address_mode", sa.String(32), nullable=True),
    sa.Column("ipv6_ra_mode", sa.String(32), nullable=True),
)

instances = sa.Table(
    "instances", metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("name", sa.String(255), nullable=False, index=True),
    sa.Column("hostname", sa.String(253), nullable=False),
    sa.Column("project_id", sa.String(64), nullable=False),
    sa.Column("key_name", sa.String(255), nullable=True),
    sa.Column("public_keys", sa.JSON, nullable=False),
    sa.Column("meta", sa.JSON, nullable=False),
    sa.Column("user_data", sa.LargeBinary, nullable=True),
    sa.Column("vendor_data", sa.JSON, nullable=True),
    sa.Column("availability_zone", sa.String(255), nullable=False),
    sa.Column("launch_index", sa.Integer, nullable=False),
    sa.Column("password", sa.Text, nullable=True),
    sa.Column("created_at", sa.String(32), nullable=False),
    sa.Column("flavor", sa.String(255), nullable=False, server_default=DEFAULT_FLAVOR),
)

ports = sa.Table(
    "ports", metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("network_id", sa.String(36), sa.ForeignKey("networks.id"), nullable=False, index=True),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("mac_address", sa.String(17), nullable=False),
    sa.Column("device_id", sa.String(255), nullable=False),
    sa.Column("device_owner", sa.String(255), nullable=False),
    sa.Column("project_id", sa.String(64), nullable=False),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("port_security_enabled", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.UniqueConstraint("network_id", "mac_address", name="uq_ports_network_mac"),
)

ip_allocations = sa.Table(
    "ip_allocations", metadata,
    sa.Column("port_id", sa.String(36), sa.ForeignKey("ports.id", ondelete="CASCADE"),
              nullable=False, index=True),
    sa.Column("subnet_id", sa.String(36), sa.ForeignKey("subnets.id"), nullable=False, index=True),
    sa.Column("network_id", sa.String(36), nullable=False),
    sa.Column("ip_address", sa.String(64), nullable=False),
    sa.Column("position", sa.Integer, nullable=False),
    sa.PrimaryKeyConstraint("network_id", "ip_address", name="pk_ip_allocations"),
)

# Which nodes serve a network (DHCP and metadata): written by enable/disable-isolated-metadata,
# followed by `mdtool node run` on each node, shown by net-show and inspect.
network_hosts = sa.Table(
    "network_hosts", metadata,
    sa.Column("network_id", sa.String(36), sa.ForeignKey("networks.id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("host", sa.String(255), nullable=False, index=True),
    sa.Column("created_at", sa.String(32), nullable=False),
    sa.PrimaryKeyConstraint("network_id", "host", name="pk_network_hosts"),
)
