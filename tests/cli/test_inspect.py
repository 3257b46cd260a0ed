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


def _orphan_plug_record(state_dir, port_id="0badc0de-0000-4000-8000-000000000000"):
    import json
    d = state_dir / "plugs"
    d.mkdir(parents=True)
    (d / f"{port_id}.json").write_text(json.dumps({
        "port_id": port_id, "network_id": "11111111-0000-4000-8000-000000000000",
        "namespace": "mdtool-test-no-such-ns", "ifname": "eth0", "bridge": "brqnosuchbr0"}))
    return d / f"{port_id}.json"


def test_orphans_are_listed_with_cleanup_as_the_fix(run, state_dir):
    run("net-list")  # creates the registry
    record = _orphan_plug_record(state_dir)
    r = run("inspect")
    assert r.exit_code == 1, r.output
    assert r.stdout.splitlines()[0] == ("0 networks: 0 ok, 0 failing; 1 orphan(s) the registry "
                                        "no longer knows (fix: mdtool cleanup)")
    assert "plugged port 0badc0de-0000-4000-8000-000000000000 is not in the registry" in r.stdout
    dry = run("cleanup", "--dry-run")
    assert dry.exit_code == 0 and "plan forget plug record" in dry.stderr
    assert record.exists()
    real = run("cleanup")
    assert real.exit_code == 0 and "✓ forget plug record" in real.stderr
    assert not record.exists()
    assert "nothing to clean up" in run("cleanup").stderr
    assert run("inspect").exit_code == 0
