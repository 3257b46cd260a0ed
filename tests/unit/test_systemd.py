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
    assert changes == [f"wrote {out}/mdtool-{r}.service" for r in ("metadata", "agent", "proxy", "node")]
    assert units.write_units(cfg, out, "/usr/local/bin/mdtool") == []
    return ini, out


def test_units_structure(rendered):
    ini, out = rendered
    for role in ("proxy", "agent", "metadata"):
        u = parse_unit((out / f"mdtool-{role}.service").read_text())
        assert set(u) == {"Unit", "Service", "Install"}
        s = u["Service"]
        assert s["ExecStart"] == [f"/usr/local/bin/mdtool --state-dir /var/lib/mdtool "
                                  f"--config-file {ini} {role} run"]
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
    r = CliRunner().invoke(cli, ["--state-dir", str(tmp_path / "s"), "systemd", "render",
                                 "--output-dir", str(tmp_path / "u"), "--mdtool", "/opt/bin/mdtool"])
    assert r.exit_code == 0, r.output
    assert r.stderr.splitlines()[-1] == f"systemd render {tmp_path}/u: 4 change(s) done"
    text = (tmp_path / "u" / "mdtool-agent.service").read_text()
    assert f"ExecStart=/opt/bin/mdtool --state-dir {tmp_path}/s agent run\n" in text
    r = CliRunner().invoke(cli, ["systemd", "render", "--output-dir", str(tmp_path), "--mdtool", "rel"])
    assert r.exit_code == 2 and "absolute path" in r.stderr


def test_node_unit_leaves_the_data_path_running_on_stop(rendered):
    ini, out = rendered
    u = parse_unit((out / "mdtool-node.service").read_text())
    s = u["Service"]
    assert s["ExecStart"] == [f"/usr/local/bin/mdtool --state-dir /var/lib/mdtool "
                              f"--config-file {ini} node run"]
    assert s["KillMode"] == ["process"]  # SIGTERM to node run only: dnsmasq and daemons stay
    # namespaces it creates must be the host's: no private mount namespace
    for key in ("ProtectSystem", "PrivateTmp", "PrivateDevices", "PrivateMounts", "ReadWritePaths"):
        assert key not in s, key
    caps = s["CapabilityBoundingSet"][0].split()
    assert {"CAP_SYS_ADMIN", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_KILL"} <= set(caps)
