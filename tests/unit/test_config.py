"""Config: sources, precedence, errors naming file and line, check_file, sample."""

import pytest

from mdtool import config as cfgmod
from mdtool.config import Config, check_file
from mdtool.errors import BadInput


def write(tmp_path, text):
    p = tmp_path / "mdtool.ini"
    p.write_text(text)
    return p


def test_defaults_and_sources(tmp_path):
    c = Config(state_dir=str(tmp_path), environ={})
    assert c.get("nova_metadata_port") == 8775
    assert c.values[("DEFAULT", "nova_metadata_port")].source == "default"
    assert c.nova_metadata_url == f"unix:{tmp_path}/metadata"  # no TCP unless asked for
    assert c.nova_metadata_is_local and c.metadata_listen is None
    assert c.get("debug") is False


@pytest.mark.parametrize("env, url, local, listen", [
    ({"MDTOOL_NOVA_METADATA_HOST": "nova.example"}, "http://nova.example:8775", False, None),
    ({"MDTOOL_NOVA_METADATA_HOST": "fd00::5", "MDTOOL_NOVA_METADATA_PROTOCOL": "https",
      "MDTOOL_NOVA_METADATA_PORT": "8443"}, "https://[fd00::5]:8443", False, None),
    ({"MDTOOL_NOVA_METADATA_PORT": "9000"}, "unix:{d}/metadata", True, None),
    ({"MDTOOL_METADATA_LISTEN_PORT": "9001", "MDTOOL_NOVA_METADATA_URL": "http://127.0.0.1:9001"},
     "http://127.0.0.1:9001", True, ("127.0.0.1", 9001)),
    ({"MDTOOL_METADATA_LISTEN_HOST": "0.0.0.0"}, "unix:{d}/metadata", True, ("0.0.0.0", 8775)),
])
def test_metadata_upstream_is_the_unix_socket_unless_tcp_is_named(tmp_path, env, url, local,
                                                                   listen):
    c = Config(state_dir=str(tmp_path), environ=env)
    assert c.nova_metadata_url == url.format(d=tmp_path)
    assert c.nova_metadata_is_local is local and c.metadata_listen == listen


def test_file_then_env(tmp_path):
    p = write(tmp_path, "[DEFAULT]\n# comment\nnova_metadata_port = 9000\ndebug = yes\n"
                        "[metadata_rate_limiting]\nrate_limit_enabled = true\n")
    c = Config(state_dir=str(tmp_path), config_file=str(p),
               environ={"MDTOOL_NOVA_METADATA_PORT": "9100",
                        "MDTOOL_METADATA_RATE_LIMITING__BASE_QUERY_RATE_LIMIT": "7"})
    assert c.get("debug") is True
    assert c.values[("DEFAULT", "debug")].source == f"{p}:4"
    assert c.get("nova_metadata_port") == 9100
    assert c.values[("DEFAULT", "nova_metadata_port")].source == "env MDTOOL_NOVA_METADATA_PORT"
    assert c.get("rate_limit_enabled", "metadata_rate_limiting") is True
    assert c.get("base_query_rate_limit", "metadata_rate_limiting") == 7


@pytest.mark.parametrize("text, line, words", [
    ("[DEFAULT]\nnova_metdata_url = http://x\n", 2, "did you mean 'nova_metadata_url'"),
    ("\n\n[DEFAULT]\ndebug = maybe\n", 4, "bad value for debug"),
    ("[nope]\n", 1, "unknown section [nope]"),
    ("[metadata_haproxy]\nrate_limit_enabled = 1\n", 2, "belongs in [metadata_rate_limiting]"),
    ("[DEFAULT]\njust words\n", 2, "expected 'option = value'"),
    ("[DEFAULT]\nnova_metadata_port = 0\n", 2, "from 1 to 65535"),
])
def test_errors_name_file_and_line(tmp_path, text, line, words):
    p = write(tmp_path, text)
    with pytest.raises(BadInput) as e:
        Config(state_dir=str(tmp_path), config_file=str(p), environ={})
    assert str(e.value).startswith(f"{p}:{line}: ")
    assert words in str(e.value)
    assert "\n" not in str(e.value)


def test_bad_env_value_names_variable(tmp_path):
    with pytest.raises(BadInput, match="MDTOOL_METRICS_PORT_AGENT: bad value"):
        Config(state_dir=str(tmp_path), environ={"MDTOOL_METRICS_PORT_AGENT": "x"})


def test_check_file_collects_everything(tmp_path):
    p = write(tmp_path, "[DEFAULT]\ndebug = maybe\nbogus = 1\nlog_dir = /var/log/mdtool\n[x]\n")
    errs = check_file(p)
    assert [e.split(": ")[0] for e in errs] == [f"{p}:2", f"{p}:3", f"{p}:5"]
    assert check_file(write(tmp_path, "[DEFAULT]\nlog_dir = /tmp\n")) == []


def test_sample_is_a_valid_file(tmp_path):
    """Every default, uncommented, passes its own validation."""
    text = cfgmod.sample_ini()
    unset = {o.name for o in cfgmod.OPTIONS if o.default is None}
    lines = []
    for line in text.splitlines():
        if line.startswith("#") and " = " in line and line[1:].split(" = ")[0] not in unset:
            line = line[1:]
        lines.append(line)
    for o in cfgmod.OPTIONS:
        assert f"#{o.name} =" in text
    assert check_file(write(tmp_path, "\n".join(lines))) == []


def test_masking():
    assert cfgmod.mask("abc") == "********"
    assert cfgmod.mask(None) == ""
    assert cfgmod.mask_url("postgresql://u:pw@db/x") == "postgresql://u:********@db/x"
    assert cfgmod.mask_url("sqlite:////var/lib/mdtool/mdtool.db") == "sqlite:////var/lib/mdtool/mdtool.db"
