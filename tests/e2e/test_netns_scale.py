"""netns at scale: reading only the host links a network needs, and reusing RTNL sockets."""

from __future__ import annotations

import pytest

from mdtool.netns import ip_lib
from tests.e2e.helpers import Cleanup, requires_root, sh, unique_name

pytestmark = [requires_root, pytest.mark.timeout(60)]


@pytest.fixture
def cleanup():
    c = Cleanup()
    yield c
    c.run()


def test_host_links_matching_equals_filtering_every_link(cleanup):
    br, a, b, c, d = (unique_name(p, 12) for p in ("tbr", "tva", "tvb", "tvc", "tvd"))
    for name in (br, a, c):
        cleanup.link(name)
    sh("ip", "link", "add", br, "type", "bridge")
    sh("ip", "link", "add", a, "type", "veth", "peer", "name", b)
    sh("ip", "link", "set", a, "master", br)
    sh("ip", "link", "add", c, "type", "veth", "peer", "name", d)
    sh("ip", "link", "set", c, "alias", "mdtool:dhcp:" + br)
    got = ip_lib.host_links_matching(names=(br, "nosuchlink0"), master=br,
                                     alias="mdtool:dhcp:" + br)
    every = ip_lib.list_links(None)
    want = [l for l in every if l.ifname == br or l.master == br or l.alias == "mdtool:dhcp:" + br]
    key = lambda l: l.ifname  # noqa: E731
    assert sorted(got, key=key) == sorted(want, key=key)
    assert {l.ifname for l in got} == {br, a, c}
    assert next(l for l in got if l.ifname == a).master == br
    assert ip_lib.host_links_matching(names=("nosuchlink0",)) == []


def test_reused_sockets_follow_a_recreated_namespace(cleanup):
    ns = cleanup.netns(unique_name("tns-"))
    with ip_lib.reuse_sockets():
        ip_lib.create_namespace(ns)
        sh("ip", "link", "add", "d0", "type", "veth", "peer", "name", "d1", netns=ns)
        assert "d0" in [l.ifname for l in ip_lib.list_links(ns)]
        ip_lib.delete_namespace(ns)
        ip_lib.create_namespace(ns)
        # a socket kept from before would still see the old namespace and its d0
        assert [l.ifname for l in ip_lib.list_links(ns)] == ["lo"]
        with ip_lib.reuse_sockets():  # nested: same sockets, still open after
            ip_lib.list_links(ns)
        assert [l.ifname for l in ip_lib.list_links(ns)] == ["lo"]
    assert ip_lib._reused is None
