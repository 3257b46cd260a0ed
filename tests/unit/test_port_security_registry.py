"""port_security_enabled in the registry: default on, switched per port, and the schema
step that adds it to a database made before it existed (SQLite and PostgreSQL)."""


from mdtool.registry import Registry
from mdtool.registry import db as regdb


def test_on_by_default_and_switched_per_port(db_url):
    reg = Registry(db_url)
    reg.create_network("n")
    reg.create_subnet("n", "10.0.0.0/24", no_gateway=True)
    a = reg.create_port("n")
    b = reg.create_port("n", port_security_enabled=False)
    assert a.port_security_enabled is True and b.port_security_enabled is False
    assert reg.update_port(a.id, port_security_enabled=False).port_security_enabled is False
    assert reg.update_port(a.id, name="x").port_security_enabled is False  # untouched
    assert reg.update_port(a.id, port_security_enabled=True).port_security_enabled is True
    assert {p.id: p.port_security_enabled for p in reg.list_ports("n")} == {a.id: True, b.id: False}


def test_upgrade_from_v3_adds_the_column_on_and_is_idempotent(db_url):
    reg = Registry(db_url)
    reg.create_network("n")
    reg.create_subnet("n", "10.0.0.0/24", no_gateway=True)
    port = reg.create_port("n")
    eng = regdb.make_engine(db_url)
    with eng.begin(write=True) as c:  # a database of schema 3
        c.execute("ALTER TABLE ports DROP COLUMN port_security_enabled")
        c.execute("UPDATE registry_state SET schema_version = 3")
    assert regdb.upgrade(eng) == 3
    with eng.begin(write=True) as c:
        regdb._v4_port_security(c)  # the column is there: nothing to do, no error
        assert c.execute("select schema_version from registry_state").scalar() \
            == regdb.SCHEMA_VERSION
    eng.dispose()
    assert Registry(db_url).get_port(port.id).port_security_enabled is True
