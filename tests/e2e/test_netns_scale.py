"""netns at scale: reading only the host links a network needs, and one netlink session
that keeps a socket per namespace."""

from __future__ import annotations

import os

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
    with ip_lib.Netlink() as nl:
        got = ip_lib.host_links_matching(nl, names=(br, "nosuchlink0"), master=br,
                                         alias="mdtool:dhcp:" + br)
        every = ip_lib.list_links(nl, None)
        assert ip_lib.host_links_matching(nl, names=("nosuchlink0",)) == []
    want = [l for l in every if l.ifname == br or l.master == br or l.alias == "mdtool:dhcp:" + br]
    key = lambda l: l.ifname  # noqa: E731
    assert sorted(got, key=key) == sorted(want, key=key)
    assert {l.ifname for l in got} == {br, a, c}
    assert next(l for l in got if l.ifname == a).master == br


def test_a_session_follows_a_recreated_namespace_and_closes_its_sockets(cleanup):
    ns = cleanup.netns(unique_name("tns-"))
    with ip_lib.Netlink() as nl:
        ip_lib.create_namespace(nl, ns)
        sh("ip", "link", "add", "d0", "type", "veth", "peer", "name", "d1", netns=ns)
        assert "d0" in [l.ifname for l in ip_lib.list_links(nl, ns)]
        assert "d0" in [l.ifname for l in ip_lib.read_namespace(nl, ns)[0]]
        ip_lib.delete_namespace(nl, ns)
        ip_lib.create_namespace(nl, ns)
        # a socket kept from before would still see the old namespace and its d0
        assert [l.ifname for l in ip_lib.list_links(nl, ns)] == ["lo"]
        assert [l.ifname for l in ip_lib.read_namespace(nl, ns)[0]] == ["lo"]
        assert (list(nl._route), list(nl._plain)) == ([ns], [ns])
        plain = nl._plain[ns]
    assert (nl._route, nl._plain) == ({}, {})
    assert plain.fileno() == -1  # closed, not left to the garbage collector


def test_down_finds_an_unmarked_host_end_without_listing_every_link(cleanup, monkeypatch):
    """The host end of a DHCP port that lost its marker is still removed, and down() reads
    it by name: listing every host link (thousands on a node of 1,000 networks) per network
    made disable-isolated-metadata --all quadratic."""
    from mdtool.netns import dhcp_port, names
    net_id = unique_name("t", 12)
    ns = cleanup.netns(names.namespace_name(net_id))
    tap = unique_name("tap", 14)
    end = cleanup.link("ns-" + tap[3:])
    sh("ip", "netns", "add", ns)
    sh("ip", "link", "add", end, "type", "veth", "peer", "name", tap)
    sh("ip", "link", "set", tap, "netns", ns)
    every_host_link = ip_lib.list_links

    def one_namespace_only(nl, netns=None):
        assert netns is not None, "down() listed every host link"
        return every_host_link(nl, netns)
    monkeypatch.setattr(ip_lib, "list_links", one_namespace_only)
    with ip_lib.Netlink() as nl:
        dhcp_port.down(nl, net_id, None)
    assert not ip_lib.namespace_exists(ns)
    assert not os.path.exists(f"/sys/class/net/{end}")


def test_a_session_keeps_its_alias_map_without_reading_every_link_again(cleanup, monkeypatch):
    """In a session, host link aliases are read from sysfs once; links it creates, marks
    and deletes update that map (reading every link's alias after each change made
    enable --all over 1,000 networks read ~3,000 sysfs files per network)."""
    br, a, b = (cleanup.link(unique_name(p, 12)) for p in ("tbr", "tva", "tvb"))
    mark = "mdtool:test:" + a
    with ip_lib.Netlink() as nl:
        assert ip_lib.host_links_matching(nl, alias=mark) == []  # the map is read here
        monkeypatch.setattr(ip_lib, "_sysfs_text", lambda path: pytest.fail("read again"))
        sh("ip", "link", "add", a, "type", "veth", "peer", "name", b)
        ip_lib.set_link(nl, a, alias=mark)
        ip_lib.create_bridge(nl, br, alias=mark + "-br")
        assert [l.ifname for l in ip_lib.host_links_matching(nl, alias=mark)] == [a]
        assert [l.ifname for l in ip_lib.host_links_matching(nl, alias=mark + "-br")] == [br]
        ip_lib.set_link(nl, a, alias="other:" + a)
        assert ip_lib.host_links_matching(nl, alias=mark) == []
        ip_lib.delete_link(nl, br)
        assert ip_lib.host_links_matching(nl, alias=mark + "-br") == []
        assert [l.alias for l in ip_lib.host_links_matching(nl, alias="other:" + a)] == ["other:" + a]


def test_namespaces_and_their_sockets_are_made_without_a_child_process(cleanup, monkeypatch):
    """create_namespace and the session's IPRoute in a namespace work in threads of this
    process (pyroute2's own forked a helper per namespace, ~20 ms each): the namespace is one
    `ip` sees and uses, the socket acts there, and closing leaves no descriptor behind."""
    import pyroute2.process

    def no_child(*a, **k):
        raise AssertionError("a child process was started")
    monkeypatch.setattr(pyroute2.process.ChildProcess, "run", no_child)
    monkeypatch.setattr(os, "fork", no_child)
    ns = cleanup.netns(unique_name("tns-"))
    fds = set(os.listdir("/proc/self/fd"))
    mine = os.stat("/proc/thread-self/ns/net").st_ino
    with ip_lib.Netlink() as nl:
        assert ip_lib.create_namespace(nl, ns) is True
        assert ip_lib.create_namespace(nl, ns) is False  # already there
        ip_lib.set_link(nl, "lo", ns, up=True)
        ip_lib.add_address(nl, "lo", "169.254.169.254/32", ns)
        assert "169.254.169.254/32" in [a.cidr for a in ip_lib.list_addresses(nl, ns)]
    assert set(os.listdir("/proc/self/fd")) == fds
    monkeypatch.undo()
    assert ns in sh("ip", "netns", "list").stdout.split()
    assert "169.254.169.254/32" in sh("ip", "-o", "addr", "show", "dev", "lo", netns=ns).stdout
    # a namespace of its own, and this thread never left its own
    assert os.stat("/proc/thread-self/ns/net").st_ino == mine
    assert os.stat(f"/run/netns/{ns}").st_ino != mine
    with ip_lib.Netlink() as nl:
        assert ip_lib.delete_namespace(nl, ns) is True
    assert not os.path.exists(f"/run/netns/{ns}")


def test_a_namespace_that_cannot_be_made_leaves_no_name(cleanup, monkeypatch):
    from mdtool.netns import switch
    ns = cleanup.netns(unique_name("tns-"))
    real = switch._libc_call

    def refuse_unshare(fn, *args):
        if fn == "unshare":
            raise OSError(1, "Operation not permitted")
        return real(fn, *args)
    monkeypatch.setattr(switch, "_libc_call", refuse_unshare)
    with ip_lib.Netlink() as nl, pytest.raises(Exception, match="cannot create network "
                                                                 "namespace .*not permitted"):
        ip_lib.create_namespace(nl, ns)
    assert not os.path.exists(f"/run/netns/{ns}")


def test_here_the_calling_thread_switches_in_and_always_back(cleanup, monkeypatch):
    """A command's look into a namespace switches the calling thread (a thread per look was
    a quarter of a no-change enable --all) and comes back: after an answer, after an error
    of the call, and when the namespace is gone."""
    import threading

    from mdtool.errors import NotFound
    from mdtool.netns import switch
    ns = cleanup.netns(unique_name("tns-"))
    sh("ip", "netns", "add", ns)
    mine = os.stat("/proc/thread-self/ns/net").st_ino
    target = os.stat(f"/run/netns/{ns}").st_ino

    def no_thread(*a, **k):
        raise AssertionError("a thread was started")
    monkeypatch.setattr(threading.Thread, "start", no_thread)

    def where():
        return os.stat("/proc/thread-self/ns/net").st_ino

    def boom():
        raise ValueError("boom")
    got = switch.run_in_each_netns([(ns, where), (ns, boom), ("no-such-ns-x", where), (ns, where)],
                                   here=True)
    assert [r for r, _ in got] == [target, None, None, target]
    assert isinstance(got[1][1], ValueError) and isinstance(got[2][1], NotFound)
    assert where() == mine
    assert switch.run_in_netns(ns, where, here=True) == target and where() == mine
    fds = set(os.listdir("/proc/self/fd"))
    with ip_lib.Netlink() as nl:  # its sockets in the namespace, made from this thread
        assert [l.ifname for l in ip_lib.read_namespace(nl, ns)[0]] == ["lo"]
        ip_lib.set_link(nl, "lo", ns, up=True)
    assert where() == mine and set(os.listdir("/proc/self/fd")) == fds
