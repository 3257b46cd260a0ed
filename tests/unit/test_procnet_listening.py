"""sock_diag's listening sockets are /proc/net/tcp{,6}'s LISTEN lines, read without walking
every established socket of every namespace."""

from __future__ import annotations

import socket

from mdtool.inspect import procnet


def _key(s: procnet.Socket):
    return (s.proto, s.local_address, s.local_port, s.inode, s.uid, s.state)


def test_listening_sockets_are_the_listen_lines_of_proc_net_tcp():
    made = []
    try:
        for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
            s = socket.socket(family, socket.SOCK_STREAM)
            s.bind((host, 0))
            s.listen(4)
            made.append(s)
        idle = socket.socket()  # bound, not listening: not listed
        idle.bind(("127.0.0.1", 0))
        made.append(idle)
        ours = {s.getsockname()[:2] for s in made}  # others' sockets come and go meanwhile
        want = sorted(_key(s) for s in procnet.read_sockets()
                      if s.listening and (s.local_address, s.local_port) in ours)
        got = sorted(_key(s) for s in procnet.listening_sockets()
                     if (s.local_address, s.local_port) in ours)
        assert got == want and len(got) == 2
        ports = {(s.local_address, s.local_port) for s in procnet.listening_sockets()}
        assert ("127.0.0.1", made[0].getsockname()[1]) in ports
        assert ("::1", made[1].getsockname()[1]) in ports
        assert ("127.0.0.1", idle.getsockname()[1]) not in ports
    finally:
        for s in made:
            s.close()
