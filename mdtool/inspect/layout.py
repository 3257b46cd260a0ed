"""The text the operator of the 2013 story typed commands to see, rebuilt from plain data
(pure): ``ip -4 a`` / ``ip -6 a``, ``route -n``, ``netstat -anpt``."""

from __future__ import annotations

from typing import Iterable, Sequence

from mdtool.inspect.procnet import Socket
from mdtool.netns.ip_lib import Address, Link, Route

# iproute2's order (print_link_flags); LOWER_UP etc. are not in IFF_* of <net/if.h> < 0x10000
_LINK_FLAGS = (
    (0x8, "LOOPBACK"), (0x2, "BROADCAST"), (0x10, "POINTOPOINT"), (0x1000, "MULTICAST"),
    (0x80, "NOARP"), (0x200, "ALLMULTI"), (0x100, "PROMISC"), (0x400, "MASTER"),
    (0x800, "SLAVE"), (0x4, "DEBUG"), (0x8000, "DYNAMIC"), (0x20, "NOTRAILERS"),
    (0x1, "UP"), (0x10000, "LOWER_UP"), (0x20000, "DORMANT"), (0x40000, "ECHO"),
)
IFF_UP, IFF_RUNNING = 0x1, 0x40
_SCOPES = {0: "global", 200: "site", 253: "link", 254: "host", 255: "nowhere"}
# IFA_F_*: secondary (v4) / temporary (v6), nodad, optimistic, dadfailed, ..., permanent
_ADDR_FLAGS = ((0x02, "nodad"), (0x04, "optimistic"), (0x08, "dadfailed"),
               (0x20, "deprecated"), (0x40, "tentative"))
IFA_F_SECONDARY, IFA_F_PERMANENT = 0x01, 0x80


def link_flags(flags: int) -> list[str]:
    """``<BROADCAST,MULTICAST,UP,LOWER_UP>`` as a list (NO-CARRIER first, as ip prints it)."""
    out = ["NO-CARRIER"] if flags & IFF_UP and not flags & IFF_RUNNING else []
    return out + [name for bit, name in _LINK_FLAGS if flags & bit]


def scope_name(scope: int) -> str:
    return _SCOPES.get(scope, str(scope))


def address_flags(a: Address) -> list[str]:
    out = []
    if a.flags & IFA_F_SECONDARY:
        out.append("secondary" if a.family == 4 else "temporary")
    if a.family == 6 and not a.flags & IFA_F_PERMANENT and a.scope != 254:
        out.append("dynamic")
    return out + [name for bit, name in _ADDR_FLAGS if a.flags & bit]


def link_line(link: Link) -> str:
    state = link.oper_state or "UNKNOWN"
    return (f"{link.index}: {link.ifname}: <{','.join(link_flags(link.flags))}> "
            f"mtu {link.mtu} state {state}")


def address_line(a: Address) -> str:
    word = "inet" if a.family == 4 else "inet6"
    parts = [word, a.cidr]
    if a.family == 4 and a.broadcast:
        parts += ["brd", a.broadcast]
    parts += ["scope", scope_name(a.scope)]
    parts += address_flags(a)
    if a.family == 4:
        parts.append(a.ifname)  # the label
    return "    " + " ".join(parts)


def ip_addr(links: Sequence[Link], addresses: Iterable[Address], family: int) -> str:
    """``ip -4 a`` (family 4) or ``ip -6 a`` (6): links that carry such an address."""
    by_link: dict[str, list[Address]] = {}
    for a in addresses:
        if a.family == family:
            by_link.setdefault(a.ifname, []).append(a)
    lines = []
    for link in sorted(links, key=lambda l: l.index):
        if link.ifname not in by_link:
            continue
        lines.append(link_line(link))
        lines += [address_line(a) for a in by_link[link.ifname]]
    return "\n".join(lines)


ROUTE_HEADER = ("Kernel IP routing table\n"
                "Destination     Gateway         Genmask         Flags Metric Ref    Use Iface")


def route_row(r: Route) -> str:
    """One line of ``route -n`` (net-tools: ``%-15s %-15s %-15s %-5s %-6d %-3d %6d %s``)."""
    return "%-15s %-15s %-15s %-5s %-6d %-3d %6d %s" % (
        r.destination, r.gateway or "0.0.0.0", r.genmask, r.flags, r.metric, 0, 0, r.ifname or "*")


def route_n(routes: Iterable[Route]) -> str:
    """``route -n``: the IPv4 main table."""
    return "\n".join([ROUTE_HEADER] + [route_row(r) for r in routes if r.family == 4])


ROUTE6_HEADER = ("Kernel IPv6 routing table\n"
                 "Destination                    Next Hop                   Flag Met Ref Use If")


def route6_row(r: Route) -> str:
    """One line of ``route -n -A inet6``."""
    return "%-30s %-26s %-4s %-3d %-3d %3d %s" % (
        f"{r.destination}/{r.prefixlen}", r.gateway or "::", r.flags, r.metric, 0, 0,
        r.ifname or "*")


def route6_n(routes: Iterable[Route]) -> str:
    return "\n".join([ROUTE6_HEADER] + [route6_row(r) for r in routes if r.family == 6])


NETSTAT_HEADER = ("Active Internet connections (servers and established)\n"
                  "Proto Recv-Q Send-Q Local Address           Foreign Address         "
                  "State       PID/Program name")


def netstat_row(s: Socket) -> str:
    """One line of ``netstat -anpt`` (``%-5s %6d %6d %-23s %-23s %-11s %s``)."""
    return "%-5s %6d %6d %-23s %-23s %-11s %s" % (
        s.proto, s.recv_q, s.send_q, s.local, s.foreign, s.state, s.pid_program)


def netstat_anpt(sockets: Iterable[Socket], own_addresses: Iterable[str] = ()) -> str:
    """``netstat -anpt``; TIME_WAIT connections between two of the namespace's own addresses
    (``own_addresses``: no instance is one) are mdtool's own probes (inspect, enable), and are
    counted in one line instead of listed."""
    own = set(own_addresses)
    shown, hidden = [], 0
    for s in sockets:
        if s.state == "TIME_WAIT" and s.remote_address in own and s.local_address in own:
            hidden += 1
        else:
            shown.append(netstat_row(s))
    note = [f"({hidden} TIME_WAIT connection(s) of mdtool's own probes not shown)"] if hidden else []
    return "\n".join([NETSTAT_HEADER] + shown + note)
