"""systemd render: three hardened units, parsed back and checked key by key."""

import shutil
import subprocess

import pytest

from mdtool import systemd as units
from mdtool.config import Config


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """A tiny systemd unit parser: section -> key -> every value (keys may repeat)."""
    out: dict[str, dict[str, list[str]]] = {}
    section = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = out.setdefault(line[1:-1], {})
            continue
        key, sep, value = line.partition("=")
        assert sep and section is not None, line
        section.setdefault(key, []).append(value)
    return out


@pytest.fixture
def rendered(tmp_path):
    ini = tmp_path / "mdtool.ini"
    ini.write_text("[DEFAULT]\nlog_dir = /var/log/mdtool\n")
    cfg = Config(state_dir="/var/lib/mdtool", config_file=str(ini), environ={})
    out = tmp_path / "units"
    changes = units.write_units(cfg, out, "/usr/local/bin/mdtool")
    assert changes == [f"wrote {out}/mdtool.env"] + [
        f"wrote {out}/mdtool-{r}.service" for r in ("metadata", "agent", "proxy", "node")]
    assert units.write_units(cfg, out, "/usr/local/bin/mdtool") == []
    return ini, out


def test_units_structure(rendered):
    ini, out = rendered
    for role in ("proxy", "agent", "metadata"):
        u = parse_unit((out / f"mdtool-{role}.service").read_text())
        assert set(u) == {"Unit", "Service", "Install"}
        s = u["Service"]
        assert s["ExecStart"] == [f"/usr/local/bin/mdtool {role} run"]
        assert s["EnvironmentFile"] == [f"{out}/mdtool.env"]
        assert s["LimitNOFILE"] == ["65536"]
        assert s["Restart"] == ["on-failure"]
        assert s["NoNewPrivileges"] == ["yes"]
        assert s["ProtectSystem"] == ["strict"]
        assert s["ReadWritePaths"] == ["/var/lib/mdtool", "/var/log/mdtool"]
        assert s["ProtectHome"] == ["yes"] and s["PrivateTmp"] == ["yes"]
        assert "network.target" in u["Unit"]["After"][0].split()
        assert u["Install"]["WantedBy"] == ["multi-user.target"]
        assert "AmbientCapabilities" not in s
    caps = {r: parse_unit((out / f"mdtool-{r}.service").read_text())["Service"]
            ["CapabilityBoundingSet"] for r in ("proxy", "agent", "metadata")}
    assert caps == {"proxy": ["CAP_SYS_ADMIN CAP_NET_BIND_SERVICE"], "agent": [""], "metadata": [""]}
    proxy = parse_unit((out / "mdtool-proxy.service").read_text())
    assert "AF_NETLINK" in proxy["Service"]["RestrictAddressFamilies"][0]
    assert "PrivateNetwork" not in proxy["Service"]
    assert proxy["Unit"]["After"] == ["network.target mdtool-agent.service"]


def test_systemd_analyze_verify(rendered, tmp_path):
    if not shutil.which("systemd-analyze"):
        pytest.skip("no systemd-analyze")
    _, out = rendered
    # ExecStart must exist for verify: point it at a real executable.
    cfg = Config(state_dir=str(tmp_path / "state"), config_file="/dev/null", environ={})
    (tmp_path / "state").mkdir()
    units.write_units(cfg, out, shutil.which("true"))
    r = subprocess.run(["systemd-analyze", "verify", *sorted(map(str, out.glob("*.service")))],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


def test_cli_render(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from mdtool.cli import cli
    monkeypatch.delenv("MDTOOL_CONFIG", raising=False)
    monkeypatch.delenv("MDTOOL_DB", raising=False)
    argv = ["--state-dir", str(tmp_path / "s"), "systemd", "render",
            "--output-dir", str(tmp_path / "u"), "--mdtool", "/opt/bin/mdtool"]
    r = CliRunner().invoke(cli, argv + ["--dry-run"])
    assert r.exit_code == 0, r.output
    assert r.stderr.splitlines()[-1] == f"systemd render {tmp_path}/u: 5 change(s) would"
    assert f"write {tmp_path}/u/mdtool.env (mode 0600)" in r.stderr
    assert not (tmp_path / "u").exists()
    r = CliRunner().invoke(cli, argv)
    assert r.exit_code == 0, r.output
    assert r.stderr.splitlines()[-1] == f"systemd render {tmp_path}/u: 5 change(s) done"
    text = (tmp_path / "u" / "mdtool-agent.service").read_text()
    assert "ExecStart=/opt/bin/mdtool agent run\n" in text
    assert f"EnvironmentFile={tmp_path}/u/mdtool.env\n" in text
    r = CliRunner().invoke(cli, argv + ["--dry-run"])
    assert r.exit_code == 0 and "nothing to do, already as asked" in r.stderr
    r = CliRunner().invoke(cli, ["systemd", "render", "--output-dir", str(tmp_path), "--mdtool", "rel"])
    assert r.exit_code == 2 and "absolute path" in r.stderr
    r = CliRunner().invoke(cli, ["systemd", "render", "--mdtool", "/opt/my tools/mdtool"])
    assert r.exit_code == 2 and r.stderr.startswith("mdtool: error: --mdtool: expected an absolute")


def test_render_defaults_to_stdout_and_writes_nothing(tmp_path, monkeypatch):
    """issue 16.2: no --output-dir printed (secrets masked); it used to write /etc/systemd/system."""
    from click.testing import CliRunner

    from mdtool.cli import cli
    monkeypatch.delenv("MDTOOL_CONFIG", raising=False)
    monkeypatch.setenv("MDTOOL_DB", "postgresql://mdtool:Pw0rd-x@db.example/mdtool")
    monkeypatch.setenv("MDTOOL_METADATA_PROXY_SHARED_SECRET", "sekrit-value")
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(cli, ["--state-dir", "/srv/mdtool", "systemd", "render",
                                 "--mdtool", "/opt/bin/mdtool"])
    assert r.exit_code == 0, r.output
    assert "Pw0rd-x" not in r.output and "sekrit-value" not in r.output
    assert "# ---- /etc/systemd/system/mdtool-proxy.service (mode 0644) ----\n" in r.stdout
    assert "# ---- /etc/systemd/system/mdtool.env (mode 0600) ----\n" in r.stdout
    assert 'MDTOOL_DB="postgresql://mdtool:********@db.example/mdtool"\n' in r.stdout
    assert "EnvironmentFile=/etc/systemd/system/mdtool.env\n" in r.stdout
    assert list(tmp_path.iterdir()) == []
    r = CliRunner().invoke(cli, ["systemd", "render", "--dry-run"])
    assert r.exit_code == 2 and "--dry-run needs --output-dir" in r.stderr


def test_effective_configuration_goes_into_a_private_environment_file(tmp_path):
    """issue 13.7/16.2: MDTOOL_METADATA_LISTEN_PORT reached no unit (they listened on 8775),
    and --db with its password went into 0644 units and every `ps`."""
    import os
    import stat
    ini = tmp_path / "mdtool.ini"
    ini.write_text("[DEFAULT]\ndebug = true\n")
    secret = 'a "quoted" $ecret `x` \\ end'
    cfg = Config(state_dir="/var/lib/mdtool", config_file=str(ini),
                 db_url="postgresql://mdtool:PW-123@db.example:5432/mdtool",
                 environ={"MDTOOL_METADATA_LISTEN_PORT": "18976",
                          "MDTOOL_METADATA_PROXY_SHARED_SECRET": secret,
                          "MDTOOL_METADATA_HAPROXY__TIMEOUT_SERVER": "40"})
    out = tmp_path / "u"
    units.write_units(cfg, out, "/usr/local/bin/mdtool", env_file=tmp_path / "etc" / "mdtool.env")
    env_file = tmp_path / "etc" / "mdtool.env"
    assert stat.S_IMODE(os.stat(env_file).st_mode) == 0o600
    for unit in out.glob("*.service"):
        text = unit.read_text()
        assert stat.S_IMODE(os.stat(unit).st_mode) == 0o644
        assert "PW-123" not in text and "$ecret" not in text and "18976" not in text, unit
        assert f"EnvironmentFile={env_file}\n" in text
    # read it back as a shell does (systemd's EnvironmentFile quoting is the same subset)
    import subprocess
    got = subprocess.run(["bash", "-c", f"set -a; . {env_file}; env -0"], capture_output=True,
                         env={}, check=True).stdout.decode().split("\0")
    env = dict(line.split("=", 1) for line in got if line.startswith("MDTOOL_"))
    assert env == {"MDTOOL_STATE_DIR": "/var/lib/mdtool",
                   "MDTOOL_DB": "postgresql://mdtool:PW-123@db.example:5432/mdtool",
                   "MDTOOL_CONFIG": str(ini),
                   "MDTOOL_METADATA_PROXY_SHARED_SECRET": secret,
                   "MDTOOL_METADATA_LISTEN_PORT": "18976",
                   "MDTOOL_METADATA_HAPROXY__TIMEOUT_SERVER": "40.0"}
    # and the daemons load exactly that configuration back
    back = Config(environ=env)
    assert back.get("metadata_listen_port") == 18976 and back.get("debug") is True
    assert back.db_url == cfg.db_url and back.shared_secret() == secret


def test_private_tmp_warnings(tmp_path):
    cfg = Config(state_dir="/tmp/mdtool-state", config_file="/dev/null", environ={})
    warnings = units.hidden_paths(cfg, "/root/venv/bin/mdtool")
    assert any("PrivateTmp=yes" in w and "/tmp/mdtool-state" in w and "mdtool-node" not in w
               for w in warnings), warnings
    assert any("ProtectHome=yes" in w and "/root/venv/bin/mdtool" in w for w in warnings), warnings
    cfg = Config(state_dir="/var/lib/mdtool", config_file="/dev/null", environ={})
    assert units.hidden_paths(cfg, "/usr/local/bin/mdtool") == []


def test_node_unit_leaves_the_data_path_running_on_stop(rendered):
    ini, out = rendered
    u = parse_unit((out / "mdtool-node.service").read_text())
    s = u["Service"]
    assert s["ExecStart"] == ["/usr/local/bin/mdtool node run"]
    assert s["EnvironmentFile"] == [f"{out}/mdtool.env"] and s["LimitNOFILE"] == ["65536"]
    assert s["KillMode"] == ["process"]  # SIGTERM to node run only: dnsmasq and daemons stay
    # namespaces it creates must be the host's: no private mount namespace
    for key in ("ProtectSystem", "PrivateTmp", "PrivateDevices", "PrivateMounts", "ReadWritePaths"):
        assert key not in s, key
    caps = s["CapabilityBoundingSet"][0].split()
    assert {"CAP_SYS_ADMIN", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_KILL"} <= set(caps)
