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
