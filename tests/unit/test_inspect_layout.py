"""inspect's pure parts: /proc/net/tcp decoding and the route -n / netstat / ip a layouts."""

from mdtool.inspect import layout, procnet
from mdtool.inspect.procnet import Socket
from mdtool.netns.ip_lib import Address, Link, Route

# Real lines of /proc/net/tcp and /proc/net/tcp6 (x86-64, little endian).
TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: FEA9FEA9:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 142638 1 0000000000000000 100 0 0 10 0
   1: 0100007F:2247 0100007F:B9A2 01 00000002:00000005 00:00000000 00000000    33        0 99 1 0000000000000000 20 4 30 10 -1
"""
TCP6 = """\
  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 000080FE00000000FF3E16F8C9F766FE:0035 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 142640 1 0000000000000000 100 0 0 10 0
"""


def test_decode_a_real_tcp_line():
    s = procnet.parse(TCP)[0]
    assert s == Socket(proto="tcp", local_address="169.254.169.254", local_port=80,
                       remote_address="0.0.0.0", remote_port=0, state="LISTEN",
                       send_q=0, recv_q=0, inode=142638, uid=0)
    assert s.listening and s.local == "169.254.169.254:80" and s.foreign == "0.0.0.0:*"


def test_decode_established_with_queues():
    s = procnet.parse(TCP)[1]
    assert (s.local, s.foreign, s.state) == ("127.0.0.1:8775", "127.0.0.1:47522", "ESTABLISHED")
    assert (s.send_q, s.recv_q, s.uid, s.inode) == (2, 5, 33, 99)


def test_decode_tcp6_link_local():
    [s] = procnet.parse(TCP6, "tcp6")
    assert s.local_address == "fe80::f816:3eff:fe66:f7c9"
    assert s.local_port == 53 and s.remote_address == "::" and s.state == "LISTEN"


def test_header_and_garbage_are_skipped():
    assert procnet.parse_line("  sl  local_address rem_address   st tx_queue") is None
    assert procnet.parse_line("   0: zz:0050 00000000:0000 0A 0:0 00:0 0 0 0 1") is None


def _sock(**kw):
    base = dict(proto="tcp", local_address="0.0.0.0", local_port=80, remote_address="0.0.0.0",
                remote_port=0, state="LISTEN", send_q=0, recv_q=0, inode=1)
    return Socket(**{**base, **kw})


def test_netstat_layout_matches_the_story():
    text = layout.netstat_anpt([
        _sock(pid=27409, program="python"),
        _sock(local_address="172.17.17.1", local_port=53, pid=27348, program="dnsmasq"),
        _sock(local_address="169.254.169.254", local_port=53),
    ])
    assert text.splitlines() == [
        "Active Internet connections (servers and established)",
        "Proto Recv-Q Send-Q Local Address           Foreign Address         State       PID/Program name",
        "tcp        0      0 0.0.0.0:80              0.0.0.0:*               LISTEN      27409/python",
        "tcp        0      0 172.17.17.1:53          0.0.0.0:*               LISTEN      27348/dnsmasq",
        "tcp        0      0 169.254.169.254:53      0.0.0.0:*               LISTEN      -",
    ]


def test_netstat_hides_the_time_wait_of_our_own_probes():
    own = {"169.254.169.254", "172.17.17.1"}
    text = layout.netstat_anpt([
        _sock(local_address="169.254.169.254", pid=300, program="mdtool-proxy"),
        _sock(local_address="169.254.169.254", remote_address="169.254.169.254",
              remote_port=40001, state="TIME_WAIT"),
        _sock(local_address="169.254.169.254", local_port=40002, remote_address="169.254.169.254",
              remote_port=80, state="TIME_WAIT"),
        _sock(local_address="169.254.169.254", remote_address="172.17.17.5", remote_port=40003,
              state="TIME_WAIT"),  # an instance's: shown
    ], own)
    lines = text.splitlines()
    assert len(lines) == 5, text
    assert "172.17.17.5:40003" in lines[3]
    assert lines[4] == "(2 TIME_WAIT connection(s) of mdtool's own probes not shown)"


def test_route_n_layout_matches_the_story():
    routes = [Route("169.254.0.0", 16, None, "tapc2ac4ed4-f3", 4),
              Route("172.17.17.0", 24, None, "tapc2ac4ed4-f3", 4),
              Route("0.0.0.0", 0, "172.17.17.254", "tapc2ac4ed4-f3", 4, metric=100),
              Route("169.254.169.254", 32, "10.0.0.1", "eth0", 4),
              Route("fe80::", 64, None, "tapc2ac4ed4-f3", 6)]
    assert layout.route_n(routes).splitlines() == [
        "Kernel IP routing table",
        "Destination     Gateway         Genmask         Flags Metric Ref    Use Iface",
        "169.254.0.0     0.0.0.0         255.255.0.0     U     0      0        0 tapc2ac4ed4-f3",
        "172.17.17.0     0.0.0.0         255.255.255.0   U     0      0        0 tapc2ac4ed4-f3",
        "0.0.0.0         172.17.17.254   0.0.0.0         UG    100    0        0 tapc2ac4ed4-f3",
        "169.254.169.254 10.0.0.1        255.255.255.255 UGH   0      0        0 eth0",
    ]
    assert layout.route6_n(routes).splitlines()[2].split() == [
        "fe80::/64", "::", "U", "0", "0", "0", "tapc2ac4ed4-f3"]


def test_ip_4_a_layout():
    links = [Link(1, "lo", None, None, 65536, True, None, None, "UNKNOWN", 0x10049),
             Link(23, "tapc2ac4ed4-f3", "veth", "fa:16:3e:00:00:01", 1500, True, None, None,
                  "UP", 0x11143)]
    addrs = [Address("lo", "127.0.0.1", 8, 4, 254, 0x80),
             Address("tapc2ac4ed4-f3", "172.17.17.1", 24, 4, 0, 0x80, "172.17.17.255"),
             Address("tapc2ac4ed4-f3", "169.254.169.254", 32, 4, 0, 0x80),
             Address("tapc2ac4ed4-f3", "fe80::a9fe:a9fe", 128, 6, 253, 0x82)]
    assert layout.ip_addr(links, addrs, 4).splitlines() == [
        "1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 state UNKNOWN",
        "    inet 127.0.0.1/8 scope host lo",
        "23: tapc2ac4ed4-f3: <BROADCAST,MULTICAST,PROMISC,UP,LOWER_UP> mtu 1500 state UP",
        "    inet 172.17.17.1/24 brd 172.17.17.255 scope global tapc2ac4ed4-f3",
        "    inet 169.254.169.254/32 scope global tapc2ac4ed4-f3",
    ]
    assert layout.ip_addr(links, addrs, 6).splitlines() == [
        "23: tapc2ac4ed4-f3: <BROADCAST,MULTICAST,PROMISC,UP,LOWER_UP> mtu 1500 state UP",
        "    inet6 fe80::a9fe:a9fe/128 scope link nodad",
    ]


def test_link_without_carrier():
    assert layout.link_flags(0x1003) == ["NO-CARRIER", "BROADCAST", "MULTICAST", "UP"]


def test_socket_owners_from_a_fake_proc(tmp_path):
    fd = tmp_path / "4242" / "fd"
    fd.mkdir(parents=True)
    (fd / "3").symlink_to("socket:[142638]")
    (fd / "4").symlink_to("/dev/null")
    (tmp_path / "4242" / "comm").write_text("dnsmasq\n")
    (tmp_path / "self").mkdir()
    assert procnet.socket_owners([142638, 7], proc=str(tmp_path)) == {142638: 4242}
    assert procnet.comm(4242, proc=str(tmp_path)) == "dnsmasq"
