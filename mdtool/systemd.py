"""systemd unit files for the daemons, rendered from ``templates/systemd/*.j2``."""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from mdtool.errors import BadInput


@dataclass(frozen=True)
class Unit:
    role: str
    description: str
    capabilities: tuple[str, ...]
    address_families: tuple[str, ...]
    after: tuple[str, ...] = ()

    @property
    def filename(self) -> str:
        return f"mdtool-{self.role}.service"


UNITS = (
    Unit("metadata", "mdtool metadata service (Nova-compatible, on the registry)", (),
         ("AF_UNIX", "AF_INET", "AF_INET6")),
    Unit("agent", "mdtool metadata agent (signs requests, forwards them to Nova)", (),
         ("AF_UNIX", "AF_INET", "AF_INET6"), ("mdtool-metadata.service",)),
    # setns() into another network namespace needs CAP_SYS_ADMIN; 169.254.169.254:80 needs
    # CAP_NET_BIND_SERVICE. Listing namespaces and addresses uses netlink.
    Unit("proxy", "mdtool metadata proxy (169.254.169.254:80 in every qdhcp- namespace)",
         ("CAP_SYS_ADMIN", "CAP_NET_BIND_SERVICE"),
         ("AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK"), ("mdtool-agent.service",)),
    # `node run`: namespaces, veths, bridges and addresses (SYS_ADMIN, NET_ADMIN), dnsmasq
    # (NET_BIND_SERVICE, NET_RAW for DHCP, SETUID/SETGID to drop to its user), signals
    # to the processes it supervises (KILL), the state dir owned by another user (DAC_*).
    Unit("node", "mdtool node: dnsmasq, metadata, agent and proxy kept converged to the registry",
         ("CAP_SYS_ADMIN", "CAP_NET_ADMIN", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW",
          "CAP_SETUID", "CAP_SETGID", "CAP_KILL", "CAP_DAC_OVERRIDE", "CAP_CHOWN",
          "CAP_FOWNER"),
         ("AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK", "AF_PACKET")),
)


def mdtool_executable(explicit: str | None = None) -> str:
    """An absolute path to the mdtool command for ExecStart."""
    if explicit:
        path = Path(explicit)
        if not path.is_absolute():
            raise BadInput(f"--mdtool must be an absolute path, got {explicit!r}")
        return str(path)
    argv0 = sys.argv[0] if sys.argv and sys.argv[0] else "mdtool"
    if os.path.basename(argv0) in ("__main__.py", "-c", "") or argv0.endswith(".py"):
        found = shutil.which("mdtool")
        return str(Path(found).resolve()) if found else f"{sys.executable} -m mdtool"
    if os.sep not in argv0:
        argv0 = shutil.which(argv0) or argv0
    return str(Path(argv0).absolute())


def exec_start(mdtool: str, config, role: str, db_url: str | None = None) -> str:
    args = ["--state-dir", str(config.state_dir)]
    if config.config_file:
        args += ["--config-file", str(config.config_file)]
    if db_url:
        args += ["--db", db_url]
    # `mdtool` may be "python -m mdtool": keep it as it is, quote the rest.
    return " ".join([mdtool] + [shlex.quote(a) for a in args] + [role, "run"])


def render_unit(unit: Unit, config, mdtool: str, db_url: str | None = None) -> str:
    from mdtool.templates import render
    extra_rw = []
    for opt in ("log_file", "log_dir"):
        value = config.get(opt)
        if value:
            p = Path(value)
            extra_rw.append(str(p.parent if opt == "log_file" else p))
    return render(f"systemd/{unit.filename}.j2",
                  description=unit.description, after=list(unit.after),
                  exec_start=exec_start(mdtool, config, unit.role, db_url),
                  state_dir=str(config.state_dir), extra_rw=extra_rw,
                  capabilities=list(unit.capabilities),
                  address_families=list(unit.address_families))


def write_units(config, output_dir: str | os.PathLike, mdtool: str,
                db_url: str | None = None) -> list[str]:
    """Write the units atomically; returns what changed (nothing when up to date)."""
    from mdtool.files import write_atomic
    changes = []
    for unit in UNITS:
        path = Path(output_dir) / unit.filename
        existed = path.exists()
        if write_atomic(path, render_unit(unit, config, mdtool, db_url), 0o644):
            changes.append(f"{'updated' if existed else 'wrote'} {path}")
    return changes
