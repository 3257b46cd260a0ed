"""Pure argument normalisers: parse and check operator input, raise BadInput on bad syntax."""

from __future__ import annotations

import ipaddress
import re

from mdtool.errors import BadInput

# Matched with fullmatch: ``$`` would also match before a trailing newline.
_MAC_RE = re.compile(r"([0-9a-fA-F]{2})([:-][0-9a-fA-F]{2}){5}")
_NAME_RE = re.compile(r"[\w.@:+-][\w .@:+-]{0,254}", re.UNICODE)
_META_KEY_RE = re.compile(r"[\w.:-]{1,255}")
_PUBLIC_KEY_RE = re.compile(r"(ssh-(rsa|dss|ed25519)|ecdsa-sha2-nistp\d+|sk-\S+) [A-Za-z0-9+/=]+( .*)?")

# Ranges no instance subnet may touch: an address there is either not an instance's
# (loopback, multicast, unspecified) or it would alias another one (an IPv4-mapped IPv6
# address is that IPv4 address to every socket API), or it is the link-local range that
# holds the metadata address itself.
_RESERVED = [(ipaddress.ip_network(n), why) for n, why in (
    ("0.0.0.0/8", "'this network' (0.0.0.0/8)"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local (the metadata address lives there)"),
    ("224.0.0.0/4", "multicast"),
    ("255.255.255.255/32", "the limited broadcast address"),
    ("::/128", "the unspecified address"),
    ("::1/128", "loopback"),
    ("::ffff:0:0/96", "IPv4-mapped (an address there is an IPv4 address in disguise)"),
    ("fe80::/10", "link-local"),
    ("ff00::/8", "multicast"),
)]


def cidr(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """A network address with a prefix length; host bits must be clear."""
    text = text.strip()
    if "/" not in text:
        raise BadInput(f"invalid CIDR {text!r}: expected ADDRESS/PREFIX, e.g. 172.17.17.0/24")
    try:
        return ipaddress.ip_network(text, strict=True)
    except ValueError:
        pass
    try:
        loose = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise BadInput(f"invalid CIDR {text!r}: expected ADDRESS/PREFIX, e.g. 172.17.17.0/24") from None
    raise BadInput(f"invalid CIDR {text!r}: host bits set; did you mean {loose}?")


def subnet_cidr(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """A CIDR an instance subnet may have: none of the reserved ranges above."""
    net = cidr(text)
    for reserved, why in _RESERVED:
        if net.version == reserved.version and net.overlaps(reserved):
            raise BadInput(f"invalid subnet {text.strip()!r}: it overlaps {reserved}, {why}; "
                           "pick a private range such as 10.0.0.0/24 or fd00::/64")
    return net


def fixed_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """A port's fixed IP; an IPv4-mapped IPv6 address is refused (it would alias an IPv4 one)."""
    addr = ip(text)
    if addr.version == 6 and addr.ipv4_mapped is not None:
        raise BadInput(f"invalid fixed IP {text.strip()!r}: an IPv4-mapped address is "
                       f"{addr.ipv4_mapped} to the metadata path; use {addr.ipv4_mapped} itself")
    return addr


def ip(text: str, what: str = "IP address") -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        raise BadInput(f"invalid {what} {text!r}") from None


def mac(text: str) -> str:
    t = text.strip()
    if not _MAC_RE.fullmatch(t):
        raise BadInput(f"invalid MAC address {text!r}: expected six hex pairs like fa:16:3e:12:34:56")
    m = t.replace("-", ":").lower()
    if int(m[:2], 16) & 1:
        raise BadInput(f"invalid MAC address {text!r}: a multicast address cannot be a port's MAC")
    if m == "00:00:00:00:00:00":
        raise BadInput(f"invalid MAC address {text!r}: all zeros")
    return m


def name(text: str, what: str = "name") -> str:
    if not _NAME_RE.fullmatch(text) or text != text.strip():
        raise BadInput(f"invalid {what} {text!r}: use 1-255 letters, digits, spaces or . _ - @ : +, "
                       "not starting with a space")
    return text


def hostname(text: str) -> str:
    """An instance's hostname: a DNS name as Neutron validates one (RFC 1123)."""
    from mdtool.config import dns_name
    try:
        return dns_name(text)
    except ValueError as e:
        raise BadInput(f"invalid hostname {text!r}: {e}") from None


def hostname_from_name(instance_name: str) -> str:
    """What Nova does: a display name sanitised into a hostname."""
    h = re.sub(r"[^a-z0-9-]+", "-", instance_name.lower()).strip("-")[:63].strip("-")
    return h or "instance"


def uuid(text: str, what: str = "id") -> str:
    import uuid as _uuid
    try:
        u = _uuid.UUID(text.strip())
    except ValueError:
        raise BadInput(f"invalid {what} {text!r}: expected a UUID") from None
    return str(u)


def mtu(value: int) -> int:
    if not 68 <= value <= 65535:
        raise BadInput(f"invalid MTU {value}: expected 68 to 65535")
    return value


def key_values(text: str, keys: tuple[str, ...], option: str,
               required: tuple[str, ...] = ()) -> dict[str, str]:
    """Parse 'a=1,b=2' as the OpenStack client does for --allocation-pool and friends."""
    out: dict[str, str] = {}
    for part in text.split(","):
        k, sep, v = part.partition("=")
        k = k.strip()
        if not sep or k not in keys or not v.strip():
            raise BadInput(f"invalid {option} {text!r}: expected " + ",".join(f"{x}=…" for x in keys))
        if k in out:
            raise BadInput(f"invalid {option} {text!r}: {k} given twice")
        out[k] = v.strip()
    missing = [k for k in required if k not in out]
    if missing:
        raise BadInput(f"invalid {option} {text!r}: {missing[0]}=… is missing")
    return out


def meta_item(text: str) -> tuple[str, str]:
    k, sep, v = text.partition("=")
    if not sep or not _META_KEY_RE.fullmatch(k):
        raise BadInput(f"invalid --meta {text!r}: expected KEY=VALUE with KEY of letters, digits, . _ : -")
    if len(v) > 255:
        raise BadInput(f"invalid --meta {text!r}: value longer than 255 characters")
    return k, v


def project_id(text: str) -> str:
    if not re.fullmatch(r"[\w-]{1,64}", text):
        raise BadInput(f"invalid project id {text!r}: use up to 64 letters, digits, - or _")
    return text


def public_key(text: str, source: str) -> str:
    key = text.strip()
    if not _PUBLIC_KEY_RE.fullmatch(key) or "\n" in key:
        raise BadInput(f"{source} does not hold one OpenSSH public key (e.g. 'ssh-ed25519 AAAA… comment')")
    return key
