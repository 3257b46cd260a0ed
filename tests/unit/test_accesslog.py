"""Parsing and scoping the daemons' access lines (mdtool logs)."""

from mdtool.accesslog import Scope, merged, parse

NET, VM = "5e0c3f4a-0000-4000-8000-000000000001", "9a1b2c3d-0000-4000-8000-000000000002"
PROXY = f"2026-12-02 10:00:00,100 INFO mdtool.proxy.access: network={NET} src=10.0.0.5 GET /latest/meta-data/ 200 1.2ms"
AGENT = (f"2026-12-02 10:00:00,101 INFO mdtool.agent.handler: network={NET} source=10.0.0.5 "
         f"instance={VM} GET /latest/meta-data/ status=200 ms=0.8")
META = f"2026-12-02 10:00:00,102 INFO mdtool.metadata.daemon: instance={VM} GET /latest/meta-data/ status=200 ms=0.3"


def test_parse_the_three_shapes_and_nothing_else():
    p, a, m = parse(PROXY), parse(AGENT), parse(META)
    assert (p.role, p.network, p.source, p.instance) == ("proxy", NET, "10.0.0.5", None)
    assert (a.role, a.network, a.source, a.instance) == ("agent", NET, "10.0.0.5", VM)
    assert (m.role, m.network, m.instance) == ("metadata", None, VM)
    assert parse("2026-12-02 10:00:00,000 INFO mdtool.agent.daemon: metadata agent listening on x") is None
    assert parse("garbage") is None


def test_scope_of_an_instance_keeps_its_proxy_lines_by_address(tmp_path):
    other = PROXY.replace("10.0.0.5", "10.0.0.6").replace(",100", ",099")
    f = tmp_path / "all.log"
    f.write_text("\n".join([META, AGENT, PROXY, other]) + "\n")
    scope = Scope(instance_ids=frozenset({VM}), addresses=frozenset({(NET, "10.0.0.5")}))
    got = merged([f, tmp_path / "missing.log"], scope)
    assert [a.role for a in got] == ["proxy", "agent", "metadata"]  # time order, not file order
    assert len(merged([f], Scope())) == 4


def test_the_proxy_summary_of_repeated_4xx_is_an_access_line_of_its_source():
    line = (f"2026-12-02 10:00:11,000 INFO mdtool.proxy.access: network={NET} src=10.0.0.5: "
            "17,430 more 429 in 10 s")
    a = parse(line)
    assert (a.role, a.network, a.source) == ("proxy", NET, "10.0.0.5")
    assert Scope(addresses=frozenset({(NET, "10.0.0.5")})).keeps(a)


def test_inspect_probes_are_marked():
    assert not parse(AGENT).probe
    tagged = parse(AGENT + " probe=mdtool-inspect")
    assert tagged.probe and tagged.instance == VM
    assert parse(META + " probe=mdtool-inspect").probe
    agent = parse(f"2026-12-02 10:00:11,000 INFO mdtool.agent.handler: network={NET} "
                  "source=10.0.0.5: 999 more 404 in 10 s")
    assert (agent.role, agent.network, agent.source) == ("agent", NET, "10.0.0.5")
