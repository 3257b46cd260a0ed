"""The raw-netlink fast paths of ip_lib fail loudly: no silent fallback to a second path,
and a netlink session's sockets close for sure, or say why they did not."""

from __future__ import annotations

import errno

import pytest

from mdtool.errors import OperationFailed
from mdtool.netns import ip_lib, switch


def test_read_namespace_reports_a_socket_failure(monkeypatch):
    monkeypatch.setattr(ip_lib, "namespace_exists", lambda name: True)

    def no_socket(name, fn, **kw):
        raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr(switch, "run_in_netns", no_socket)
    monkeypatch.setattr(ip_lib, "list_links", lambda *a, **k: pytest.fail("fell back"))
    with pytest.raises(OperationFailed, match="cannot read links and addresses in qdhcp-x: "
                                              "Too many open files"):
        with ip_lib.Netlink() as nl:
            ip_lib.read_namespace(nl, "qdhcp-x")


class Broken:
    """A socket whose every send fails."""

    def __init__(self):
        self.closed = False

    def send(self, data):
        raise OSError(errno.ENOBUFS, "No buffer space available")

    def close(self):
        self.closed = True


def test_raw_host_links_report_a_socket_failure_and_drop_the_socket(monkeypatch):
    broken = Broken()
    monkeypatch.setattr(ip_lib, "_open_plain", lambda: broken)
    with ip_lib.Netlink() as nl:
        with pytest.raises(OperationFailed, match="cannot read links in the host namespace: "
                                                  "No buffer space available"):
            ip_lib.host_links_matching(nl, names=("lo",))
        assert broken.closed  # a socket that failed mid-request is not used again
        fresh = Broken()
        monkeypatch.setattr(ip_lib, "_open_plain", lambda: fresh)
        with pytest.raises(OperationFailed):
            ip_lib.host_links_matching(nl, names=("lo",))
    assert fresh.closed


class FakeIPRoute:
    """pyroute2's IPRoute as far as the session uses it; counts opens and closes."""

    opened: list["FakeIPRoute"] = []
    close_error: OSError | None = None

    def __init__(self, netns=None, flags=None):
        self.netns, self.closed = netns, False
        FakeIPRoute.opened.append(self)

    def close(self):
        self.closed = True
        if FakeIPRoute.close_error is not None:
            raise FakeIPRoute.close_error


@pytest.fixture
def fake_iproute(monkeypatch):
    FakeIPRoute.opened, FakeIPRoute.close_error = [], None
    monkeypatch.setattr(ip_lib, "IPRoute", FakeIPRoute)
    monkeypatch.setattr(ip_lib, "_open_route", lambda netns: FakeIPRoute(netns=netns))
    monkeypatch.setattr(ip_lib, "namespace_exists", lambda name: True)
    return FakeIPRoute


def test_a_session_opens_one_socket_per_namespace_and_closes_them_all(fake_iproute):
    with ip_lib.Netlink() as nl:
        for _ in range(3):
            for netns in (None, "qdhcp-a", "qdhcp-b"):
                nl.route(netns, "test")
    assert [s.netns for s in fake_iproute.opened] == [None, "qdhcp-a", "qdhcp-b"]
    assert all(s.closed for s in fake_iproute.opened)


def test_a_created_or_deleted_namespace_gets_a_fresh_socket(fake_iproute, monkeypatch):
    monkeypatch.setattr(ip_lib._netns, "remove", lambda name: None)
    with ip_lib.Netlink() as nl:
        old = nl.route("qdhcp-a", "test")
        assert ip_lib.delete_namespace(nl, "qdhcp-a")
        assert old.closed  # it would keep the deleted namespace alive
        assert nl.route("qdhcp-a", "test") is not old


def test_a_socket_that_fails_to_close_is_an_error_after_the_others_closed(fake_iproute):
    fake_iproute.close_error = OSError(errno.EBADF, "Bad file descriptor")
    with pytest.raises(OperationFailed, match="cannot close a netlink socket: Bad file descriptor"):
        with ip_lib.Netlink() as nl:
            nl.route(None, "test")
            nl.route("qdhcp-a", "test")
    assert all(s.closed for s in fake_iproute.opened)
