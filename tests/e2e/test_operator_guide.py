"""docs/operator-guide.md runs top to bottom as written (issue 16): every `$` line of the page
runs in order in one shell, each must exit 0, and every output line the page shows must be
among what really printed (ids, MACs, pids and times aside). Then the session's teardown
must have left nothing behind."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.e2e import transcript
from tests.e2e.helpers import processes_matching

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "operator-guide.md"
pytestmark = pytest.mark.skipif(
    any(shutil.which(t) is None for t in ("udhcpc", "ssh-keygen", "netstat", "route", "nft", "curl")),
    reason="needs udhcpc, ssh-keygen, net-tools, nft and curl")


def test_operator_guide_runs_as_written(site, tmp_path):
    commands = transcript.parse(GUIDE.read_text())
    assert len(commands) > 40, "the guide lost its walk-through"
    # The page's two global names: the instance namespace and the state dir. Everything else
    # is keyed by the ids the session reads into variables.
    ns = f"og-{uuid.uuid4().hex[:8]}"
    site.cleanup.netns(ns)
    work = tmp_path / "session"
    work.mkdir()
    env = {**os.environ, **site.env, "MDTOOL_HOST": "node1",
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    outcomes = transcript.run(commands, cwd=work, env=env, timeout=400,
                              substitute={"/var/lib/mdtool": str(site.state_dir), "vm1ns": ns})
    record = tmp_path / "transcript.txt"
    record.write_text("\n".join(f"$ {o.command.text}\n{o.output}\n[exit {o.exit_code}]"
                                for o in outcomes))

    problems = []
    for o in outcomes:
        where = f"docs/operator-guide.md:{o.command.line}: $ {o.command.first_line}"
        if o.exit_code != 0:
            problems.append(f"{where}\n  exit {o.exit_code}\n  {o.output[-1500:]}")
            continue
        expected = [ln.replace("/var/lib/mdtool", str(site.state_dir)).replace("vm1ns", ns)
                    for ln in o.command.shown]
        missing = transcript.missing_lines(expected, o.output)
        if missing:
            problems.append(f"{where}\n  shown but not printed: {missing[:3]}\n"
                            f"  printed:\n{o.output[-2000:]}")
    assert not problems, f"{len(problems)} step(s) differ (all output: {record})\n\n" + \
        "\n\n".join(problems[:4])

    # The session ended with the guide's own teardown: nothing of it may remain.
    assert site.json("net-list") == [] and site.json("instance-list") == []
    assert ns not in subprocess.run(["ip", "netns"], capture_output=True, text=True).stdout
    assert not processes_matching(str(site.state_dir))
    net_id = next(o for o in outcomes if o.command.text.startswith("mdtool net-create")).output
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    ids = transcript._NORMAL[0][0].findall(net_id)
    assert ids, "net-create printed no id"
    assert f"brq{ids[0][:11]}" not in links and f"mdtool:dhcp:{ids[0]}" not in links
