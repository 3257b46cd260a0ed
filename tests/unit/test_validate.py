import pytest

from mdtool.errors import BadInput
from mdtool.registry import validate as v


@pytest.mark.parametrize("text", ["10.1.2.5/24", "2001:db8::1/64"])
def test_host_bits_are_refused_with_a_suggestion(text):
    with pytest.raises(BadInput, match="host bits set; did you mean"):
        v.cidr(text)


@pytest.mark.parametrize("text", ["10.0.0.0", "10.0.0.0/", "x/24", "300.0.0.0/8", ""])
def test_malformed_cidrs(text):
    with pytest.raises(BadInput, match="invalid CIDR"):
        v.cidr(text)


def test_macs_are_normalised_and_multicast_refused():
    assert v.mac("FA-16-3E-0A-0B-0C") == "fa:16:3e:0a:0b:0c"
    with pytest.raises(BadInput, match="multicast"):
        v.mac("01:00:5e:00:00:01")


def test_key_values():
    assert v.key_values("start=a,end=b", ("start", "end"), "--x") == {"start": "a", "end": "b"}
    for bad in ("start=a,start=b", "begin=a", "start=", "start"):
        with pytest.raises(BadInput):
            v.key_values(bad, ("start", "end"), "--x")


def test_hostname_from_name():
    assert v.hostname_from_name("My VM_1!") == "my-vm-1"
    assert v.hostname_from_name("!!!") == "instance"


@pytest.mark.parametrize("text", ["k\n", "k\r", "k\x85", "k\u2028", "k\n=v"])
def test_meta_keys_end_where_they_end(text):
    """`$` matched before a trailing newline: `--meta $'k\\n=v'` stored a key 'k\\n'."""
    key = text.partition("=")[0]
    with pytest.raises(BadInput):
        v.meta_item(f"{key}=v")


@pytest.mark.parametrize("text,reason", [
    ("::ffff:0:0/96", "IPv4-mapped"), ("::/0", "overlaps"), ("0.0.0.0/0", "overlaps"),
    ("127.0.0.0/8", "loopback"), ("224.0.0.0/4", "multicast"), ("169.254.0.0/16", "link-local"),
    ("fe80::/10", "link-local"), ("ff00::/8", "multicast"), ("255.255.255.255/32", "broadcast")])
def test_reserved_ranges_are_no_instance_subnet(text, reason):
    with pytest.raises(BadInput, match=reason):
        v.subnet_cidr(text)
    v.cidr(text)  # still a CIDR: host routes may name such ranges


def test_an_ipv4_mapped_fixed_ip_is_refused():
    with pytest.raises(BadInput, match="use 10.11.0.5 itself"):
        v.fixed_ip("::ffff:10.11.0.5")
    assert str(v.fixed_ip("fd00::5")) == "fd00::5"
