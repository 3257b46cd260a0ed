"""issue 13.7: with MDTOOL_DB=postgresql://user:PASSWORD@… exported (as docs/multinode.md
suggests), the password is in no argv of any process mdtool starts and in no unit file."""

from __future__ import annotations

import json
import os
import shutil
import stat
import uuid
from pathlib import Path

import pytest

from tests import pg
from tests.e2e.conftest import http

pytestmark = pytest.mark.skipif(shutil.which("dnsmasq") is None or shutil.which("udhcpc") is None,
                                reason="needs dnsmasq and udhcpc")


def argv_holding(needle: str) -> dict[int, str]:
    out = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                raw = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if needle.encode() in raw:
                out[int(entry)] = raw.replace(b"\0", b" ").decode(errors="replace")
    return out


def test_database_password_in_no_argv_and_no_unit(site, tmp_path):
    if pg.admin_url() is None:
        pytest.skip("no PostgreSQL server (scripts/postgres.sh start)")
    password = "PW" + uuid.uuid4().hex
    with pg.fresh_database() as url:
        # peer authentication over the local socket ignores the password: any will do
        site.env["MDTOOL_DB"] = pg.with_user(url, "root", password)
        net = site.network("e2e-pw", "10.114.0.0/24")
        vm = None
        try:
            vm = site.instance("vm-pw", net)
            site.mdtool("enable-isolated-metadata", net)
            site.boot(vm)
            code, body = http(site.curl(vm, "/openstack/latest/meta_data.json"))
            assert code == 200 and json.loads(body)["uuid"] == vm.id
            assert site.pid("agent") and site.pid("metadata") and site.pid("proxy")
            assert argv_holding(password) == {}

            out = tmp_path / "units"
            res = site.mdtool("systemd", "render", "--output-dir", out, "--mdtool", shutil.which("true"))
            assert password not in res.stdout + res.stderr
            for unit in out.glob("*.service"):
                assert password not in unit.read_text(), unit
            env_file = out / "mdtool.env"
            assert password in env_file.read_text()
            assert stat.S_IMODE(env_file.stat().st_mode) == 0o600 and env_file.stat().st_uid == 0
            shown = site.mdtool("systemd", "render").stdout
            assert password not in shown and "MDTOOL_DB=" in shown
        finally:
            # The registry goes with this block, so the site's own teardown cannot read it:
            # unplug here, or the bridge mdtool made for the network outlives the test.
            if vm is not None:
                site.mdtool("port-unplug", vm.port_id, vm.namespace, check=False)
            site.mdtool("disable-isolated-metadata", net, check=False)
