"""The raw-netlink fast paths of ip_lib fail loudly: no silent fallback to a second path."""

from __future__ import annotations

import errno

import pytest

from mdtool.errors import OperationFailed
from mdtool.netns import ip_lib, switch


def test_read_namespace_reports_a_socket_failure(monkeypatch):
    monkeypatch.setattr(ip_lib, "namespace_exists", lambda name: True)

    def no_socket(name, fn):
        raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr(switch, "run_in_netns", no_socket)
    monkeypatch.setattr(ip_lib, "list_links", lambda *a, **k: pytest.fail("fell back"))
    with pytest.raises(OperationFailed, match="cannot read links and addresses in qdhcp-x: "
                                              "Too many open files"):
        ip_lib.read_namespace("qdhcp-x")


def test_raw_host_links_report_a_socket_failure(monkeypatch):
    class Broken:
        closed = False

        def send(self, data):
            raise OSError(errno.ENOBUFS, "No buffer space available")

        def close(self):
            Broken.closed = True

    monkeypatch.setattr(ip_lib, "_batch", {"host": None, "aliases": None, "raw": Broken()})
    with pytest.raises(OperationFailed, match="cannot read links in the host namespace: "
                                              "No buffer space available"):
        ip_lib._raw_host_links(["lo"])
    assert Broken.closed and "raw" not in ip_lib._batch
