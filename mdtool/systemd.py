"""systemd unit files for the daemons, rendered from ``templates/systemd/*.j2``.

The units carry no configuration on their command line: the effective configuration
(state dir, database URL, config file, every ``MDTOOL_*`` option set in the environment)
goes into one EnvironmentFile, mode 0600, that every unit reads. So no database password
or shared secret is ever in a 0644 unit or in the argv that ``ps`` shows.
"""

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
    # what of the host the unit's private mounts hide from the daemon (see HIDDEN_BY)
    hides: tuple[str, ...] = ("PrivateTmp", "ProtectHome")

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
         ("AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK", "AF_PACKET"), hides=()),
)

# A daemon unit's PrivateTmp=yes gives it an empty /tmp and /var/tmp; ProtectHome=yes
# makes /home, /root and /run/user inaccessible: a state dir or binary there disappears.
HIDDEN_BY = {"PrivateTmp": ("/tmp", "/var/tmp"), "ProtectHome": ("/home", "/root", "/run/user")}

ENV_FILE = "mdtool.env"
DEFAULT_OUTPUT_DIR = "/etc/systemd/system"  # what the printed units refer to
LIMIT_NOFILE = 65536  # the proxy holds a socket per connection on every network


def mdtool_executable(explicit: str | None = None) -> str:
    """An absolute path to the mdtool command for ExecStart."""
    if explicit:
        from mdtool.config import AbsPath
        try:
            return AbsPath().parse(explicit)
        except ValueError as e:
            raise BadInput(f"--mdtool: {e}") from None
    argv0 = sys.argv[0] if sys.argv and sys.argv[0] else "mdtool"
    if os.path.basename(argv0) in ("__main__.py", "-c", "") or argv0.endswith(".py"):
        found = shutil.which("mdtool")
        return str(Path(found).resolve()) if found else f"{sys.executable} -m mdtool"
    if os.sep not in argv0:
        argv0 = shutil.which(argv0) or argv0
    return str(Path(argv0).absolute())


def exec_start(mdtool: str, role: str) -> str:
    # `mdtool` may be "python -m mdtool": keep it as it is. Everything else comes from the
    # EnvironmentFile, so nothing of the configuration is on the command line.
    return f"{mdtool} {role} run"


def environment(config) -> dict[str, str]:
    """The effective configuration as ``MDTOOL_*`` variables: the state dir, the database
    URL, the config file (which the daemons read themselves) and every option that the
    environment or ``--host`` set."""
    from mdtool.config import OPTION_INDEX, env_name
    env = {"MDTOOL_STATE_DIR": str(config.state_dir), "MDTOOL_DB": config.db_url}
    if config.config_file:
        env["MDTOOL_CONFIG"] = str(config.config_file)
    for key, value in config.values.items():
        if value.source.startswith("env ") or value.source == "--host":
            env[env_name(*key)] = OPTION_INDEX[key].type.text(value.value)
    return env


def _masked(name: str, value: str) -> str:
    from mdtool.config import OPTIONS, env_name, mask, mask_url
    if name == "MDTOOL_DB":
        return mask_url(value)
    if any(o.secret and env_name(o.section, o.name) == name for o in OPTIONS):
        return mask(value)
    return value


def _env_quote(value: str) -> str:
    """A double-quoted value as systemd's EnvironmentFile (and a shell) reads it back.
    Values are typed options: no control character gets this far."""
    return '"' + "".join("\\" + c if c in '"\\`$' else c for c in value) + '"'


def render_env_file(config, masked: bool = False) -> str:
    from mdtool.templates import render
    env = environment(config)
    pairs = [(k, _env_quote(_masked(k, v) if masked else v)) for k, v in env.items()]
    return render("systemd/mdtool.env.j2", pairs=pairs, masked=masked)


def _rw_paths(config) -> list[str]:
    """Folders the daemons write besides the state dir: logs, a SQLite file elsewhere."""
    out = []
    for opt in ("log_file", "log_dir"):
        value = config.get(opt)
        if value:
            p = Path(value)
            out.append(str(p.parent if opt == "log_file" else p))
    sqlite = _sqlite_path(config.db_url)
    if sqlite and not sqlite.is_relative_to(config.state_dir):
        out.append(str(sqlite.parent))
    return list(dict.fromkeys(out))


def _sqlite_path(url: str) -> Path | None:
    prefix = "sqlite:///"
    if url.startswith(prefix) and len(url) > len(prefix):
        return Path("/" + url[len(prefix):].split("?")[0].lstrip("/"))
    return None


def render_unit(unit: Unit, config, mdtool: str, env_file: str | os.PathLike) -> str:
    from mdtool.templates import render
    return render(f"systemd/{unit.filename}.j2",
                  description=unit.description, after=list(unit.after),
                  exec_start=exec_start(mdtool, unit.role), env_file=str(env_file),
                  limit_nofile=LIMIT_NOFILE,
                  state_dir=str(config.state_dir), extra_rw=_rw_paths(config),
                  capabilities=list(unit.capabilities),
                  address_families=list(unit.address_families))


def hidden_paths(config, mdtool: str) -> list[str]:
    """One warning per path a unit's private mounts would hide from its daemon."""
    paths = [("state dir", str(config.state_dir))]
    for opt in ("log_file", "log_dir"):
        if config.get(opt):
            paths.append((opt, str(config.get(opt))))
    if config.config_file:
        paths.append(("config file", str(config.config_file)))
    sqlite = _sqlite_path(config.db_url)
    if sqlite:
        paths.append(("database", str(sqlite)))
    exe = mdtool.split()[0]
    paths += [("executable", exe), ("executable", os.path.realpath(exe))]
    warnings = []
    seen = set()
    for what, path in paths:
        for setting, roots in HIDDEN_BY.items():
            units = [u.filename for u in UNITS if setting in u.hides]
            root = next((r for r in roots if path == r or path.startswith(r + "/")), None)
            if root and units and (path, setting) not in seen:
                seen.add((path, setting))
                warnings.append(f"{setting}=yes in {', '.join(units)} hides {root}: the "
                                f"{what} {path} does not exist for those daemons; move it "
                                f"out of {root}")
    return warnings


def render_all(config, mdtool: str, output_dir: str | os.PathLike,
               env_file: str | os.PathLike | None = None,
               masked: bool = False) -> list[tuple[Path, str, int]]:
    """(path, text, mode) of the EnvironmentFile (0600; default ``<output_dir>/mdtool.env``)
    and of every unit (0644) in ``output_dir``."""
    from mdtool.files import FILE_MODE, PRIVATE_MODE
    env_path = Path(env_file) if env_file else Path(output_dir) / ENV_FILE
    out = [(env_path, render_env_file(config, masked), PRIVATE_MODE)]
    for unit in UNITS:
        out.append((Path(output_dir) / unit.filename,
                    render_unit(unit, config, mdtool, env_path), FILE_MODE))
    return out


def write_units(config, output_dir: str | os.PathLike, mdtool: str,
                env_file: str | os.PathLike | None = None, dry_run: bool = False) -> list[str]:
    """Write the EnvironmentFile and the units atomically; returns what changed, or with
    ``dry_run`` what would (nothing when up to date)."""
    from mdtool.files import unchanged, write_atomic
    changes = []
    for path, text, mode in render_all(config, mdtool, output_dir, env_file):
        existed = path.exists()
        if dry_run:
            if not unchanged(path, text, mode):
                changes.append(f"{'update' if existed else 'write'} {path} (mode {mode:04o})")
        elif write_atomic(path, text, mode):
            changes.append(f"{'updated' if existed else 'wrote'} {path}")
    return changes
