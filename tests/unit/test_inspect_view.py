"""inspect's text view at 80 columns: a UUID is never broken across lines."""

import io
import re

from rich.console import Console

from mdtool.cli.inspect import _show
from mdtool.inspect.checks import evaluate
from mdtool.inspect.report import Report
from tests.unit.test_inspect_checks import healthy

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def render(obs, width: int = 80) -> str:
    out = io.StringIO()
    console = Console(file=out, width=width, soft_wrap=True, highlight=False, color_system=None)
    _show(console, Report(obs, evaluate(obs)))
    return out.getvalue()


def test_uuids_stay_whole_at_80_columns():
    o = healthy()
    o.bridge_end = None  # a failing check whose detail and cause carry ids
    text = render(o)
    ids = {o.network.id, o.probe.instance_id}
    for i in ids:
        assert i in text, f"{i} broken or missing:\n{text}"
    # nothing that starts like a UUID ends early at a line break
    for line in text.splitlines():
        for m in re.finditer(r"(?<![0-9a-z])[0-9a-f]{8}-[0-9a-f-]*$", line):
            assert UUID.fullmatch(m.group()), f"cut UUID at the end of: {line!r}"


def test_one_cause_is_shown_once_with_its_fix():
    o = healthy()
    o.bridge_end = None
    text = render(o)
    assert text.count("fix: mdtool enable-isolated-metadata net1") == 1
    assert re.search(r"^FAIL\s+DHCP port on the bridge", text, re.M)
