"""mdtool config show / check / sample through the CLI."""

import json


def test_show_sources_and_masked_secret(run, tmp_path, monkeypatch):
    ini = tmp_path / "mdtool.ini"
    ini.write_text("[DEFAULT]\nmetadata_proxy_shared_secret = s3cret\nnova_metadata_port = 9000\n")
    monkeypatch.setenv("MDTOOL_DNS_DOMAIN", "example.org")
    r = run("--config-file", ini, "--host", "node7", "config", "show", "-f", "json")
    assert r.exit_code == 0, r.output
    assert "s3cret" not in r.output
    rows = {(x["section"], x["name"]): x for x in json.loads(r.output)}
    assert rows[("DEFAULT", "metadata_proxy_shared_secret")] == {
        "section": "DEFAULT", "name": "metadata_proxy_shared_secret", "value": "********",
        "source": f"{ini}:2"}
    assert rows[("DEFAULT", "nova_metadata_port")]["source"] == f"{ini}:3"
    # No nova_metadata_host: this node's metadata service on its Unix socket.
    assert rows[("DEFAULT", "nova_metadata_url")]["value"].endswith("/metadata")
    assert rows[("DEFAULT", "nova_metadata_url")]["value"].startswith("unix:/")
    assert rows[("DEFAULT", "dns_domain")] == {"section": "DEFAULT", "name": "dns_domain",
                                               "value": "example.org", "source": "env MDTOOL_DNS_DOMAIN"}
    assert rows[("DEFAULT", "host")]["source"] == "--host"
    assert rows[("global", "config_file")]["source"] == "--config-file"
    assert rows[("global", "state_dir")]["source"] == "env MDTOOL_STATE_DIR"
    assert rows[("metadata_haproxy", "timeout_server")]["value"] == 32.0


def test_show_one_option_value(run):
    r = run("config", "show", "metadata_haproxy.timeout_server", "-f", "value", "-c", "value")
    assert (r.exit_code, r.output) == (0, "32.0\n")
    r = run("config", "show", "no_such_option")
    assert r.exit_code == 2
    assert r.stderr == "mdtool: error: unknown option 'no_such_option' (see: mdtool config show)\n"


def test_show_shell_leaves_secret_out(run, monkeypatch):
    monkeypatch.setenv("MDTOOL_METADATA_PROXY_SHARED_SECRET", "topsecret")
    r = run("config", "show", "-f", "shell")
    assert r.exit_code == 0
    assert "SHARED_SECRET" not in r.output and "topsecret" not in r.output
    assert "MDTOOL_METADATA_HAPROXY__TIMEOUT_SERVER=32.0\n" in r.output
    assert "MDTOOL_NOVA_METADATA_PORT=8775\n" in r.output


def test_show_table(run):
    r = run("config", "show")
    assert r.exit_code == 0
    lines = r.output.splitlines()
    assert lines[1].split() == ["|", "section", "|", "name", "|", "value", "|", "source", "|"]


def test_unknown_option_in_file_exits_2_naming_line(run, tmp_path):
    ini = tmp_path / "bad.ini"
    ini.write_text("[DEFAULT]\n\nnova_metadata_prot = 80\n")
    r = run("--config-file", ini, "config", "show")
    assert r.exit_code == 2
    assert r.stderr == (f"mdtool: error: {ini}:3: unknown option 'nova_metadata_prot' in [DEFAULT] "
                        "(did you mean 'nova_metadata_port'?)\n")
    assert r.stdout == ""


def test_bad_value_exits_2(run, tmp_path):
    ini = tmp_path / "bad.ini"
    ini.write_text("[metadata_haproxy]\ntimeout_server = -1\n")
    r = run("--config-file", ini, "config", "show")
    assert r.exit_code == 2
    assert r.stderr == f"mdtool: error: {ini}:2: bad value for timeout_server: expected a positive number\n"


def test_check(run, tmp_path):
    good = tmp_path / "good.ini"
    good.write_text("[DEFAULT]\ndebug = true\n")
    r = run("config", "check", good)
    assert (r.exit_code, r.stderr) == (0, f"{good}: ok\n")
    bad = tmp_path / "bad.ini"
    bad.write_text("[DEFAULT]\ndebug = perhaps\nfoo = 1\n")
    r = run("config", "check", bad)
    assert r.exit_code == 2
    assert r.stderr.splitlines() == [
        f"mdtool: error: {bad}:2: bad value for debug: expected true or false",
        f"mdtool: error: {bad}:3: unknown option 'foo' in [DEFAULT]",
    ]
    r = run("config", "check")
    assert r.exit_code == 2 and "no config file to check" in r.stderr


def test_sample(run):
    r = run("config", "sample")
    assert r.exit_code == 0
    assert "[metadata_haproxy]\n" in r.output and "#timeout_server = 32.0\n" in r.output


def test_check_refuses_values_that_would_reach_dnsmasq(run, tmp_path):
    """issue 13.2: these passed `config check` and then broke or subverted dnsmasq."""
    ini = tmp_path / "mdtool.ini"
    ini.write_text("[DEFAULT]\ndns_domain = x,ignore,y\ndnsmasq_dns_servers = notanip\n")
    r = run("config", "check", ini)
    assert r.exit_code == 2
    lines = r.stderr.splitlines()
    assert [l.split(": bad value for ")[0] for l in lines] == [
        f"mdtool: error: {ini}:2", f"mdtool: error: {ini}:3"]
    assert "dns_domain" in lines[0] and "dnsmasq_dns_servers" in lines[1]


def test_check_also_checks_the_environment(run, tmp_path, monkeypatch):
    ini = tmp_path / "mdtool.ini"
    ini.write_text("[DEFAULT]\n")
    monkeypatch.setenv("MDTOOL_DNS_DOMAIN", "openstacklocal\n--dhcp-script=/tmp/x")
    r = run("config", "check", ini)
    assert r.exit_code == 2
    assert r.stderr.startswith("mdtool: error: environment MDTOOL_DNS_DOMAIN: bad value for dns_domain: ")
    assert len(r.stderr.splitlines()) == 1


def test_every_command_refuses_a_bad_environment_value(run, monkeypatch):
    monkeypatch.setenv("MDTOOL_DNS_DOMAIN", "openstacklocal\n--dhcp-script=/tmp/x")
    for argv in (["net-list"], ["config", "show"], ["dnsmasq", "render", "net1"]):
        r = run(*argv)
        assert r.exit_code == 2, argv
        assert r.stderr.startswith(
            "mdtool: error: environment MDTOOL_DNS_DOMAIN: bad value for dns_domain: "), r.stderr
        assert len(r.stderr.splitlines()) == 1 and r.stdout == ""


def test_instance_hostname_follows_rfc_1123(run, db_snapshot):
    """issue 13.2: hostnames as Neutron validates them; a refused one changes nothing."""
    for bad in ("vm.123", "vm_1", "-vm", "a" * 64, "vm\n--x", "vm,x"):
        r = run("instance-create", "vm1", "--hostname", bad)
        assert r.exit_code == 2, (bad, r.output)
        assert r.stderr.startswith("mdtool: error: invalid hostname ") and len(r.stderr.splitlines()) == 1
    snap = db_snapshot()
    assert not any(rows for table, rows in snap.items() if table == "instances")
    r = run("instance-create", "vm1", "--hostname", "VM-1.Example.org.", "-f", "value", "-c", "hostname")
    assert (r.exit_code, r.stdout) == (0, "vm-1.example.org\n")
    r = run("instance-update", "vm1", "--hostname", "x.42")
    assert r.exit_code == 2 and "must not be all digits" in r.stderr


def test_show_masks_a_generated_secret_and_takes_several_options(run, state_dir):
    """issue 16.6: a secret generated into the state dir is set: show the mask, not a blank."""
    from mdtool.config import mask
    state_dir.mkdir(parents=True)
    (state_dir / "metadata_proxy_shared_secret").write_text("abc123\n")
    r = run("config", "show", "metadata_proxy_shared_secret", "dns_domain",
            "metadata_haproxy.timeout_server", "-f", "value", "-c", "name", "-c", "value")
    assert r.exit_code == 0, r.output
    assert r.stdout.splitlines() == [f"metadata_proxy_shared_secret {mask('abc123')}",
                                     "dns_domain openstacklocal", "timeout_server 32.0"]
    assert mask("abc123") == "********" and "abc123" not in r.stdout
    r = run("config", "show", "metadata_proxy_shared_secret", "-f", "json")
    assert json.loads(r.stdout)[0]["source"] == f"generated {state_dir}/metadata_proxy_shared_secret"
    r = run("config", "show", "dns_domain", "nope")
    assert r.exit_code == 2 and r.stdout == ""
    assert r.stderr == "mdtool: error: unknown option 'nope' (see: mdtool config show)\n"


def test_host_option_is_typed_too(run):
    r = run("--host", "node\n--x", "config", "show", "host")
    assert r.exit_code == 2 and r.stdout == ""
    assert r.stderr.startswith("mdtool: error: --host: bad value for host: ")
    r = run("--host", "Node_7", "config", "show", "host", "-f", "value", "-c", "value")
    assert (r.exit_code, r.stdout) == (0, "Node_7\n")  # as oslo's HostDomainOpt: case kept
