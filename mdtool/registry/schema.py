"""Tables of the registry: one DDL text for SQLite and PostgreSQL.

The same tables (names, types, keys, indexes) that SQLAlchemy's ``create_all`` made before
mdtool wrote its SQL by hand, so a database created by either reads the same
(tests/unit/test_registry_compat.py opens one written by the old code). Column types:
JSON columns hold JSON text on SQLite and ``json`` on PostgreSQL; binary is BLOB/BYTEA.
"""

from __future__ import annotations

from mdtool.model import DEFAULT_FLAVOR

# Columns whose values the dialect layer (mdtool.registry.db) converts, by name: JSON
# (encoded on write, decoded on read), binary (bytes on read), boolean (bool on read).
JSON_COLUMNS = frozenset({"allocation_pools", "dns_nameservers", "host_routes",
                          "public_keys", "meta", "vendor_data"})
BINARY_COLUMNS = frozenset({"user_data"})
BOOLEAN_COLUMNS = frozenset({"enable_dhcp", "port_security_enabled"})

# {BINARY} and {TRUE} are the only words that differ between the two dialects.
# One row in registry_state. ``revision`` is bumped first in every write transaction: it
# serialises writers on both SQLite and PostgreSQL (so IP allocation needs no other lock)
# and lets readers (the agent) notice a change with one cheap query.
TABLES: list[tuple[str, str, list[str]]] = [
    ("registry_state", """
CREATE TABLE registry_state (
    id INTEGER NOT NULL,
    schema_version INTEGER NOT NULL,
    revision BIGINT NOT NULL,
    PRIMARY KEY (id)
)""", []),
    ("networks", """
CREATE TABLE networks (
    id VARCHAR(36) NOT NULL,
    name VARCHAR(255) NOT NULL,
    bridge VARCHAR(15) NOT NULL,
    mtu INTEGER NOT NULL,
    project_id VARCHAR(64) NOT NULL,
    created_at VARCHAR(32) NOT NULL,
    PRIMARY KEY (id)
)""", ["CREATE INDEX ix_networks_name ON networks (name)"]),
    ("subnets", """
CREATE TABLE subnets (
    id VARCHAR(36) NOT NULL,
    network_id VARCHAR(36) NOT NULL,
    name VARCHAR(255) NOT NULL,
    cidr VARCHAR(64) NOT NULL,
    ip_version INTEGER NOT NULL,
    gateway_ip VARCHAR(64),
    enable_dhcp BOOLEAN NOT NULL,
    allocation_pools JSON NOT NULL,
    dns_nameservers JSON NOT NULL,
    host_routes JSON NOT NULL,
    project_id VARCHAR(64) NOT NULL,
    ipv6_address_mode VARCHAR(32),
    ipv6_ra_mode VARCHAR(32),
    PRIMARY KEY (id),
    FOREIGN KEY (network_id) REFERENCES networks (id)
)""", ["CREATE INDEX ix_subnets_network_id ON subnets (network_id)"]),
    ("instances", f"""
CREATE TABLE instances (
    id VARCHAR(36) NOT NULL,
    name VARCHAR(255) NOT NULL,
    hostname VARCHAR(253) NOT NULL,
    project_id VARCHAR(64) NOT NULL,
    key_name VARCHAR(255),
    public_keys JSON NOT NULL,
    meta JSON NOT NULL,
    user_data {{BINARY}},
    vendor_data JSON,
    availability_zone VARCHAR(255) NOT NULL,
    launch_index INTEGER NOT NULL,
    password TEXT,
    created_at VARCHAR(32) NOT NULL,
    flavor VARCHAR(255) DEFAULT '{DEFAULT_FLAVOR}' NOT NULL,
    PRIMARY KEY (id)
)""", ["CREATE INDEX ix_instances_name ON instances (name)"]),
    ("ports", """
CREATE TABLE ports (
    id VARCHAR(36) NOT NULL,
    network_id VARCHAR(36) NOT NULL,
    name VARCHAR(255) NOT NULL,
    mac_address VARCHAR(17) NOT NULL,
    device_id VARCHAR(255) NOT NULL,
    device_owner VARCHAR(255) NOT NULL,
    project_id VARCHAR(64) NOT NULL,
    host VARCHAR(255) NOT NULL,
    port_security_enabled BOOLEAN DEFAULT {TRUE} NOT NULL,
    PRIMARY KEY (id),
    CONSTRAINT uq_ports_network_mac UNIQUE (network_id, mac_address),
    FOREIGN KEY (network_id) REFERENCES networks (id)
)""", ["CREATE INDEX ix_ports_network_id ON ports (network_id)"]),
    ("ip_allocations", """
CREATE TABLE ip_allocations (
    port_id VARCHAR(36) NOT NULL,
    subnet_id VARCHAR(36) NOT NULL,
    network_id VARCHAR(36) NOT NULL,
    ip_address VARCHAR(64) NOT NULL,
    "position" INTEGER NOT NULL,
    CONSTRAINT pk_ip_allocations PRIMARY KEY (network_id, ip_address),
    FOREIGN KEY (port_id) REFERENCES ports (id) ON DELETE CASCADE,
    FOREIGN KEY (subnet_id) REFERENCES subnets (id)
)""", ["CREATE INDEX ix_ip_allocations_subnet_id ON ip_allocations (subnet_id)",
       "CREATE INDEX ix_ip_allocations_port_id ON ip_allocations (port_id)"]),
    # Which nodes serve a network (DHCP and metadata): written by enable/disable-isolated-
    # metadata, followed by `mdtool node run` on each node, shown by net-show and inspect.
    ("network_hosts", """
CREATE TABLE network_hosts (
    network_id VARCHAR(36) NOT NULL,
    host VARCHAR(255) NOT NULL,
    created_at VARCHAR(32) NOT NULL,
    CONSTRAINT pk_network_hosts PRIMARY KEY (network_id, host),
    FOREIGN KEY (network_id) REFERENCES networks (id) ON DELETE CASCADE
)""", ["CREATE INDEX ix_network_hosts_host ON network_hosts (host)"]),
]

_WORDS = {"sqlite": {"BINARY": "BLOB", "TRUE": "1"},
          "postgresql": {"BINARY": "BYTEA", "TRUE": "true"}}


def create_statements(dialect: str, only: str | None = None) -> list[str]:
    """CREATE TABLE and CREATE INDEX of every table (or of ``only``), in dependency order."""
    words = _WORDS[dialect]
    out = []
    for name, table, indexes in TABLES:
        if only is None or name == only:
            out.append(table.strip().replace("{BINARY}", words["BINARY"])
                       .replace("{TRUE}", words["TRUE"]))
            out.extend(indexes)
    return out
