"""Options, their sources and validation.

One INI file (Neutron's option names where one exists), overridden by the environment
(``MDTOOL_<OPTION>``, or ``MDTOOL_<SECTION>__<OPTION>`` outside ``[DEFAULT]``). Every
effective value remembers where it came from so ``mdtool config show`` can say so.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from mdtool.errors import BadInput

DEFAULT_STATE_DIR = "/var/lib/mdtool"
DEFAULT_CONFIG_FILE = "/etc/mdtool/mdtool.ini"
SECRET_FILE = "metadata_proxy_shared_secret"


# Types ------------------------------------------------------------------------------
#
# Every option has a strict type: its ``parse(text)`` returns the value or raises ValueError
# saying what is expected. A value is checked when the configuration is loaded (every command,
# and ``config check``), so nothing unchecked ever reaches dnsmasq's argv, a rendered file or a
# unit: no type lets a control character (newline, NUL) through.

_CONTROL = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]")
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_PATH_CHARS = re.compile(r"/[A-Za-z0-9._+@=:/-]*")
FQDN_MAX = 253


def _printable(value: str) -> str:
    if _CONTROL.search(value):
        raise ValueError("control characters (newline, tab, NUL...) are not allowed")
    return value.strip()


def dns_name(text: str, max_len: int = FQDN_MAX) -> str:
    """A DNS name as RFC 1123 and Neutron's dns validators allow it, lower-cased, without a
    trailing dot: labels of 1-63 letters, digits and inner hyphens; a top-level label is
    not all digits. The one source of this rule (instance hostnames use it too)."""
    name = _printable(text).lower()
    name = name[:-1] if name.endswith(".") else name
    if not name:
        raise ValueError("expected a DNS name, got nothing")
    if len(name) > max_len:
        raise ValueError(f"expected a DNS name of at most {max_len} characters")
    labels = name.split(".")
    for label in labels:
        if not _LABEL.fullmatch(label):
            raise ValueError(f"label {label!r}: expected 1-63 letters, digits or inner hyphens "
                             "(RFC 1123)")
    if len(labels) > 1 and labels[-1].isdigit():
        raise ValueError(f"the top-level label {labels[-1]!r} must not be all digits (RFC 1123)")
    return name


class Type:
    """An option's type: ``parse(text) -> value`` (ValueError saying what is expected),
    ``text(value)`` back to what a file or ``MDTOOL_*`` variable holds, ``describe`` for docs."""

    describe = "text"

    def parse(self, text: str) -> Any:
        raise NotImplementedError

    def text(self, value: Any) -> str:
        return "" if value is None else str(value)

    def __call__(self, text: str) -> Any:  # an Option's ``parse``
        return self.parse(text)


class Bool(Type):
    describe = "bool"

    def parse(self, text: str) -> bool:
        v = _printable(text).lower()
        if v in ("1", "true", "yes", "on"):
            return True
        if v in ("0", "false", "no", "off"):
            return False
        raise ValueError("expected true or false")

    def text(self, value: Any) -> str:
        return "true" if value else "false"


class Int(Type):
    def __init__(self, lo: int, hi: int):
        self.lo, self.hi = lo, hi
        self.describe = f"integer {lo}-{hi}"

    def parse(self, text: str) -> int:
        try:
            n = int(_printable(text))
        except ValueError:
            n = None
        if n is None or not self.lo <= n <= self.hi:
            raise ValueError(f"expected an integer from {self.lo} to {self.hi}")
        return n


class Float(Type):
    """A positive number (seconds), at most ``hi``."""

    def __init__(self, hi: float = 1e9):
        self.hi = hi
        self.describe = "positive number"

    def parse(self, text: str) -> float:
        try:
            f = float(_printable(text))
        except ValueError:
            f = float("nan")
        if not 0 < f <= self.hi:
            raise ValueError("expected a positive number")
        return f


class Size(Type):
    """A byte count: an integer with an optional K, M or G suffix (powers of 1024)."""

    _UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}

    def __init__(self, lo: int, hi: int):
        self.lo, self.hi = lo, hi
        self.describe = f"size {lo}-{hi} bytes (K, M, G suffixes)"

    def parse(self, text: str) -> int:
        m = re.fullmatch(r"(\d+)\s*([kmg]?)(?:i?b)?", _printable(text).lower())
        if not m:
            raise ValueError("expected a size in bytes, e.g. 1048576, 512K, 10M, 1G")
        n = int(m.group(1)) * self._UNITS[m.group(2)]
        if not self.lo <= n <= self.hi:
            raise ValueError(f"expected a size from {self.lo} to {self.hi} bytes")
        return n


class Choice(Type):
    def __init__(self, *choices: str):
        self.choices = choices
        self.describe = "one of " + ", ".join(choices)

    def parse(self, text: str) -> str:
        v = _printable(text).lower()
        if v not in self.choices:
            raise ValueError("expected one of " + ", ".join(self.choices))
        return v


class DnsName(Type):
    """A DNS name (RFC 1123, as Neutron validates ``dns_domain``); ``max_len`` leaves room
    for what is put in front of it (dnsmasq's ``host-<ip>.`` names)."""

    def __init__(self, max_len: int = FQDN_MAX, empty: bool = False):
        self.max_len = max_len
        self.empty = empty
        self.describe = "DNS name (or empty)" if empty else "DNS name"

    def parse(self, text: str) -> str:
        if self.empty and not _printable(text).strip():
            return ""
        return dns_name(text, self.max_len)


class HostDomain(Type):
    """A node's name as oslo.config's HostDomainOpt takes Neutron's ``host``: DNS labels
    that may also hold ``_``, case kept (it must match what the registry recorded)."""

    describe = "host name"

    def parse(self, text: str) -> str:
        v = _printable(text)
        dns_name(v.replace("_", "-"))
        return v[:-1] if v.endswith(".") else v


class IPAddress(Type):
    describe = "IP address"

    def parse(self, text: str) -> str:
        try:
            return str(ipaddress.ip_address(_printable(text)))
        except ValueError:
            raise ValueError(f"expected an IPv4 or IPv6 address, got {text.strip()!r}") from None


class IPList(Type):
    """Comma-separated IP addresses (empty: none)."""

    describe = "IP addresses, comma-separated"

    def parse(self, text: str) -> list[str]:
        items = [v.strip() for v in _printable(text).split(",")]
        return [IPAddress().parse(v) for v in items if v]

    def text(self, value: Any) -> str:
        return ",".join(value or [])


class Host(Type):
    """An IP address or a DNS name."""

    describe = "IP address or DNS name"

    def parse(self, text: str) -> str:
        v = _printable(text)
        try:
            return str(ipaddress.ip_address(v))
        except ValueError:
            pass
        try:
            return dns_name(v)
        except ValueError:
            raise ValueError(f"expected an IP address or a DNS name, got {v!r}") from None


class AbsPath(Type):
    """An absolute path of plain characters (letters, digits, ``._+@=:/-``): no space,
    comma, quote or ``%`` (a systemd specifier), so it is one argv element and one
    unit-file word as it is."""

    describe = "absolute path"

    def parse(self, text: str) -> str:
        v = _printable(text)
        if not _PATH_CHARS.fullmatch(v):
            raise ValueError("expected an absolute path of letters, digits and ._+@=:/- "
                             f"(no spaces or commas), got {v!r}")
        return os.path.normpath(v)


class Url(Type):
    """An http(s) URL with a valid host and port; no trailing slash."""

    def __init__(self, schemes: tuple[str, ...] = ("http", "https")):
        self.schemes = schemes
        self.describe = "/".join(schemes) + " URL"

    def parse(self, text: str) -> str:
        from urllib.parse import urlsplit
        v = _printable(text)
        expected = f"expected a {' or '.join(s + '://' for s in self.schemes)} URL"
        if re.search(r"[\s\"'\\<>]", v):
            raise ValueError(f"{expected} without spaces or quotes")
        try:
            u = urlsplit(v)
            port = u.port
        except ValueError as e:
            raise ValueError(f"{expected}: {e}") from None
        if u.scheme not in self.schemes or not u.hostname:
            raise ValueError(expected)
        if port == 0:
            raise ValueError(f"{expected}: port 0")
        Host().parse(u.hostname)
        return v.rstrip("/")


class DbUrl(Type):
    """The registry URL: sqlite:///PATH or postgresql://…, one printable word."""

    describe = "database URL"

    def parse(self, text: str) -> str:
        v = _printable(text)
        if not re.fullmatch(r"(sqlite|postgres|postgresql)(\+\w+)?://\S*", v, re.IGNORECASE):
            raise ValueError("expected sqlite:///PATH or postgresql://USER@HOST/DB")
        return v


class Secret(Type):
    """Free printable text (the shared secret): no control characters, 1-4096 characters."""

    describe = "secret text"

    def parse(self, text: str) -> str:
        v = _printable(text)
        if len(v) > 4096:
            raise ValueError("expected at most 4096 characters")
        return v


@dataclass(frozen=True)
class Option:
    """One option. To add one: append an ``Option`` to OPTIONS below with a type from this
    module (``Int``, ``Size``, ``Float``, ``Bool``, ``Choice``, ``DnsName``, ``HostDomain``,
    ``Host``, ``IPAddress``, ``IPList``, ``AbsPath``, ``Url``, ``Secret``; a new kind of value
    gets a new ``Type`` subclass here), then regenerate docs/configuration.md. Read it with
    ``config.get(name, section)``: the value is already parsed and checked."""

    section: str
    name: str
    type: Type
    default: Any
    help: str
    secret: bool = False

    def parse(self, text: str) -> Any:
        return self.type.parse(text)


OPTIONS: list[Option] = [
    Option("DEFAULT", "metadata_proxy_shared_secret", Secret(), None,
           "HMAC key shared by agent and metadata service (generated when unset)", secret=True),
    Option("DEFAULT", "nova_metadata_url", Url(), None,
           "where the agent forwards signed requests over TCP (default: from nova_metadata_host/"
           "port/protocol when nova_metadata_host is set, else the Unix socket <state_dir>/metadata)"),
    Option("DEFAULT", "nova_metadata_host", Host(), None,
           "Nova metadata host, reached over TCP (unset: mdtool's own metadata service on the "
           "Unix socket <state_dir>/metadata, which local users cannot reach)"),
    Option("DEFAULT", "nova_metadata_port", Int(1, 65535), 8775,
           "Nova metadata port (with nova_metadata_host)"),
    Option("DEFAULT", "nova_metadata_protocol", Choice("http", "https"), "http",
           "Nova metadata protocol (with nova_metadata_host)"),
    Option("DEFAULT", "nova_metadata_insecure", Bool(), False,
           "https to Nova without checking its certificate"),
    Option("DEFAULT", "auth_ca_cert", AbsPath(), None,
           "CA bundle that signs Nova's certificate (https; default: the system's CAs)"),
    Option("DEFAULT", "nova_client_cert", AbsPath(), None,
           "client certificate for https to Nova (with nova_client_priv_key)"),
    Option("DEFAULT", "nova_client_priv_key", AbsPath(), None,
           "private key of nova_client_cert"),
    Option("DEFAULT", "metadata_backend", Choice("local", "nova"), "local",
           "local: where mdtool serves its own metadata, the proxy answers in its own process "
           "(the agent's and the metadata service's code, no hop between them); nova: the "
           "wire-compatible chain proxy -> agent -> metadata service or Nova, always used "
           "when nova_metadata_host or nova_metadata_url names another service"),
    Option("DEFAULT", "metadata_listen_host", Host(), None,
           "TCP address `metadata run` listens on as well as its Unix socket (unset: no TCP "
           "unless metadata_listen_port is set, then 127.0.0.1)"),
    Option("DEFAULT", "metadata_listen_port", Int(1, 65535), None,
           "TCP port `metadata run` listens on as well as its Unix socket (unset: no TCP "
           "unless metadata_listen_host is set, then 8775)"),
    # room for dnsmasq's longest name in front: "host-" + 39 characters of IPv6 + "."
    Option("DEFAULT", "dns_domain", DnsName(FQDN_MAX - 45), "openstacklocal",
           "domain handed out by dnsmasq"),
    Option("DEFAULT", "dhcp_domain", DnsName(empty=True), "novalocal",
           "domain Nova's [api] dhcp_domain appends to the hostname in meta_data.json and the "
           "EC2 hostnames (empty: the bare hostname)"),
    Option("DEFAULT", "dns_integration", Bool(), True,
           "host names in dnsmasq's files as Neutron's server gives them with the ML2 dns "
           "extension (FQDN ending in a dot); false: as Neutron's DHCP agent alone names them"),
    Option("DEFAULT", "dhcp_lease_duration", Int(120, 10**7), 86400,
           "DHCP lease time in seconds"),
    Option("DEFAULT", "dnsmasq_dns_servers", IPList(), [], "DNS servers dnsmasq forwards to"),
    Option("DEFAULT", "dnsmasq_lease_max", Int(1, 1 << 24), 16777216,
           "--dhcp-lease-max of dnsmasq"),
    Option("DEFAULT", "host", HostDomain(), None, "node identity (default: the hostname)"),
    Option("DEFAULT", "http_tokens", Choice("optional", "required"), "optional",
           "IMDSv2 session tokens: honoured (optional) or required"),
    Option("DEFAULT", "http_put_response_hop_limit", Int(1, 64), 1,
           "IP TTL of the token reply"),
    Option("DEFAULT", "metrics_port_proxy", Int(0, 65535), 0,
           "loopback port for the proxy's Prometheus metrics (0: off)"),
    Option("DEFAULT", "metrics_port_agent", Int(0, 65535), 0,
           "loopback port for the agent's Prometheus metrics (0: off)"),
    Option("DEFAULT", "metrics_port_metadata", Int(0, 65535), 0,
           "loopback port for the metadata service's Prometheus metrics (0: off)"),
    Option("DEFAULT", "metrics_port_node", Int(0, 65535), 0,
           "loopback port for `node run`'s Prometheus metrics (0: off)"),
    Option("DEFAULT", "log_file", AbsPath(), None,
           "daemon log file shared by the daemons (default: stderr; reopened after logrotate)"),
    Option("DEFAULT", "log_dir", AbsPath(), None,
           "folder for one log file per daemon, mdtool-<daemon>.log (log_file wins when both are set)"),
    Option("DEFAULT", "log_rotation_type", Choice("size", "none"), "size",
           "size: a daemon's log file rotates at max_logfile_size_mb, keeping "
           "max_logfile_count old files (log_file, shared by the daemons, is left to logrotate)"),
    Option("DEFAULT", "max_logfile_size_mb", Int(1, 1 << 20), 100,
           "size in MiB at which a daemon's log file rotates"),
    Option("DEFAULT", "max_logfile_count", Int(0, 1000), 5,
           "rotated log files kept per daemon (0: the file is emptied instead)"),
    Option("DEFAULT", "debug", Bool(), False, "daemons log at debug level (as -vv does)"),
    Option("DEFAULT", "use_journal", Choice("auto", "yes", "no"), "auto",
           "journald-style lines (<level> prefix, no timestamp); auto: when stderr is the journal"),
    Option("metadata_rate_limiting", "rate_limit_enabled", Bool(), False,
           "limit requests per instance at the proxy"),
    Option("metadata_rate_limiting", "base_window_duration", Int(1, 86400), 10,
           "seconds of the base window"),
    Option("metadata_rate_limiting", "base_query_rate_limit", Int(1, 10**6), 10,
           "requests allowed in the base window"),
    Option("metadata_rate_limiting", "burst_window_duration", Int(1, 86400), 10,
           "seconds of the burst window"),
    Option("metadata_rate_limiting", "burst_query_rate_limit", Int(1, 10**6), 10,
           "requests allowed in the burst window"),
    Option("metadata_haproxy", "timeout_http_request", Float(), 30.0,
           "seconds a client may take to send a request head"),
    Option("metadata_haproxy", "timeout_server", Float(), 32.0,
           "seconds the proxy waits for the agent's answer"),
    Option("metadata_haproxy", "timeout_http_keep_alive", Float(), 30.0,
           "seconds an idle keep-alive connection stays open"),
    Option("metadata_haproxy", "max_header_bytes", Int(1024, 1 << 20), 16384,
           "largest request head the proxy accepts (431 beyond)"),
    Option("metadata_haproxy", "max_header_count", Int(8, 1000), 100,
           "most header fields the proxy accepts (431 beyond)"),
    Option("metadata_haproxy", "max_body_bytes", Int(0, 1 << 30), 1 << 20,
           "largest request body the proxy accepts (413 beyond)"),
    Option("metadata_haproxy", "max_connections_per_source", Int(1, 100000), 100,
           "open connections one instance may hold on its network (503 beyond); the "
           "network's own cap is 1024, as Neutron's haproxy maxconn"),
    Option("metadata_haproxy", "max_buffered_body_bytes", Size(1 << 20, 1 << 34), 64 << 20,
           "request bodies the proxy holds in memory at once, all networks together "
           "(503 and close beyond)"),
]

# The global settings (command-line options and MDTOOL_* variables, not in the file).
GLOBALS = {"state_dir": AbsPath(), "db": DbUrl(), "config_file": AbsPath()}
GLOBAL_ENV = {"state_dir": "MDTOOL_STATE_DIR", "db": "MDTOOL_DB", "config_file": "MDTOOL_CONFIG"}
GLOBAL_FLAG = {"state_dir": "--state-dir", "db": "--db", "config_file": "--config-file"}

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


def check_environment(environ: dict[str, str] | None = None) -> list[str]:
    """Every bad ``MDTOOL_*`` value of the environment, one line each naming the variable."""
    env = os.environ if environ is None else environ
    errors = []
    for name, typ in GLOBALS.items():
        var = GLOBAL_ENV[name]
        if env.get(var):
            try:
                typ.parse(env[var])
            except ValueError as e:
                errors.append(f"environment {var}: bad value for {name}: {e}")
    for opt in OPTIONS:
        var = env_name(opt.section, opt.name)
        if var in env:
            try:
                opt.parse(env[var])
            except ValueError as e:
                errors.append(f"environment {var}: bad value for {opt.name}: {e}")
    return errors


def _line_of(msg: str) -> int:
    m = re.match(r"^.*?:(\d+):", msg)
    return int(m.group(1)) if m else 0


def sample_ini() -> str:
    """A commented config file: every option, its meaning and its default, all commented out."""
    lines = ["# mdtool configuration (INI). Every option is shown at its default, commented out.",
             "# Environment MDTOOL_<OPTION> (MDTOOL_<SECTION>__<OPTION> outside [DEFAULT])",
             "# overrides this file; `mdtool config show` prints what is in effect."]
    for section in SECTIONS:
        lines += ["", f"[{section}]"]
        for o in OPTIONS:
            if o.section == section:
                lines += [f"# {o.help} ({o.type.describe})",
                          f"#{o.name} = {o.type.text(o.default)}".rstrip()]
    return "\n".join(lines) + "\n"


def mask(value: Any) -> str:
    """What ``config show`` prints for a secret: whether it is set, never the value."""
    return "********" if value else ""


def mask_url(url: str) -> str:
    """A database URL without its password."""
    return re.sub(r"^([A-Za-z0-9+]+://[^:/@]*):[^@]*@", r"\1:********@", url)


class Config:
    """Effective configuration: defaults < file < environment."""

    def __init__(self, state_dir: str | None = None, db_url: str | None = None,
                 config_file: str | None = None, environ: dict[str, str] | None = None):
        env = os.environ if environ is None else environ

        def setting(name: str, given: str | os.PathLike | None) -> str | None:
            """A global setting, checked; an error names the flag or the variable."""
            var = GLOBAL_ENV[name]
            raw = os.fspath(given) if given else (env.get(var) or None)
            if raw is None:
                return None
            # click folds the variable into the option: name the variable when it is the same
            where = (f"environment {var}" if not given or given == env.get(var)
                     else GLOBAL_FLAG[name])
            try:
                return GLOBALS[name].parse(raw)
            except ValueError as e:
                raise BadInput(f"{where}: bad value for {name}: {e}") from None

        self.state_dir = Path(setting("state_dir", state_dir) or DEFAULT_STATE_DIR)
        self.db_url = setting("db", db_url) or f"sqlite:///{self.state_dir}/mdtool.db"
        cf = setting("config_file", config_file)
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

    def set(self, name: str, text: str, source: str, section: str = "DEFAULT") -> None:
        """A command-line value (``--host``): checked by the option's type like any other;
        an error names ``source``."""
        opt = OPTION_INDEX[(section, name)]
        self.values[(section, name)] = Value(self._parse(opt, text, source), source)

    def get(self, name: str, section: str = "DEFAULT") -> Any:
        return self.values[(section, name)].value

    # Derived values -----------------------------------------------------------------

    @property
    def host(self) -> str:
        host = self.get("host")
        if host:
            return host
        import socket  # here: not every command needs it (start-up time, docs/internals.md)
        return socket.gethostname()

    @property
    def nova_metadata_url(self) -> str:
        """Where the agent sends signed requests: ``unix:<state_dir>/metadata`` (this node's
        metadata service) unless a TCP upstream is named by nova_metadata_url or _host."""
        url = self.get("nova_metadata_url")
        if url:
            return url
        host = self.get("nova_metadata_host")
        if host is None:
            return f"unix:{self.metadata_socket}"
        if ":" in host:
            host = f"[{host}]"
        return f"{self.get('nova_metadata_protocol')}://{host}:{self.get('nova_metadata_port')}"

    @property
    def nova_metadata_is_local(self) -> bool:
        """True when the agent's upstream is the metadata service mdtool itself runs."""
        url = self.nova_metadata_url
        if url == f"unix:{self.metadata_socket}":
            return True
        listen = self.metadata_listen
        return listen is not None and url.rstrip("/") in (
            f"http://127.0.0.1:{listen[1]}", f"http://localhost:{listen[1]}")

    @property
    def fast_path(self) -> bool:
        """True when the proxy answers in-process (see mdtool/fastpath.py)."""
        return self.get("metadata_backend") == "local" and self.nova_metadata_is_local

    @property
    def metadata_socket(self) -> Path:
        """The metadata service's Unix socket (0660, root's: local users cannot reach it)."""
        return self.state_dir / "metadata"

    @property
    def metadata_listen(self) -> tuple[str, int] | None:
        """The TCP address `metadata run` listens on besides its socket, None when none."""
        host, port = self.get("metadata_listen_host"), self.get("metadata_listen_port")
        if host is None and port is None:
            return None
        return host or "127.0.0.1", port or 8775

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
            token = path.read_text().strip()
        except FileNotFoundError:
            if not create:
                raise
        else:
            self.values[("DEFAULT", "metadata_proxy_shared_secret")] = Value(token, f"generated {path}")
            return token
        from mdtool.files import PRIVATE_MODE, make_dirs
        make_dirs(self.state_dir)
        import secrets  # here: only the first daemon start makes the secret
        token = secrets.token_hex(32)
        # Write a private temp file, then link it into place: readers never see it half
        # written, and when two processes race the loser adopts the winner's secret.
        tmp = path.with_name(f".{SECRET_FILE}.{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_MODE)
        os.fchmod(fd, PRIVATE_MODE)
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
