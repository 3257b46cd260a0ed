"""enable-isolated-metadata with several networks or --all (dry runs: nothing is touched)."""


def setup_nets(run):
    run("net-create", "net1")
    run("subnet-create", "net1", "172.17.17.0/24", "--no-gateway")
    run("net-create", "net2")
    run("subnet-create", "net2", "172.17.18.0/24", "--no-gateway")
    run("net-create", "nodhcp")
    run("subnet-create", "nodhcp", "172.17.19.0/24", "--disable-dhcp")


def test_all_dry_run(run):
    setup_nets(run)
    r = run("enable-isolated-metadata", "--all", "--dry-run")
    assert r.exit_code == 0, r.stderr
    lines = r.stderr.splitlines()
    assert lines[:2] == ["✓ net1: 8 change(s) planned", "✓ net2: 8 change(s) planned"]
    assert lines[-1] == ("enable-isolated-metadata: 2 of 2 network(s) ok, 16 change(s) planned, "
                         "nothing changed")
    assert r.stdout == ""


def test_one_failure_does_not_stop_the_others(run):
    setup_nets(run)
    r = run("enable-isolated-metadata", "nodhcp", "net2", "--dry-run")
    assert r.exit_code == 1
    lines = r.stderr.splitlines()
    assert lines[0].startswith("✗ nodhcp: step 'registry' failed: ")
    assert lines[1] == "✓ net2: 8 change(s) planned"
    assert lines[-1] == "mdtool: error: enable-isolated-metadata failed on 1 network(s): nodhcp"


def test_usage(run):
    r = run("enable-isolated-metadata")
    assert r.exit_code == 2 and "missing NETWORK (or --all)" in r.stderr
    setup_nets(run)
    r = run("enable-isolated-metadata", "net1", "--all")
    assert r.exit_code == 2 and "not both" in r.stderr


def test_single_network_keeps_step_output(run):
    setup_nets(run)
    r = run("enable-isolated-metadata", "net1", "--dry-run")
    assert r.exit_code == 0
    assert r.stderr.splitlines()[0] == "1. registry: ok, nothing to do"
    assert r.stderr.splitlines()[-1] == "dry run: 8 change(s) planned, nothing changed"
    # every step plans what a real run does: reserve, namespace, dnsmasq, the three
    # daemons, the proxy listening in the namespace, the registry's record
    assert "would wait for mdtool proxy to listen on 169.254.169.254:80 in qdhcp-" in r.stderr
