"""port-create / port-update --port-security / --no-port-security, shown by port-show."""

import json


def test_port_security_switch(run, cli_db):
    run("net-create", "n")
    run("subnet-create", "n", "10.0.0.0/24", "--no-gateway")
    r = run("port-create", "n", "--name", "a", "-f", "json")
    assert r.exit_code == 0 and json.loads(r.stdout)["port_security_enabled"] is True
    r = run("port-create", "n", "--name", "b", "--no-port-security", "-f", "value",
            "-c", "port_security_enabled")
    assert (r.exit_code, r.stdout) == (0, "False\n")
    r = run("port-update", "a", "--no-port-security", "-f", "value", "-c", "port_security_enabled")
    assert (r.exit_code, r.stdout) == (0, "False\n")
    r = run("port-update", "a", "--name", "a2", "-f", "value", "-c", "port_security_enabled")
    assert (r.exit_code, r.stdout) == (0, "False\n")  # not given: unchanged
    r = run("port-update", "a2", "--port-security", "-f", "value", "-c", "port_security_enabled")
    assert (r.exit_code, r.stdout) == (0, "True\n")
    r = run("port-show", "b")
    assert r.exit_code == 0 and "| port_security_enabled | False" in r.stdout


def test_a_mac_is_printed_as_it_is():
    """port-plug's report named the MAC fa:16:3e:cd:4f:52 as fa:16:3e💿4f:52 (rich emoji)."""
    import io

    from mdtool.cli.app import make_console
    out = io.StringIO()
    make_console(file=out, width=200).print("set eth0 MAC fa:16:3e:cd:4f:52, MTU 1500, up")
    assert out.getvalue() == "set eth0 MAC fa:16:3e:cd:4f:52, MTU 1500, up\n"
