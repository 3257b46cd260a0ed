"""``mdtool bench``: throughput, latency, memory and scale of the metadata path, side by
side with haproxy (the ceiling and Neutron's architecture), measured in one run.

:func:`run` drives the sections of :mod:`mdtool.bench.suite` over a
:class:`~mdtool.bench.harness.Harness` (everything it creates is removed at the end, also on
failure) and writes ``benchmarks.json``, ``benchmarks-table.md`` and ``benchmarks.png``.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

SECTIONS = ("throughput", "memory", "boot", "setup", "registry", "cli", "node", "storm", "scale")
NEEDS = ("ip", "wrk", "haproxy", "udhcpc", "dnsmasq", "ss")


def missing_requirements() -> list[str]:
    missing = [p for p in NEEDS if shutil.which(p) is None]
    if os.geteuid() != 0:
        missing.insert(0, "root")
    return missing


def machine() -> dict:
    def out(*argv: str) -> str:
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout.strip()
        except OSError:
            return ""
    from mdtool import __version__
    return {"nproc": os.cpu_count(), "kernel": platform.release(),
            "loadavg_at_start": Path("/proc/loadavg").read_text().split()[:3],
            "cpu": next((l.split(":", 1)[1].strip() for l in
                         Path("/proc/cpuinfo").read_text().splitlines()
                         if l.startswith("model name")), ""),
            "memory": out("free", "-h").splitlines()[1:2],
            "python": sys.version.split()[0], "mdtool": __version__,
            "haproxy": out("haproxy", "-v").splitlines()[0] if out("haproxy", "-v") else "",
            "wrk": (subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout
                    .splitlines() or [""])[0],
            "dnsmasq": out("dnsmasq", "--version").splitlines()[0] if shutil.which("dnsmasq") else "",
            "udhcpc": "busybox " + (out("busybox").splitlines() or [""])[0].split(" ")[1:2][0]
            if shutil.which("busybox") else ""}


def _timed(results: dict, name: str, fn):
    t0 = time.perf_counter()
    try:
        return fn()
    finally:
        results.setdefault("section_seconds", {})[name] = round(time.perf_counter() - t0, 2)


def run(output: Path, *, quick: bool = False, sections: tuple[str, ...] = SECTIONS,
        log: Callable[[str], None] = print) -> dict:
    from mdtool.bench import report, suite
    from mdtool.bench.harness import Harness
    sizes = suite.Sizes.quick() if quick else suite.Sizes()
    results: dict = {"quick": quick, "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                     "command": "mdtool bench" + (" --quick" if quick else "") +
                     f" --output {output}", "machine": machine()}
    h = Harness()
    t0 = time.perf_counter()
    try:
        pipeline = None
        if {"throughput", "boot", "registry"} & set(sections):
            log("setting up: network, instance, namespaces, metadata and agent")
            pipeline = _timed(results, "pipeline", lambda: suite.Pipeline(h))
        # (section, heading, run): in the order they run; the numbers are the report's.
        steps = (
            ("throughput", "1. throughput and latency", lambda: suite.throughput(pipeline, sizes, log)),
            ("memory", "2. memory", lambda: suite.memory(h, sizes, log)),
            ("boot", "3. boot to metadata", lambda: suite.boot(pipeline, sizes, log)),
            ("registry", "5. registry", lambda: suite.registry(h, pipeline, sizes, log)),
            ("cli", "6. CLI start-up", lambda: suite.cli_startup(h, sizes, log)),
            ("storm", "8. boot storm", lambda: suite.storm(h, sizes, log)),
            ("setup", "4. set-up at scale", lambda: suite.setup(h, sizes, log)),
            ("node", "7. the node (node run)", lambda: suite.node(h, sizes, log)),
            ("scale", "9. scale on one node", lambda: suite.scale(h, sizes, log)),
        )
        for name, heading, section in steps:
            if name in sections:
                log(heading)
                results[name] = _timed(results, name, section)
    finally:
        errors = h.close()
        if errors:
            log("cleanup problems: " + "; ".join(errors))
    results["seconds"] = time.perf_counter() - t0
    results["machine"]["loadavg_at_end"] = Path("/proc/loadavg").read_text().split()[:3]
    results["targets"] = {k: v for k, v in report.targets(results).items()}
    output.mkdir(parents=True, exist_ok=True)
    (output / "benchmarks.json").write_text(json.dumps(results, indent=2) + "\n")
    (output / "benchmarks-table.md").write_text(report.markdown(results))
    results["plot"] = report.plot(results, output / "benchmarks.png")
    return results
