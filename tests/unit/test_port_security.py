"""Port security rules: the exact nftables text rendered for ports (pure), and the plan
that compares it with the live table."""

import ipaddress

from mdtool import model
from mdtool.netns import portsec

NET = "11111111-2222-3333-4444-555555555555"
A = "aaaaaaaa-0000-0000-0000-000000000001"
B = "bbbbbbbb-0000-0000-0000-000000000002"


def network(*ports: model.Port) -> model.Network:
    return model.Network(id=NET, name="n", bridge="brq11111111-22", mtu=1500, ports=list(ports))


def port(pid: str, mac: str, *ips: str, secure: bool = True,
         owner: str = model.COMPUTE_OWNER) -> model.Port:
    return model.Port(id=pid, name="", network_id=NET, mac_address=mac, device_owner=owner,
                      fixed_ips=[model.FixedIP("s", ip) for ip in ips],
                      port_security_enabled=secure)


CHAIN_A = """\
	chain port-aaaaaaaa-0000-0000-0000-000000000001 {
		ether saddr != fa:16:3e:00:00:0b drop
		arp saddr ether != fa:16:3e:00:00:0b drop
		arp saddr ip 10.0.0.5 accept
		arp saddr ip 0.0.0.0 accept
		ether type arp drop
		udp sport 67 drop
		udp sport 547 drop
		ip saddr 0.0.0.0 ip daddr 255.255.255.255 udp sport 68 udp dport 67 accept
		ip saddr 10.0.0.5 accept
		ether type ip drop
		icmpv6 type nd-router-advert drop
		icmpv6 type nd-redirect drop
		icmpv6 type nd-neighbor-advert @th,64,128 != 0xfe80000000000000f8163efffe00000b @th,64,128 != 0x20010db8000000000000000000000005 drop
		ip6 saddr :: icmpv6 type nd-router-solicit accept
		ip6 saddr :: icmpv6 type nd-neighbor-solicit accept
		ip6 saddr :: icmpv6 type mld2-listener-report accept
		ip6 saddr fe80::f816:3eff:fe00:b accept
		ip6 saddr 2001:db8::5 accept
		drop
	}
"""


def test_link_local_is_the_modified_eui64_of_the_mac():
    assert portsec.link_local("FA:16:3E:00:00:0B") == ipaddress.ip_address("fe80::f816:3eff:fe00:b")
    assert portsec.link_local("00:00:5e:00:53:01") == ipaddress.ip_address("fe80::200:5eff:fe00:5301")


def test_one_port_v4_and_v6_exact_text():
    a = port(A, "fa:16:3e:00:00:0b", "10.0.0.5", "2001:db8::5")
    assert portsec.render(network(a), [a]) == f"""\
table bridge mdtool-{NET} {{
	comment "mdtool port security, network {NET}"
	chain prerouting {{
		type filter hook prerouting priority filter; policy accept;
		iifname "tapaaaaaaaa-00" jump port-{A}
	}}

{CHAIN_A}}}
"""


def test_several_ips_a_port_without_port_security_and_the_dhcp_port():
    a = port(A, "fa:16:3e:00:00:0b", "10.0.0.5", "2001:db8::5")
    b = port(B, "fa:16:3e:00:00:0c", "10.0.0.6", "10.0.1.6")
    off = port("cccccccc-0000-0000-0000-000000000003", "fa:16:3e:00:00:0d", "10.0.0.7", secure=False)
    dhcp = port("dddddddd-0000-0000-0000-000000000004", "fa:16:3e:00:00:01", "10.0.0.1",
                owner=model.DHCP_OWNER)
    net = network(a, b, off, dhcp)
    plugged = {A, B, off.id, dhcp.id}
    assert portsec.secured(net, plugged) == [a, b]
    text = portsec.render(net, portsec.secured(net, plugged))
    assert text.count("\tchain port-") == 2 and "tapcccccccc" not in text and "tapdddddddd" not in text
    assert CHAIN_A in text
    chain_b = text.split(f"\tchain port-{B} {{\n")[1]
    assert chain_b.startswith(
        "\t\tether saddr != fa:16:3e:00:00:0c drop\n"
        "\t\tarp saddr ether != fa:16:3e:00:00:0c drop\n"
        "\t\tarp saddr ip 10.0.0.6 accept\n"
        "\t\tarp saddr ip 10.0.1.6 accept\n"
        "\t\tarp saddr ip 0.0.0.0 accept\n")
    assert "\t\tip saddr 10.0.0.6 accept\n\t\tip saddr 10.0.1.6 accept\n\t\tether type ip drop\n" in chain_b
    # no IPv6 fixed IP: the link-local only
    assert ("\t\ticmpv6 type nd-neighbor-advert @th,64,128 != 0xfe80000000000000f8163efffe00000c drop\n"
            in chain_b)
    assert "\t\tip6 saddr fe80::f816:3eff:fe00:c accept\n\t\tdrop\n\t}\n}\n" in chain_b


def test_replace_script_swaps_the_table_in_one_transaction():
    a = port(A, "fa:16:3e:00:00:0b", "10.0.0.5")
    script = portsec.render(network(a), [a], replace=True)
    assert script.startswith(f"table bridge mdtool-{NET}\ndelete table bridge mdtool-{NET}\n"
                             f"table bridge mdtool-{NET} {{\n")
    assert script.endswith(portsec.render(network(a), [a]))


def test_plan_compares_with_the_live_table():
    a = port(A, "fa:16:3e:00:00:0b", "10.0.0.5")
    net = network(a)
    wanted = portsec.render(net, [a])
    assert portsec.plan(net, set(), None) == []
    assert portsec.plan(net, {A}, wanted) == []                     # already as asked
    [create] = portsec.plan(net, {A}, None)
    assert create.op == "nft.replace_table" and create.text.startswith("create nft table")
    assert create.args == {"table": f"mdtool-{NET}", "ruleset": portsec.render(net, [a], replace=True)}
    [replace] = portsec.plan(net, {A}, wanted.replace("10.0.0.5", "10.0.0.9"))
    assert replace.text.startswith("replace nft table")
    [delete] = portsec.plan(net, set(), wanted)                     # last port unplugged
    assert (delete.op, delete.args) == ("nft.delete_table", {"table": f"mdtool-{NET}"})
    a.port_security_enabled = False                                 # switched off: no table
    assert [x.op for x in portsec.plan(net, {A}, wanted)] == ["nft.delete_table"]


def test_tap_of_a_deleted_port_may_send_nothing():
    a = port(A, "fa:16:3e:00:00:0b", "10.0.0.5")
    net = network(a)
    text = portsec.render(net, [a], orphans=("tapzzzzzzzz-99",))
    assert (f'\t\tiifname "tapaaaaaaaa-00" jump port-{A}\n'
            '\t\tiifname "tapzzzzzzzz-99" drop\n\t}\n') in text
    [only_orphan] = portsec.plan(net, set(), None, ("tapzzzzzzzz-99",))
    assert only_orphan.op == "nft.replace_table" and "deleted port: drop all" in only_orphan.text
    assert "\tchain port-" not in only_orphan.args["ruleset"]


def test_inspect_judges_the_live_table_against_the_registry():
    from mdtool.inspect.checks import check_port_security

    class O:  # the one field the check reads
        port_security = None

    a = port(A, "fa:16:3e:00:00:0b", "10.0.0.5")
    wanted = portsec.render(network(a), [a])
    o = O()
    o.port_security = portsec.State(f"mdtool-{NET}", plugged=["tapaaaaaaaa-00"], expected=wanted,
                                    live=wanted)
    c = check_port_security(o)
    assert (c.status, c.detail) == ("ok", f"1 plugged port(s) protected; table bridge mdtool-{NET}, "
                                          "as the registry says")
    o.port_security.live = None                                  # nft flush ruleset
    c = check_port_security(o)
    assert c.status == "fail" and c.detail.endswith("is missing") and "port-update" in c.fix
    o.port_security.live = wanted.replace("ip saddr 10.0.0.5 accept", "ip saddr 10.0.0.9 accept")
    c = check_port_security(o)
    assert c.status == "fail" and c.detail.endswith(
        "differs from the registry: -ip saddr 10.0.0.5 accept +ip saddr 10.0.0.9 accept")
    o.port_security = portsec.State(f"mdtool-{NET}", plugged=["tapaaaaaaaa-00"],
                                    unsecured=["tapaaaaaaaa-00"])
    c = check_port_security(o)
    assert c.status == "ok" and "port security off: tapaaaaaaaa-00" in c.detail
    o.port_security.error = "nft not found; is it installed?"
    assert check_port_security(o).status == "warn"
