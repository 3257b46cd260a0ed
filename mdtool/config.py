"""Options, their sources and validation.

One INI file (Neutron's option names where one exists), overridden by the environment
(``MDTOOL_<OPTION>``, or ``MDTOOL_<SECTION>__<OPTION>`` outside ``[DEFAULT]``). Every
effective value remembers where it came from so ``mdtool config show`` can say so.
"""

from __future__ import annotations

import os
import re
import secrets
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from mdtool.errors import BadInput

DEFAULT_STATE_DIR = "/var/lib/mdtool"
DEFAULT_CONFIG_FILE = "/etc/mdtool/mdtool.ini"
SECRET_FILE = "metadata_proxy_shared_secret"


def _bool(value: str) -> bool:
    v = value.strip().lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true or false")


def _int_range(lo: int, hi: int) -> Callable[[str], int]:
    def parse(value: str) -> int:
        n = int(value.strip())
        if not lo <= n <= hi:
            raise ValueError(f"expected an integer from {lo} to {hi}")
        return n

    return parse


def _float_pos(value: str) -> float:
    f = float(value.strip())
    if not f > 0:
        raise ValueError("expected a positive number")
    return f


def _url(value: str) -> str:
    v = value.strip()
    if not re.match(r"^https?://[^/\s]+(/\S*)?$", v):
        raise ValueError("expected an http:// or https:// URL")
    return v.rstrip("/")


def _choice(*choices: str) -> Callable[[str], str]:
    def parse(value: str) -> str:
        v = value.strip().lower()
        if v not in choices:
            raise ValueError("expected one of " + ", ".join(choices))
        return v

    return parse


def _str(value: str) -> str:
    return value.strip()


def _list(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


@dataclass(frozen=True)
class Option:
    section: str
    name: str
    parse: Callable[[str], Any]
    default: Any
    help: str
    secret: bool = False


OPTIONS: list[Option] = [
    Option("DEFAULT", "metadata_proxy_shared_secret", _str, None,
           "HMAC key shared by agent and metadata service (generated when unset)", secret=True),
    Option("DEFAULT", "nova_metadata_url", _url, None,
           "where the agent forwards signed requests (default from nova_metadata_host/port/protocol)"),
    Option("DEFAULT", "nova_metadata_host", _str, "127.0.0.1", "Nova metadata host"),
    Option("DEFAULT", "nova_metadata_port", _int_range(1, 65535), 8775, "Nova metadata port"),
    Option("DEFAULT", "nova_metadata_protocol", _choice("http", "https"), "http",
           "Nova metadata protocol"),
    Option("DEFAULT", "metadata_listen_host", _str, "127.0.0.1",
           "address `metadata run` listens on (loopback unless told otherwise)"),
    Option("DEFAULT", "metadata_listen_port", _int_range(1, 65535), 8775,
           "port `metadata run` listens on"),
    Option("DEFAULT", "dns_domain", _str, "openstacklocal", "domain handed out by dnsmasq"),
    Option("DEFAULT", "dhcp_lease_duration", _int_range(120, 10**7), 86400,
           "DHCP lease time in seconds"),
    Option("DEFAULT", "dnsmasq_dns_servers", _list, [], "DNS servers dnsmasq forwards to"),
    Option("DEFAULT", "dnsmasq_lease_max", _int_range(1, 1 << 24), 16777216,
           "--dhcp-lease-max of dnsmasq"),
    Option("DEFAULT", "host", _str, None, "node identity (default: the hostname)"),
    Option("DEFAULT", "http_tokens", _choice("optional", "required"), "optional",
           "IMDSv2 session tokens: honoured (optional) or required"),
    Option("DEFAULT", "http_put_response_hop_limit", _int_range(1, 64), 1,
           "IP TTL of the token reply"),
    Option("DEFAULT", "metrics_port_proxy", _int_range(0, 65535), 0,
           "loopback port for the proxy's Prometheus metrics (0: off)"),
    Option("DEFAULT", "metrics_port_agent", _int_range(0, 65535), 0,
           "loopback port for the agent's Prometheus metrics (0: off)"),
    Option("DEFAULT", "metrics_port_metadata", _int_range(0, 65535), 0,
           "loopback port for the metadata service's Prometheus metrics (0: off)"),
    Option("DEFAULT", "log_file", _str, None,
           "daemon log file shared by the daemons (default: stderr; reopened after logrotate)"),
    Option("DEFAULT", "log_dir", _str, None,
           "folder for one log file per daemon, mdtool-<daemon>.log (log_file wins when both are set)"),
    Option("DEFAULT", "debug", _bool, False, "daemons log at debug level (as -vv does)"),
    Option("DEFAULT", "use_journal", _choice("auto", "yes", "no"), "auto",
           "journald-style lines (<level> prefix, no timestamp); auto: when stderr is the journal"),
    Option("metadata_rate_limiting", "rate_limit_enabled", _bool, False,
           "limit requests per instance at the proxy"),
    Option("metadata_rate_limiting", "base_window_duration", _int_range(1, 86400), 10,
           "seconds of the base window"),
    Option("metadata_rate_limiting", "base_query_rate_limit", _int_range(1, 10**6), 10,
           "requests allowed in the base window"),
    Option("metadata_rate_limiting", "burst_window_duration", _int_range(1, 86400), 10,
           "seconds of the burst window"),
    Option("metadata_rate_limiting", "burst_query_rate_limit", _int_range(1, 10**6), 10,
           "requests allowed in the burst window"),
    Option("metadata_haproxy", "timeout_http_request", _float_pos, 30.0,
           "seconds a client may take to send a request head"),
    Option("metadata_haproxy", "timeout_server", _float_pos, 32.0,
           "seconds the proxy waits for the agent's answer"),
    Option("metadata_haproxy", "timeout_http_keep_alive", _float_pos, 30.0,
           "seconds an idle keep-alive connection stays open"),
    Option("metadata_haproxy", "max_header_bytes", _int_range(1024, 1 << 20), 16384,
           "largest request head the proxy accepts (431 beyond)"),
    Option("metadata_haproxy", "max_header_count", _int_range(8, 1000), 100,
           "most header fields the proxy accepts (431 beyond)"),
    Option("metadata_haproxy", "max_body_bytes", _int_range(0, 1 << 30), 1 << 20,
           "largest request body the proxy accepts (413 beyond)"),
]

OPTION_INDEX = {(o.section, o.name): o for o in OPTIONS}
SECTIONS = list(dict.fromkeys(o.section for o in OPTIONS))


@dataclass
class Value:
    value: Any
    source: str  # "default", "<file>:<line>", "env MDTOOL_X", "generated <file>"


def env_name(section: str, name: str) -> str:
    if section == "DEFAULT":
        return "MDTOOL_" + name.upper()
    return f"MDTOOL_{section.upper()}__{name.upper()}"


def _read_ini(path: Path, errors: list[str] | None = None) -> dict[tuple[str, str], tuple[str, int]]:
    """Parse an INI file keeping line numbers; errors name the file and line.

    Without ``errors`` the first problem raises BadInput; with a list, every problem is
    appended to it and parsing goes on (``mdtool config check``).
    """
    out: dict[tuple[str, str], tuple[str, int]] = {}
    section = "DEFAULT"

    def fail(msg: str) -> None:
        if errors is None:
            raise BadInput(msg)
        errors.append(msg)

    try:
        text = path.read_text()
    except OSError as e:
        raise BadInput(f"cannot read config file {path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise BadInput(f"config file {path} is not UTF-8 text") from None
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        m = re.fullmatch(r"\[([^\]]+)\]", line)
        if m:
            section = m.group(1).strip()
            if section != "DEFAULT" and not any(o.section == section for o in OPTIONS):
                fail(f"{path}:{lineno}: unknown section [{section}]; sections: "
                     + ", ".join(SECTIONS))
            continue
        if "=" not in line:
            fail(f"{path}:{lineno}: expected 'option = value', got {line!r}")
            continue
        key, _, value = line.partition("=")
        key = key.strip()
        if (section, key) not in OPTION_INDEX:
            hint = _suggest(section, key)
            fail(f"{path}:{lineno}: unknown option {key!r} in [{section}]{hint}")
            continue
        out[(section, key)] = (value.strip(), lineno)
    return out


def _suggest(section: str, key: str) -> str:
    import difflib
    elsewhere = [o.section for o in OPTIONS if o.name == key]
    if elsewhere:
        return f" (it belongs in [{elsewhere[0]}])"
    close = difflib.get_close_matches(key, [o.name for o in OPTIONS if o.section == section], 1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_file(path: str | os.PathLike) -> list[str]:
    """Every problem of a config file (unknown sections/options, bad values), one line each."""
    errors: list[str] = []
    p = Path(path)
    for key, (raw, lineno) in _read_ini(p, errors).items():
        try:
            OPTION_INDEX[key].parse(raw)
        except ValueError as e:
            errors.append(f"{p}:{lineno}: bad value for {key[1]}: {e}")
    return sorted(errors, key=_line_of)


def _line_of(msg: str) -> int:
    m = re.match(r"^.*?:(\d+):", msg)
    return int(m.group(1)) if m else 0


def _ini_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(value)
    return "" if value is None else str(value)


def sample_ini() -> str:
    """A commented config file: every option, its meaning and its default, all commented out."""
    lines = ["# mdtool configuration (INI). Every option is shown at its default, commented out.",
             "# Environment MDTOOL_<OPTION> (MDTOOL_<SECTION>__<OPTION> outside [DEFAULT])",
             "# overrides this file; `mdtool config show` prints what is in effect."]
    for section in SECTIONS:
        lines += ["", f"[{section}]"]
        for o in OPTIONS:
            if o.section == section:
                lines += [f"# {o.help}", f"#{o.name} = {_ini_value(o.default)}".rstrip()]
    return "\n".join(lines) + "\n"


def mask(value: Any) -> str:
    """What ``config show`` prints for a secret: whether it is set, never the value."""
    return "********" if value else ""


def mask_url(url: str) -> str:
    """A database URL without its password."""
    return re.sub(r"^([a-z0-9+]+://[^:/@]*):[^@]*@", r"\1:********@", url)


class Config:
    """Effective configuration: defaults < file < environment."""

    def __init__(self, state_dir: str | None = None, db_url: str | None = None,
                 config_file: str | None = None, environ: dict[str, str] | None = None):
        env = os.environ if environ is None else environ
        self.state_dir = Path(state_dir or env.get("MDTOOL_STATE_DIR") or DEFAULT_STATE_DIR)
        self.db_url = db_url or env.get("MDTOOL_DB") or f"sqlite:///{self.state_dir}/mdtool.db"
        cf = config_file or env.get("MDTOOL_CONFIG")
        if cf is None and Path(DEFAULT_CONFIG_FILE).exists():
            cf = DEFAULT_CONFIG_FILE
        self.config_file = Path(cf) if cf else None
        self.values: dict[tuple[str, str], Value] = {}
        file_values = _read_ini(self.config_file) if self.config_file else {}
        for opt in OPTIONS:
            key = (opt.section, opt.name)
            val = Value(opt.default, "default")
            if key in file_values:
                raw, lineno = file_values[key]
                val = Value(self._parse(opt, raw, f"{self.config_file}:{lineno}"),
                            f"{self.config_file}:{lineno}")
            en = env_name(*key)
            if en in env:
                val = Value(self._parse(opt, env[en], f"environment {en}"), f"env {en}")
            self.values[key] = val

    @staticmethod
    def _parse(opt: Option, raw: str, where: str) -> Any:
        try:
            return opt.parse(raw)
        except ValueError as e:
            raise BadInput(f"{where}: bad value for {opt.name}: {e}") from None

    def get(self, name: str, section: str = "DEFAULT") -> Any:
        return self.values[(section, name)].value

    # Derived values -----------------------------------------------------------------

    @property
    def host(self) -> str:
        return self.get("host") or socket.gethostname()

    @property
    def nova_metadata_url(self) -> str:
        url = self.get("nova_metadata_url")
        if url:
            return url
        return (f"{self.get('nova_metadata_protocol')}://{self.get('nova_metadata_host')}:"
                f"{self.get('nova_metadata_port')}")

    @property
    def nova_metadata_is_local(self) -> bool:
        """True when the agent's upstream is the metadata service mdtool itself runs."""
        return self.nova_metadata_url.rstrip("/") in (
            f"http://127.0.0.1:{self.get('metadata_listen_port')}",
            f"http://localhost:{self.get('metadata_listen_port')}",
        )

    @property
    def agent_socket(self) -> Path:
        return self.state_dir / "metadata_proxy"

    def dhcp_dir(self, network_id: str) -> Path:
        return self.state_dir / "dhcp" / network_id

    def shared_secret(self, create: bool = True) -> str:
        """The configured secret, or one generated once and kept in the state dir (0600)."""
        configured = self.get("metadata_proxy_shared_secret")
        if configured:
            return configured
        path = self.state_dir / SECRET_FILE
        try:
            return path.read_text().strip()
        except FileNotFoundError:
            if not create:
                raise
        self.state_dir.mkdir(parents=True, exist_ok=True)
        token = secrets.token_hex(32)
        # Write a private temp file, then link it into place: readers never see it half
        # written, and when two processes race the loser adopts the winner's secret.
        tmp = path.with_name(f".{SECRET_FILE}.{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(token + "\n")
        try:
            os.link(tmp, path)
        except FileExistsError:
            token = path.read_text().strip()
        finally:
            os.unlink(tmp)
        self.values[("DEFAULT", "metadata_proxy_shared_secret")] = Value(token, f"generated {path}")
        return token
