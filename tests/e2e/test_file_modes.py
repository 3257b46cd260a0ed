"""issue 13.8: every mode is set explicitly, so a umask of 000 opens nothing to other users."""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import pytest

from tests.e2e.conftest import http

pytestmark = pytest.mark.skipif(shutil.which("dnsmasq") is None or shutil.which("udhcpc") is None,
                                reason="needs dnsmasq and udhcpc")


def modes_under(*roots: Path) -> dict[str, int]:
    out = {}
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            for name in [""] + dirnames + filenames:
                p = Path(dirpath, name) if name else Path(dirpath)
                out[str(p)] = os.lstat(p).st_mode
    return out


def test_enable_under_umask_000_opens_nothing(site):
    # mdtool creates the state dir and the log dir itself (they do not exist yet)
    state = site.state_dir / "state"
    logs = site.state_dir / "log" / "mdtool"
    site.env.update(MDTOOL_STATE_DIR=str(state), MDTOOL_LOG_DIR=str(logs))
    old = os.umask(0)
    try:
        net = site.network("e2e-umask", "10.113.0.0/24")
        vm = site.instance("vm-umask", net)
        site.mdtool("enable-isolated-metadata", net)
        site.boot(vm)
        code, body = http(site.curl(vm, "/openstack/latest/meta_data.json"))
        assert code == 200 and json.loads(body)["uuid"] == vm.id
        site.mdtool("dnsmasq", "reload", net)
    finally:
        os.umask(old)

    modes = modes_under(state, site.state_dir / "log")
    assert str(state / "metadata_proxy_shared_secret") in modes
    assert any(p.endswith(".log") for p in modes if p.startswith(str(logs))), modes
    # Nothing is world-writable; group-writable only for root's group: the agent's socket
    # (0660) and dnsmasq's own log (dnsmasq makes it 0660 nobody:root whatever the umask).
    loose = {p: oct(m & 0o777) for p, m in modes.items()
             if m & 0o002 or (m & 0o020 and os.lstat(p).st_gid != 0)}
    assert loose == {}, f"writable by others under umask 000: {loose}"
    for p, m in modes.items():
        if m & 0o020:
            assert stat.S_ISSOCK(m) or Path(p).name.startswith("dnsmasq-"), (p, oct(m))
    assert stat.S_IMODE(modes[str(state / "metadata_proxy_shared_secret")]) == 0o600
    assert stat.S_IMODE(modes[str(state / "mdtool.db")]) == 0o600
    assert stat.S_IMODE(modes[str(state)]) == 0o755
    assert stat.S_IMODE(modes[str(state / "dhcp")]) == 0o755
    assert stat.S_IMODE(modes[str(logs)]) == 0o755
    for p, m in modes.items():
        if p.endswith(".log") and not Path(p).name.startswith("dnsmasq-"):
            assert stat.S_IMODE(m) == 0o640, (p, oct(m))
