"""A registry written by the SQLAlchemy registry (mdtool before the hand-written SQL) opens,
reads and writes with the current code, on SQLite and PostgreSQL; and a new database gets
the same tables as that code made.

tests/data/registry-v5-*.sql are dumps of a v5 registry that the SQLAlchemy code created
(networks, IPv4/IPv6/no-DHCP subnets, instances with binary user-data, JSON meta and
vendor data, a password, ports with and without port security, a DHCP port, a serving
host).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from mdtool.registry import Registry
from mdtool.registry import db as regdb

DATA = Path(__file__).parent.parent / "data"


def _load(db_url: str, tmp_path: Path) -> None:
    dump = (DATA / f"registry-v5-{'sqlite' if db_url.startswith('sqlite') else 'postgresql'}.sql")
    text = dump.read_text()
    if db_url.startswith("sqlite"):
        conn = sqlite3.connect(tmp_path / "mdtool.db")
        conn.executescript(text)
        conn.close()
        return
    from tests import pg
    conn = pg._connect(db_url)
    with conn.cursor() as cur:
        cur.execute(text)
    conn.close()


def test_a_registry_written_by_the_sqlalchemy_code_reads_and_writes(db_url, tmp_path):
    _load(db_url, tmp_path)
    reg = Registry(db_url)
    assert reg.revision() == 12

    net = reg.get_network("old-net")
    assert (net.mtu, net.project_id, net.hosts) == (1450, "p1", ["old-host"])
    v4, v6 = reg.get_subnet("old-v4"), reg.get_subnet("old-v6")
    assert v4.enable_dhcp is True and reg.get_subnet("old-nodhcp").enable_dhcp is False
    assert [(p.start, p.end) for p in v4.allocation_pools] == [("10.77.0.10", "10.77.0.99")]
    assert v4.dns_nameservers == ["10.77.0.53"]
    assert [(h.destination, h.nexthop) for h in v4.host_routes] == [("192.168.50.0/24", "10.77.0.254")]
    assert (v6.ipv6_address_mode, v6.ipv6_ra_mode) == ("slaac", "slaac")

    vm = reg.get_instance("old-vm")
    assert vm.user_data == b"#cloud-config\n\x00\xff binary"
    assert vm.public_keys == {"k1": "ssh-ed25519 AAAA old"} and vm.meta == {"role": "db"}
    assert (vm.vendor_data, vm.password, vm.flavor) == (None, "old-password", "m1.tiny")
    vm2 = reg.get_instance("0f0e0d0c")
    assert (vm2.vendor_data, vm2.user_data, vm2.flavor) == ({"v": [1, 2]}, None, "m1.small")

    ports = {p.name: p for p in reg.list_ports("old-net")}
    assert ports["old-port"].device_id == vm.id and ports["old-port"].port_security_enabled is True
    assert ports["old-nosec"].port_security_enabled is False
    assert [f.ip_address for f in ports["old-port"].fixed_ips] == ["10.77.0.10", "fd77::f816:3eff:fe00:7701"]
    dhcp, changed = reg.ensure_dhcp_port("old-net", "old-host")
    assert not changed and dhcp.id == ports["dhcp-old-host"].id

    # writes: the next free address, JSON and binary updates, deletes with cascades
    new = reg.create_port("old-net", device_id="old-vm2")
    assert new.fixed_ips[0].ip_address == "10.77.0.13" and reg.revision() == 13
    reg.update_instance("old-vm", meta={"tier": "2"}, user_data=b"\x01\x02")
    vm = reg.get_instance("old-vm")
    assert vm.meta == {"role": "db", "tier": "2"} and vm.user_data == b"\x01\x02"
    assert reg.set_instance_password(vm2.id, "pw2") is True
    assert reg.set_instance_password(vm2.id, "pw3") is False
    _inst, gone = reg.delete_instance("old-vm2")
    assert [p.id for p in gone] == [new.id]
    assert reg.unserve_network("old-net", "old-host") is True and reg.get_network("old-net").hosts == []


def _shape(conn: regdb.Connection) -> dict:
    """Every table's columns (name, type, NOT NULL, default) and index names."""
    out = {}
    for table in conn.tables():
        if conn.dialect == "sqlite":
            cols = sorted((r.name, r.type, r.notnull, r.dflt_value, r.pk)
                          for r in conn.execute(f"PRAGMA table_info({table})"))
            idx = sorted(r.name for r in conn.execute(f"PRAGMA index_list({table})"))
        else:
            cols = sorted((r.column_name, r.data_type, r.is_nullable, r.character_maximum_length,
                           None if (r.column_default or "").startswith("nextval(") else r.column_default)
                          for r in conn.execute(
                              "SELECT * FROM information_schema.columns "
                              "WHERE table_schema = current_schema() AND table_name = ?", (table,)))
            idx = sorted(conn.execute("SELECT indexname FROM pg_indexes WHERE tablename = ?",
                                      (table,)).scalars())
        out[table] = (cols, idx)
    return out


def _old_shape(db_url: str, tmp_path: Path) -> dict:
    """The shape of the dumped database, loaded into a database of its own."""
    if db_url.startswith("sqlite"):
        (tmp_path / "old").mkdir()
        _load(db_url, tmp_path / "old")
        engine = regdb.make_engine(f"sqlite:///{tmp_path}/old/mdtool.db")
        with engine.begin() as c:
            return _shape(c)
    from tests import pg
    with pg.fresh_database() as old_url:
        _load(old_url, tmp_path)
        engine = regdb.make_engine(old_url)
        try:
            with engine.begin() as c:
                return _shape(c)
        finally:
            engine.dispose()


def test_a_new_database_has_the_tables_the_sqlalchemy_code_made(db_url, tmp_path):
    """v1 writes the same DDL as SQLAlchemy's create_all did (PostgreSQL: registry_state.id
    was a SERIAL whose sequence nobody used)."""
    want = _old_shape(db_url, tmp_path)
    with Registry(db_url).engine.begin() as c:
        assert _shape(c) == want


@pytest.mark.parametrize("url", ["nonsense", "mysql://h/db", "sqlite:/x"])
def test_bad_database_urls_are_refused(url):
    from mdtool.errors import BadInput
    with pytest.raises(BadInput):
        Registry(url)
