"""The registry itself: allocation, the DHCP port, schema versions, concurrency.

Every test taking ``db_url`` runs twice: on SQLite and on a fresh PostgreSQL database
(tests/conftest.py; skipped when no server is reachable).
"""

import json
import os
import subprocess
import sys


from mdtool.registry import Registry
from mdtool.registry import db as regdb


def test_dhcp_port_takes_first_free_and_never_the_gateway(db_url):
    reg = Registry(db_url)
    reg.create_network("n")
    reg.create_subnet("n", "10.0.0.0/24")                      # gateway 10.0.0.1
    reg.create_subnet("n", "10.0.1.0/24", no_gateway=True)
    reg.create_subnet("n", "10.0.2.0/24", enable_dhcp=False)
    port, changed = reg.ensure_dhcp_port("n", "node1")
    assert changed and port.device_owner == "network:dhcp"
    assert [f.ip_address for f in port.fixed_ips] == ["10.0.0.2", "10.0.1.1"]
    again, changed = reg.ensure_dhcp_port("n", "node1")
    assert not changed and again == port
    other, _ = reg.ensure_dhcp_port("n", "node2")
    assert other.id != port.id and other.mac_address != port.mac_address
    assert [f.ip_address for f in other.fixed_ips] == ["10.0.0.3", "10.0.1.2"]


def test_revision_moves_on_every_write_and_not_on_failure(db_url):
    reg = Registry(db_url)
    r0 = reg.revision()
    reg.create_network("n")
    assert reg.revision() == r0 + 1
    try:
        reg.create_subnet("n", "10.0.0.1/24")
    except Exception:
        pass
    assert reg.revision() == r0 + 1


def test_schema_version_recorded_and_upgrade_keeps_data(db_url):
    url = db_url
    Registry(url).create_network("keep")
    eng = regdb.make_engine(url)
    assert regdb.upgrade(eng) == regdb.SCHEMA_VERSION  # already current: a no-op
    with eng.begin() as c:
        assert c.execute("select schema_version from registry_state").scalar() == regdb.SCHEMA_VERSION
    eng.dispose()
    assert [n.name for n in Registry(url).list_networks()] == ["keep"]


def test_database_file_is_private(tmp_path):
    Registry(f"sqlite:///{tmp_path}/r.db")
    assert os.stat(tmp_path / "r.db").st_mode & 0o077 == 0


def test_parallel_processes_allocate_distinct_ips(tmp_path, db_url):
    """8 mdtool processes x 10 ports on one subnet: 80 distinct IPs, no failure."""
    env = dict(os.environ, MDTOOL_STATE_DIR=str(tmp_path), MDTOOL_DB=db_url)
    mdtool = [sys.executable, "-m", "mdtool"]
    subprocess.run(mdtool + ["net-create", "n"], env=env, check=True, capture_output=True)
    subprocess.run(mdtool + ["subnet-create", "n", "10.0.0.0/24", "--no-gateway"], env=env, check=True,
                   capture_output=True)
    script = ("for i in $(seq 10); do " + " ".join(mdtool) +
              " port-create n -f json || echo FAILED; done")
    procs = [subprocess.Popen(["bash", "-c", script], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(8)]
    outs = [p.communicate(timeout=240) for p in procs]
    errors = "".join(e for _, e in outs)
    assert "FAILED" not in "".join(o for o, _ in outs), errors
    assert "locked" not in errors and "could not serialize" not in errors and "deadlock" not in errors
    listing = subprocess.run(mdtool + ["port-list", "-f", "json"], env=env, check=True,
                             capture_output=True, text=True).stdout
    ips = [p["fixed_ips"][0]["ip_address"] for p in json.loads(listing)]
    assert len(ips) == 80 and len(set(ips)) == 80


def test_which_nodes_serve_a_network(db_url):
    reg = Registry(db_url)
    reg.create_network("n")
    reg.create_network("m")
    r0 = reg.revision()
    assert reg.serve_network("n", "node1") and reg.serve_network("n", "node2")
    assert not reg.serve_network("n", "node1")  # already: no write, the revision stays
    assert reg.revision() == r0 + 2
    n = reg.get_network("n")
    assert n.hosts == ["node1", "node2"] and reg.get_network("m").hosts == []
    assert {x.name: x.hosts for x in reg.list_networks()} == {"m": [], "n": ["node1", "node2"]}
    assert {x.name: x.hosts for x in reg.networks_with_ports()[1]}["n"] == ["node1", "node2"]
    assert reg.served_networks("node1") == [n.id] and reg.served_networks("node3") == []
    assert reg.unserve_network("n", "node1") and not reg.unserve_network("n", "node1")
    assert reg.get_network("n").hosts == ["node2"]
    reg.delete_network("n")  # its serving records go with it
    assert reg.served_networks("node2") == []


def test_upgrade_from_v1_records_nodes_that_hold_a_dhcp_port(tmp_path):
    url = f"sqlite:///{tmp_path}/old.db"
    reg = Registry(url)
    reg.create_network("n")
    reg.create_subnet("n", "10.0.0.0/24", no_gateway=True)
    reg.ensure_dhcp_port("n", "node1")
    reg.engine.dispose()
    eng = regdb.make_engine(url)
    with eng.begin(write=True) as c:  # back to what 0.1.0 left: schema 1, no network_hosts
        c.execute("drop table network_hosts")
        c.execute("update registry_state set schema_version = 1")
    eng.dispose()
    reg = Registry(url)
    assert reg.get_network("n").hosts == ["node1"]


def test_upgrade_to_v3_adds_the_ipv6_mode_columns(db_url):
    reg = Registry(db_url)
    reg.create_network("n")
    reg.create_subnet("n", "fd00:1::/64", ipv6_address_mode="slaac")
    reg.engine.dispose()
    eng = regdb.make_engine(db_url)
    with eng.begin(write=True) as c:  # back to schema 2
        c.execute("alter table subnets drop column ipv6_address_mode")
        c.execute("alter table subnets drop column ipv6_ra_mode")
        c.execute("update registry_state set schema_version = 2")
    eng.dispose()
    s = Registry(db_url).list_subnets()[0]
    assert (s.cidr, s.ipv6_address_mode, s.ipv6_ra_mode) == ("fd00:1::/64", None, None)
    eng = regdb.make_engine(db_url)
    with eng.begin() as c:  # idempotent: the columns are there, nothing to add (read only)
        regdb._v3(c)
    eng.dispose()


def test_upgrade_to_v5_adds_the_flavor_column(db_url):
    reg = Registry(db_url)
    reg.create_instance("vm", flavor="m1.large")
    reg.engine.dispose()
    eng = regdb.make_engine(db_url)
    with eng.begin(write=True) as c:  # back to schema 4
        c.execute("alter table instances drop column flavor")
        c.execute("update registry_state set schema_version = 4")
    eng.dispose()
    reg = Registry(db_url)
    assert reg.get_instance("vm").flavor == "m1.small"  # existing instances: the default
    assert reg.update_instance("vm", flavor="m1.tiny").flavor == "m1.tiny"
    reg.engine.dispose()
    eng = regdb.make_engine(db_url)
    with eng.begin() as c:  # idempotent: the column is there, nothing to add (read only)
        regdb._v5_flavor(c)
    eng.dispose()
