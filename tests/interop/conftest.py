"""The interop tier: OpenStack's own code (Neutron, Nova) run against mdtool.

Neutron and Nova live in a side virtualenv, ``.venv-openstack`` at the top of the checkout,
built by ``scripts/setup.sh --test`` from ``tests/interop/requirements.txt``: their pins never
touch mdtool's own environment. A test hands a JSON payload to a *driver* (a module of
``tests/interop/drivers/`` with ``main(payload)``), which runs in that virtualenv and answers
JSON. Drivers stub only what needs a server (namespace lookups, the dnsmasq version probe,
Neutron's RPC, Nova's database).

A missing or wrong virtualenv FAILS the tests (it never skips them): a CI run without
Neutron's code would otherwise pass while proving nothing.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
VENV = Path(os.environ.get("MDTOOL_OPENSTACK_VENV", ROOT / ".venv-openstack"))
DRIVERS = Path(__file__).resolve().parent / "drivers"
REQUIREMENTS = Path(__file__).resolve().parent / "requirements.txt"


def pytest_collection_modifyitems(config, items):
    for item in items:
        if Path(str(item.fspath)).is_relative_to(Path(__file__).parent):
            item.add_marker(pytest.mark.interop)


def _pins() -> dict[str, str]:
    pins = {}
    for line in REQUIREMENTS.read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.-]+)==(\S+)", line.strip())
        if m:
            pins[m.group(1).lower()] = m.group(2)
    return pins


class OpenStackVenv:
    """Runs drivers in .venv-openstack (see the module docstring)."""

    def __init__(self, python: Path):
        self.python = python
        self._served: list[subprocess.Popen] = []

    def _argv(self, driver: str, out: str) -> list[str]:
        return [str(self.python), str(DRIVERS / "run.py"), driver, out]

    def run(self, driver: str, payload, timeout: float = 180):
        """``drivers/<driver>.py``'s ``main(payload)`` in the virtualenv; its JSON result.
        A driver that raises fails the test with the driver's stderr."""
        with tempfile.NamedTemporaryFile(prefix="interop-", suffix=".json") as out:
            proc = subprocess.run(self._argv(driver, out.name), input=json.dumps(payload),
                                  capture_output=True, text=True, timeout=timeout)
            if proc.returncode != 0:
                pytest.fail(f"interop driver {driver} exited {proc.returncode}:\n"
                            f"{proc.stderr[-4000:]}", pytrace=False)
            return json.loads(Path(out.name).read_text())

    def serve(self, driver: str, payload, timeout: float = 60):
        """Start a serving driver (``main`` prints one JSON line when ready, then serves);
        returns ``(process, ready)``. Terminated at the end of the session."""
        proc = subprocess.Popen(self._argv(driver, "--serve"), stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self._served.append(proc)
        proc.stdin.write(json.dumps(payload))
        proc.stdin.close()
        import selectors
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout):
            pytest.fail(f"interop driver {driver} not ready after {timeout} s", pytrace=False)
        line = proc.stdout.readline()
        if not line:
            proc.wait(5)
            pytest.fail(f"interop driver {driver} exited {proc.returncode} before ready:\n"
                        f"{proc.stderr.read()[-4000:]}", pytrace=False)
        return proc, json.loads(line)

    def close(self) -> None:
        for proc in self._served:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            for f in (proc.stdout, proc.stderr):
                if f:
                    f.close()


@pytest.fixture(scope="session")
def openstack():
    """The OpenStack side virtualenv; fails (never skips) when it is missing or wrong."""
    python = VENV / "bin" / "python"
    if not python.exists():
        pytest.fail(f"{VENV} is missing: run `scripts/setup.sh --test` (the interop tier needs "
                    f"Neutron's and Nova's own code)", pytrace=False)
    pins = _pins()
    probe = subprocess.run(
        [str(python), "-c", "import json, importlib.metadata as m; "
         f"print(json.dumps({{n: m.version(n) for n in {sorted(pins)!r}}}))"],
        capture_output=True, text=True, timeout=60)
    if probe.returncode != 0:
        pytest.fail(f"{VENV}: {probe.stderr.strip().splitlines()[-1:]}; "
                    f"run `scripts/setup.sh --test`", pytrace=False)
    have = json.loads(probe.stdout)
    if have != pins:
        pytest.fail(f"{VENV} has {have}, tests/interop/requirements.txt pins {pins}: "
                    f"run `scripts/setup.sh --test`", pytrace=False)
    venv = OpenStackVenv(python)
    yield venv
    venv.close()
