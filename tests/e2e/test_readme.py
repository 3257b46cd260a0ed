"""The README's walk-through runs as written (issue 16.6): a test extracts the block and
runs it with bash, then checks that it served vm1 and left nothing behind."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.e2e.helpers import processes_matching

README = Path(__file__).resolve().parents[2] / "README.md"
pytestmark = pytest.mark.skipif(shutil.which("udhcpc") is None or shutil.which("ssh-keygen") is None,
                                reason="needs udhcpc and ssh-keygen")


def walkthrough() -> str:
    text = README.read_text()
    start = text.index("## The story, with mdtool")
    block = re.search(r"```sh\n(.*?)```", text[start:], re.S)
    assert block, "README lost its walk-through block"
    return block.group(1)


def test_readme_walkthrough_runs_as_written(site, tmp_path):
    script = walkthrough()
    # The one global name in it: an instance namespace. Everything else is keyed by ids or
    # lives in the state dir. The README's own text is run otherwise unchanged.
    ns = f"rd-{uuid.uuid4().hex[:8]}"
    site.cleanup.netns(ns)
    script = script.replace("vm1ns", ns)
    res = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, text=True,
                         capture_output=True, timeout=240, stdin=subprocess.DEVNULL,
                         env={**os.environ, **site.env, "PATH": f"{Path(os.sys.executable).parent}:"
                                                              f"{os.environ['PATH']}"})
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    md = json.loads(next(ln for ln in res.stdout.splitlines() if ln.startswith("{")))
    assert md["name"] == "vm1" and "mykey" in md["public_keys"]
    assert "169.254.169.254 via" in res.stdout and "default via" not in res.stdout
    assert re.search(r"\bproxy\b.*meta_data\.json", res.stdout)  # mdtool logs saw the request
    # ... and its teardown leaves nothing: registry, namespaces, bridge, veths, processes.
    assert site.json("net-list") == [] and site.json("instance-list") == []
    assert ns not in subprocess.run(["ip", "netns"], capture_output=True, text=True).stdout
    assert not processes_matching(str(site.state_dir))
    net_id = re.search(r"qdhcp-([0-9a-f-]{36})", res.stdout).group(1)
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert f"brq{net_id[:11]}" not in links and f"mdtool:dhcp:{net_id}" not in links
