"""bench: throughput, latency, memory and scale of the metadata path, in one run."""

from __future__ import annotations

import click

from mdtool.bench import SECTIONS
from mdtool.cli.app import abort


@click.command("bench")
@click.option("--quick", is_flag=True, help="A smoke run: tiny durations and counts (seconds).")
@click.option("--output", "output", default="docs", show_default=True, metavar="DIR",
              type=click.Path(file_okay=False), help="Where benchmarks.json, "
              "benchmarks-table.md and benchmarks.png go.")
@click.option("--section", "sections", multiple=True, metavar="NAME",
              type=click.Choice(SECTIONS),
              help="Run only this section (repeatable; default: all).")
def bench(quick, output, sections):
    """Measure the metadata path against haproxy (root; needs wrk, haproxy, udhcpc, dnsmasq).

    Everything runs in namespaces and state dirs of its own, removed at the end."""
    from pathlib import Path

    from mdtool import bench as b
    missing = b.missing_requirements()
    if missing:
        abort(f"mdtool bench needs {', '.join(missing)}", 2)
    results = b.run(Path(output), quick=quick, sections=tuple(sections) or b.SECTIONS,
                    log=lambda m: click.echo(m, err=True))
    click.echo(b.report.markdown(results))
    click.echo(f"written: {output}/benchmarks.json, {output}/benchmarks-table.md"
               + (f", {output}/benchmarks.png" if results.get("plot") else
                  " (no plot: matplotlib is missing)"), err=True)
