"""#16.3: `config check` refuses TLS combinations the agent could not use (exit 2)."""

from tests.unit.test_agent_tls import pki  # noqa: F401 (the fixture: a CA made for the test)


def test_config_check_refuses_what_cannot_work(run, tmp_path, pki):
    ini = tmp_path / "m.ini"
    ini.write_text("[DEFAULT]\nnova_metadata_host = nova\nnova_metadata_protocol = https\n"
                   f"nova_client_priv_key = {pki}/agent.key\n")
    r = run("config", "check", str(ini))
    assert r.exit_code == 2
    assert r.stderr == (f"mdtool: error: nova_client_priv_key ({ini}:4) is set without "
                        "nova_client_cert: give both\n")
    ini.write_text("[DEFAULT]\nnova_metadata_host = nova\nnova_metadata_protocol = https\n"
                   f"auth_ca_cert = {pki}/nova-ca.pem\nnova_client_cert = {pki}/agent.pem\n"
                   f"nova_client_priv_key = {pki}/agent.key\n")
    r = run("config", "check", str(ini))
    assert (r.exit_code, r.stderr) == (0, f"{ini}: ok\n"), r.stderr
