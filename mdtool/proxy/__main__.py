"""``python -m mdtool.proxy``: the proxy daemon without the CLI around it.

One proxy serves every network of a node, so its memory is the cost of proxying: this entry
point imports neither click, rich nor the registry (SQLAlchemy alone is ~17 MB of private
memory). ``mdtool proxy run`` resolves network names with the registry, then execs this.

    python -m mdtool.proxy [--state-dir DIR] [--config-file PATH] [-v] run [--network ID]...
"""

from __future__ import annotations

import os
import sys

USAGE = ("usage: python -m mdtool.proxy [--state-dir DIR] [--config-file PATH] [-v] "
         "run [--network NETWORK_ID]...")


def parse(argv: list[str]) -> tuple[dict, list[str]]:
    """Pure: (global options, network ids) from argv; ValueError on bad usage."""
    opts: dict = {"state_dir": None, "config_file": None, "verbose": 0}
    networks: list[str] = []
    it = iter(argv)
    seen_run = False
    for arg in it:
        if arg in ("--state-dir", "--config-file", "--network"):
            try:
                value = next(it)
            except StopIteration:
                raise ValueError(f"{arg} needs a value") from None
            if arg == "--network":
                if not seen_run:
                    raise ValueError("--network comes after run")
                networks.append(value)
            else:
                opts[arg[2:].replace("-", "_")] = value
        elif arg in ("-v", "--verbose"):
            opts["verbose"] += 1
        elif arg == "run" and not seen_run:
            seen_run = True
        else:
            raise ValueError(f"unexpected argument {arg!r}")
    if not seen_run:
        raise ValueError("missing command: run")
    return opts, networks


def argv(state_dir: str, networks: list[str] | None = None, config_file: str | None = None,
         verbose: int = 0) -> list[str]:
    """The command line that runs this entry point (what ``mdtool proxy run`` execs)."""
    a = [sys.executable, "-m", "mdtool.proxy", "--state-dir", str(state_dir)]
    if config_file:
        a += ["--config-file", str(config_file)]
    a += ["-v"] * verbose + ["run"]
    for n in networks or []:
        a += ["--network", n]
    return a


def main(args: list[str] | None = None) -> int:
    try:
        opts, networks = parse(sys.argv[1:] if args is None else args)
    except ValueError as e:
        print(f"mdtool proxy: error: {e}\n{USAGE}", file=sys.stderr)
        return 2
    from mdtool.config import Config
    from mdtool.errors import MdtoolError
    from mdtool.proxy.daemon import run
    try:
        config = Config(opts["state_dir"] or os.environ.get("MDTOOL_STATE_DIR"), None,
                        opts["config_file"] or os.environ.get("MDTOOL_CONFIG"))
        return run(config, networks or None, verbose=opts["verbose"])
    except MdtoolError as e:
        print(f"mdtool proxy: error: {e}", file=sys.stderr)
        return getattr(e, "exit_code", 1)


if __name__ == "__main__":
    raise SystemExit(main())
