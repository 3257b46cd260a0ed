"""inspect through the CLI: bad input is one line and exit 2; nothing served is exit 0."""


def test_unknown_network_is_exit_2_one_line(run):
    r = run("inspect", "no-such-net")
    assert r.exit_code == 2
    assert r.stdout == ""
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("mdtool: error: ")
    assert "no-such-net" in r.stderr


def test_unknown_network_json_is_exit_2(run):
    r = run("inspect", "no-such-net", "-f", "json")
    assert r.exit_code == 2 and r.stdout == ""


def test_no_network_served_is_exit_0(run):
    r = run("inspect")
    assert r.exit_code == 0 and r.stdout == ""
    assert "no network is served by this node" in r.stderr


def test_port_without_network_is_bad_usage(run):
    r = run("inspect", "--port", "p1")
    assert r.exit_code == 2 and r.stderr.startswith("mdtool: error: --port needs a NETWORK")
