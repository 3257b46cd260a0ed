"""Typed options: every value rendered into a file or argv is checked at load (issue 13.2)."""

import pytest

from mdtool import config as cfgmod
from mdtool.config import Config, check_file
from mdtool.errors import BadInput

INJECTION = "openstacklocal\n--dhcp-script=/tmp/x"


def test_every_option_has_a_strict_type():
    for o in cfgmod.OPTIONS:
        assert isinstance(o.type, cfgmod.Type), f"{o.name}: give it a type from mdtool.config"


@pytest.mark.parametrize("opt", cfgmod.OPTIONS, ids=lambda o: f"{o.section}.{o.name}")
def test_no_option_lets_a_newline_through(opt):
    """An argv element or a file line smuggled in through any option is refused."""
    with pytest.raises(ValueError):
        opt.type.parse(INJECTION)
    with pytest.raises(ValueError):
        opt.type.parse("a\x00b")


@pytest.mark.parametrize("opt", cfgmod.OPTIONS, ids=lambda o: f"{o.section}.{o.name}")
def test_every_default_passes_its_type(opt):
    if opt.default is not None:
        assert opt.type.parse(opt.type.text(opt.default)) == opt.default


def test_dns_domain_injection_from_environment_names_the_variable(tmp_path):
    with pytest.raises(BadInput) as e:
        Config(state_dir=str(tmp_path), environ={"MDTOOL_DNS_DOMAIN": INJECTION})
    assert str(e.value).startswith("environment MDTOOL_DNS_DOMAIN: bad value for dns_domain: ")
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("name, value", [
    ("dns_domain", "x,ignore,y"),
    ("dns_domain", "-bad.example"),
    ("dns_domain", "a..b"),
    ("dns_domain", "example.123"),          # RFC 1123: a TLD is not all numeric
    ("dns_domain", "a" * 64 + ".org"),      # a label is at most 63 characters
    ("dns_domain", "x y"),
    ("dnsmasq_dns_servers", "notanip"),
    ("dnsmasq_dns_servers", "10.0.0.1,notanip"),
    ("dnsmasq_dns_servers", "10.0.0.1/24"),
    ("nova_metadata_host", "a b"),
    ("metadata_listen_host", "localhost,x"),
    ("nova_metadata_url", "http://x y/"),
    ("nova_metadata_url", "ftp://x/"),
    ("nova_metadata_url", "http://host:99999/"),
    ("log_dir", "relative/logs"),
    ("log_file", "/var/log/x y.log"),
    ("log_dir", "/var/log/%n"),              # a systemd specifier in ReadWritePaths=
    ("host", "node_1!"),
])
def test_bad_values_name_file_and_line(tmp_path, name, value):
    p = tmp_path / "mdtool.ini"
    p.write_text(f"[DEFAULT]\n\n{name} = {value}\n")
    errors = check_file(p)
    assert len(errors) == 1 and errors[0].startswith(f"{p}:3: bad value for {name}: "), errors
    with pytest.raises(BadInput, match=f"^{p}:3: bad value for {name}: "):
        Config(state_dir=str(tmp_path), config_file=str(p), environ={})


@pytest.mark.parametrize("name, value, parsed", [
    ("dns_domain", "Example.ORG.", "example.org"),
    ("dns_domain", "openstacklocal", "openstacklocal"),
    ("dnsmasq_dns_servers", "10.0.0.1, 2001:db8::1", ["10.0.0.1", "2001:db8::1"]),
    ("dnsmasq_dns_servers", "", []),
    ("nova_metadata_host", "nova.example.org", "nova.example.org"),
    ("nova_metadata_host", "2001:db8::5", "2001:db8::5"),
    ("nova_metadata_url", "https://nova.example.org:8775/", "https://nova.example.org:8775"),
    ("nova_metadata_url", "http://[2001:db8::5]:8775", "http://[2001:db8::5]:8775"),
    ("log_dir", "/var/log/mdtool/", "/var/log/mdtool"),
    ("host", "compute-1.example", "compute-1.example"),
    ("host", "Compute_1", "Compute_1"),
])
def test_good_values(tmp_path, name, value, parsed):
    c = Config(state_dir=str(tmp_path), environ={cfgmod.env_name("DEFAULT", name): value})
    assert c.get(name) == parsed


@pytest.mark.parametrize("url", ["postgres://u:p@h/db", "postgresql+psycopg2://u@h/db",
                                 "sqlite:////var/lib/mdtool/mdtool.db", "sqlite://"])
def test_database_urls_the_registry_takes(tmp_path, url):
    assert Config(state_dir=str(tmp_path), db_url=url, environ={}).db_url == url


def test_global_settings_are_typed(tmp_path):
    with pytest.raises(BadInput, match="^environment MDTOOL_STATE_DIR: bad value for state_dir: "):
        Config(environ={"MDTOOL_STATE_DIR": "/var/lib/x\n--dhcp-script=/tmp/x"})
    with pytest.raises(BadInput, match="^--state-dir: bad value for state_dir: "):
        Config(state_dir="relative", environ={})
    with pytest.raises(BadInput, match="^environment MDTOOL_DB: bad value for db: "):
        Config(state_dir=str(tmp_path), environ={"MDTOOL_DB": "postgresql://u:p@h/db\nx"})
    with pytest.raises(BadInput, match="^--db: bad value for db: "):
        Config(state_dir=str(tmp_path), db_url="mysql://x", environ={})


@pytest.mark.parametrize("text", ["host-10-0-0-5", "vm1", "a" * 63, "vm-1.example.org",
                                  "1234", "x.y1"])
def test_dns_name_accepts(text):
    assert cfgmod.dns_name(text) == text


@pytest.mark.parametrize("text", ["", "-vm", "vm-", "a" * 64, "vm_1", "vm.123", "a..b",
                                  "vm\n", "vm 1", "vm,1", "é", ".", ("a" * 63 + ".") * 4 + "org"])
def test_dns_name_refuses(text):
    with pytest.raises(ValueError):
        cfgmod.dns_name(text)


@pytest.mark.parametrize("text, value", [("512", 512), ("4K", 4096), ("10M", 10 << 20),
                                         ("1g", 1 << 30), ("16 KiB", 16384)])
def test_size_type(text, value):
    assert cfgmod.Size(0, 1 << 40).parse(text) == value
    with pytest.raises(ValueError):
        cfgmod.Size(1024, 1 << 20).parse("2G")
    with pytest.raises(ValueError):
        cfgmod.Size(0, 1 << 20).parse("ten")
