"""Plug records and deletes through the CLI (no kernel changes needed)."""


def test_port_plug_with_a_bad_interface_name_writes_no_record(run, state_dir):
    run("net-create", "n1")
    run("subnet-create", "n1", "10.9.0.0/24", "--no-gateway")
    port = run("port-create", "n1", "-f", "value", "-c", "id").stdout.strip()
    r = run("port-plug", port, "mdtool-test-ns", "--ifname", "much-too-long-ifname")
    assert r.exit_code == 2 and "bad interface name" in r.stderr
    assert not (state_dir / "plugs").exists() or not list((state_dir / "plugs").iterdir())
