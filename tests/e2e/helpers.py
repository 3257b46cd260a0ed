"""Shared e2e helpers: unique names, cleanup that runs even on failure, DHCP clients
that configure an instance namespace with their OWN hook script (the host's
/etc/resolv.conf is never touched), and polling instead of sleeping.

Use from a test module::

    from tests.e2e.helpers import (requires_root, unique_id, Cleanup, make_state_dir,
                                   DhcpClients, wait_for, ns_routes, ns_ipv4)

Everything here drives ``ip`` with subprocess on purpose: the checks must not share code
(or bugs) with what they check.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Callable

import pytest

from mdtool import model


# Skips -------------------------------------------------------------------------------

def requires(*programs: str):
    """Skip unless root and every program is on PATH."""
    missing = [p for p in programs if shutil.which(p) is None]
    reason = ("needs root" if os.geteuid() != 0
              else f"needs {', '.join(missing)}" if missing else "")
    return pytest.mark.skipif(bool(reason), reason=reason or "ok")


requires_root = requires("ip")


# Names -------------------------------------------------------------------------------

def unique_id() -> str:
    """A fresh UUID string (network/port ids); its first 11 characters name interfaces."""
    return str(uuid.uuid4())


def unique_name(prefix: str, length: int = 15) -> str:
    """A unique interface/namespace name of at most ``length`` characters."""
    return (prefix + uuid.uuid4().hex)[:length]


# Waiting ------------------------------------------------------------------------------

def wait_for(predicate: Callable[[], object], timeout: float = 10.0, what: str = "condition"):
    """Poll ``predicate`` until it returns something truthy; return it. Never a fixed sleep."""
    deadline = time.monotonic() + timeout
    delay = 0.02
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.25)


def wait_for_log(path: str | os.PathLike, needle: str, timeout: float = 10.0,
                 offset: int = 0) -> str:
    """Wait until ``needle`` appears in the file after ``offset``; return that text."""
    def found():
        try:
            with open(path, errors="replace") as f:
                f.seek(offset)
                text = f.read()
        except FileNotFoundError:
            return None
        return text if needle in text else None
    return wait_for(found, timeout, f"{needle!r} in {path}")


def file_size(path: str | os.PathLike) -> int:
    try:
        return os.path.getsize(path)
    except FileNotFoundError:
        return 0


# ip(8) wrappers ------------------------------------------------------------------------

def sh(*argv: str, check: bool = True, netns: str | None = None,
       timeout: float = 30) -> subprocess.CompletedProcess:
    full = (["ip", "netns", "exec", netns] if netns else []) + list(argv)
    res = subprocess.run(full, capture_output=True, text=True, timeout=timeout,
                         stdin=subprocess.DEVNULL)
    if check and res.returncode != 0:
        raise AssertionError(f"{' '.join(full)} failed ({res.returncode}): {res.stderr.strip()}")
    return res


def netns_exists(name: str) -> bool:
    return os.path.exists(f"/run/netns/{name}")


def host_link_exists(name: str) -> bool:
    return os.path.exists(f"/sys/class/net/{name}")


def link_exists(name: str, netns: str | None = None) -> bool:
    if netns is None:
        return host_link_exists(name)
    if not netns_exists(netns):
        return False
    return sh("ip", "link", "show", "dev", name, check=False, netns=netns).returncode == 0


def ns_ipv4(netns: str, ifname: str) -> list[str]:
    """``ip/prefixlen`` of the IPv4 addresses on ``ifname`` in ``netns``."""
    out = json.loads(sh("ip", "-j", "-4", "addr", "show", "dev", ifname, netns=netns).stdout or "[]")
    return [f"{a['local']}/{a['prefixlen']}" for link in out for a in link.get("addr_info", [])]


def ns_routes(netns: str, family: str = "-4") -> list[dict]:
    """Main-table routes in ``netns`` as ``ip -j route`` dicts (dst, gateway, dev, ...)."""
    return json.loads(sh("ip", "-j", family, "route", "show", netns=netns).stdout or "[]")


def route_via(routes: list[dict], dst: str) -> str | None:
    """The gateway of the route to ``dst`` ("default" or "a.b.c.d" / "a.b.c.d/nn")."""
    for r in routes:
        if r.get("dst") == dst:
            return r.get("gateway")
    return None


def processes_matching(*needles: str) -> list[int]:
    """Pids whose cmdline holds every needle (zombies excluded)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry}/cmdline").read_bytes()
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        text = raw.replace(b"\0", b" ").decode(errors="replace")
        if state != "Z" and all(n in text for n in needles):
            pids.append(int(entry))
    return pids


# Cleanup ------------------------------------------------------------------------------

class Cleanup:
    """Register what a test creates; ``run()`` removes it in reverse order, ignoring what
    is already gone and never stopping at the first failure. Use it as a fixture::

        @pytest.fixture
        def cleanup():
            c = Cleanup()
            yield c
            c.run()
    """

    def __init__(self) -> None:
        self._steps: list[tuple[str, Callable[[], None]]] = []

    def add(self, what: str, fn: Callable[[], None]) -> None:
        self._steps.append((what, fn))

    def netns(self, name: str) -> str:
        """Delete the namespace, and its veths first (the kernel may keep their peers)."""
        def remove():
            if netns_exists(name):
                links = json.loads(sh("ip", "-j", "link", "show", netns=name,
                                      check=False).stdout or "[]")
                for link in links:
                    if link.get("link_type") != "loopback":
                        sh("ip", "link", "del", "dev", link["ifname"], netns=name, check=False)
                sh("ip", "netns", "del", name, check=False)
        self.add(f"namespace {name}", remove)
        return name

    def link(self, name: str) -> str:
        """Delete a host link (veth end, bridge) if it exists."""
        def remove():
            if host_link_exists(name):
                sh("ip", "link", "del", "dev", name, check=False)
        self.add(f"link {name}", remove)
        return name

    def nft_table(self, network_id: str) -> str:
        """Delete the network's port security table (bridge family) if it exists."""
        name = f"mdtool-{network_id}"

        def remove():
            if shutil.which("nft"):
                subprocess.run(["nft", "delete", "table", "bridge", name], capture_output=True,
                               stdin=subprocess.DEVNULL, timeout=30)
        self.add(f"nft table bridge {name}", remove)
        return name

    def pidfile(self, path: str | os.PathLike, *needles: str) -> None:
        """Kill the process of a pid file if its cmdline still holds ``needles``."""
        def kill():
            try:
                pid = int(Path(path).read_text().split()[0])
            except (OSError, ValueError, IndexError):
                return
            if pid in processes_matching(*needles):
                _kill(pid)
        self.add(f"process of {path}", kill)

    def processes(self, *needles: str) -> None:
        """Kill every process whose cmdline holds all ``needles`` (unique ids only!)."""
        def kill():
            for pid in processes_matching(*needles):
                _kill(pid)
        self.add(f"processes {needles}", kill)

    def path(self, path: str | os.PathLike) -> None:
        self.add(f"path {path}", lambda: shutil.rmtree(path, ignore_errors=True))

    def run(self) -> None:
        errors = []
        while self._steps:
            what, fn = self._steps.pop()
            try:
                fn()
            except Exception as e:  # keep cleaning
                errors.append(f"{what}: {e}")
        if errors:
            raise AssertionError("cleanup failed: " + "; ".join(errors))


def _kill(pid: int) -> None:
    """SIGTERM, SIGKILL after 3 s; return only once the process is gone (or a zombie), so
    what a test does next never meets it still running."""
    for sig, grace in ((signal.SIGTERM, 3), (signal.SIGKILL, 10)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
            if not os.path.exists(f"/proc/{pid}") or _is_zombie(pid):
                return
            time.sleep(0.05)


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def make_state_dir(cleanup: Cleanup) -> Path:
    """A fresh state dir that dnsmasq's unprivileged user can read (pytest's tmp_path is
    0700, which dnsmasq cannot enter after dropping privileges)."""
    d = Path(tempfile.mkdtemp(prefix="mdtool-e2e-", dir="/tmp"))
    os.chmod(d, 0o755)
    cleanup.path(d)
    return d


# Model builders (no registry needed) ---------------------------------------------------

def make_network(*, mtu: int = 1450, bridge: str | None = None) -> model.Network:
    net_id = unique_id()
    return model.Network(id=net_id, name="net-" + net_id[:8],
                         bridge=bridge or "brq" + net_id[:11], mtu=mtu)


def add_subnet(net: model.Network, cidr: str, *, gateway: str | None = None,
               dns: list[str] | None = None, routes: list[tuple[str, str]] | None = None,
               enable_dhcp: bool = True) -> model.Subnet:
    import ipaddress
    version = ipaddress.ip_network(cidr).version
    sub = model.Subnet(id=unique_id(), name="sub", network_id=net.id, cidr=cidr,
                       ip_version=version, gateway_ip=gateway, enable_dhcp=enable_dhcp,
                       dns_nameservers=list(dns or []),
                       host_routes=[model.HostRoute(d, n) for d, n in routes or []])
    net.subnets.append(sub)
    return sub


def add_port(net: model.Network, ips: list[tuple[model.Subnet, str]], *, mac: str,
             owner: str = model.COMPUTE_OWNER) -> model.Port:
    port = model.Port(id=unique_id(), name="", network_id=net.id, mac_address=mac,
                      fixed_ips=[model.FixedIP(s.id, ip) for s, ip in ips], device_owner=owner)
    net.ports.append(port)
    return port


# DHCP clients with their own hook script ---------------------------------------------

# One POSIX sh hook for dhclient (-sf, variables $reason, $new_*) and busybox udhcpc
# (-s, $1 and $ip/$mask/$router/$staticroutes). It configures the interface inside the
# instance namespace and installs classless static routes (RFC 3442: when present the
# router option is ignored); it never writes resolv.conf.
HOOK_SCRIPT = r"""#!/bin/sh
PATH=/usr/sbin:/usr/bin:/sbin:/bin
log() { [ -n "${MDTOOL_HOOK_LOG:-}" ] && echo "$*" >> "$MDTOOL_HOOK_LOG"; return 0; }

route_add() {  # $1 destination/len  $2 gateway (0.0.0.0 = on-link)
    if [ "$2" = "0.0.0.0" ]; then
        ip route replace "$1" dev "$interface"
    else
        ip route replace "$1" via "$2" dev "$interface" onlink
    fi
    log "route $1 via $2"
}

rfc3442_routes() {  # dhclient: "len d1 .. dn g1 g2 g3 g4 ..." as decimal bytes
    set -- $1
    while [ $# -ge 5 ]; do
        len=$1; shift
        n=$(( (len + 7) / 8 ))
        d1=0; d2=0; d3=0; d4=0; i=1
        while [ $i -le $n ]; do eval "d$i=\$1"; shift; i=$((i + 1)); done
        route_add "$d1.$d2.$d3.$d4/$len" "$1.$2.$3.$4"
        shift 4
    done
}

configure() {  # $1 ip  $2 prefix or netmask  $3 routers  $4 classless (kind:value)
    ip addr flush dev "$interface" scope global
    ip addr add "$1/$2" dev "$interface"
    ip link set dev "$interface" up
    log "address $1/$2"
    case "$4" in
        rfc3442:?*) rfc3442_routes "${4#rfc3442:}" ;;
        pairs:?*)
            set -- ${4#pairs:}
            while [ $# -ge 2 ]; do route_add "$1" "$2"; shift 2; done ;;
        *)
            for r in $3; do ip route replace default via "$r" dev "$interface"; log "default via $r"; break; done ;;
    esac
}

if [ -n "${reason:-}" ]; then
    log "dhclient $reason"
    case "$reason" in
        PREINIT) ip link set dev "$interface" up ;;
        BOUND|RENEW|REBIND|REBOOT)
            classless=""
            [ -n "${new_rfc3442_classless_static_routes:-}" ] && classless="rfc3442:$new_rfc3442_classless_static_routes"
            configure "$new_ip_address" "$new_subnet_mask" "${new_routers:-}" "$classless" ;;
        EXPIRE|FAIL|RELEASE|STOP) ip addr flush dev "$interface" scope global ;;
        BOUND6|RENEW6|REBIND6|REBOOT6)
            ip -6 addr replace "$new_ip6_address/${new_ip6_prefixlen:-128}" dev "$interface" nodad
            log "address6 $new_ip6_address/${new_ip6_prefixlen:-128}" ;;
    esac
else
    log "udhcpc $1"
    case "$1" in
        deconfig) ip addr flush dev "$interface" scope global; ip link set dev "$interface" up ;;
        bound|renew)
            classless=""
            [ -n "${staticroutes:-}" ] && classless="pairs:$staticroutes"
            configure "$ip" "${mask:-${subnet:-32}}" "${router:-}" "$classless" ;;
    esac
fi
exit 0
"""

DHCLIENT_CONF = """\
option rfc3442-classless-static-routes code 121 = array of unsigned integer 8;
request subnet-mask, broadcast-address, routers, domain-name, domain-name-servers,
        host-name, interface-mtu, rfc3442-classless-static-routes;
timeout 20;
retry 5;
initial-interval 1;
"""


class DhcpClients:
    """Run dhclient / udhcpc once inside an instance namespace, with our own hook script
    and lease/pid files in ``workdir``; leftovers are registered with ``cleanup``."""

    def __init__(self, workdir: Path, cleanup: Cleanup) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.cleanup = cleanup
        self.script = self.workdir / "dhcp-hook.sh"
        self.script.write_text(HOOK_SCRIPT)
        os.chmod(self.script, 0o755)
        self.conf = self.workdir / "dhclient.conf"
        self.conf.write_text(DHCLIENT_CONF)
        self.hook_log = self.workdir / "hook.log"

    def _env(self) -> dict[str, str]:
        return {**os.environ, "MDTOOL_HOOK_LOG": str(self.hook_log)}

    def output(self, client: str) -> str:
        """What the client runs printed so far, and the hook's log, for failure messages."""
        parts = [f.read_text() for f in sorted(self.workdir.glob(f"{client}-*.out"))]
        if self.hook_log.exists():
            parts.append(self.hook_log.read_text())
        return "\n".join(parts)

    def flush(self, netns: str, ifname: str = "eth0") -> None:
        """Forget a previous lease's address and routes."""
        sh("ip", "addr", "flush", "dev", ifname, "scope", "global", netns=netns)
        sh("ip", "route", "flush", "dev", ifname, netns=netns, check=False)

    def dhclient(self, netns: str, ifname: str = "eth0", timeout: float = 40,
                 family: int = 4) -> bool:
        """One DHCP exchange with ISC dhclient (``family=6``: DHCPv6, ``dhclient -6``); True
        when it got a lease. The daemon it leaves behind after binding is killed here (and
        in cleanup, should this fail)."""
        tag = f"{netns}-{ifname}" + ("-6" if family == 6 else "")
        pidfile = self.workdir / f"dhclient-{tag}.pid"
        leases = self.leases_file(netns, ifname, family)
        self.cleanup.pidfile(pidfile, "dhclient", str(pidfile))
        argv = ["ip", "netns", "exec", netns, "dhclient", *(["-6"] if family == 6 else []),
                "-1", "-v", "-sf", str(self.script),
                "-cf", str(self.conf), "-lf", str(leases), "-pf", str(pidfile), ifname]
        res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                             env=self._env(), stdin=subprocess.DEVNULL)
        (self.workdir / f"dhclient-{tag}.out").write_text(res.stdout + res.stderr)
        try:
            pid = int(pidfile.read_text().split()[0])
            if pid in processes_matching("dhclient", str(pidfile)):
                _kill(pid)
        except (OSError, ValueError, IndexError):
            pass
        return res.returncode == 0

    def leases_file(self, netns: str, ifname: str = "eth0", family: int = 4) -> Path:
        return self.workdir / f"dhclient-{netns}-{ifname}{'-6' if family == 6 else ''}.leases"

    def udhcpc(self, netns: str, ifname: str = "eth0", tries: int = 4,
               timeout: float = 40) -> bool:
        """One DHCP exchange with busybox udhcpc asking for option 121 (-O staticroutes);
        quits after the lease (-q), fails after ``tries`` discovers (-n)."""
        argv = ["ip", "netns", "exec", netns, "udhcpc", "-f", "-q", "-n", "-i", ifname,
                "-t", str(tries), "-T", "1", "-A", "1", "-O", "staticroutes",
                "-s", str(self.script)]
        res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                             env=self._env(), stdin=subprocess.DEVNULL)
        (self.workdir / f"udhcpc-{netns}-{ifname}.out").write_text(res.stdout + res.stderr)
        return res.returncode == 0
