"""Resource commands through the CLI: formats, the story's table, refusals that change nothing."""

import json
import re

import pytest

pytestmark = pytest.mark.usefixtures("cli_db")  # every test on SQLite and on PostgreSQL

STORY_ROWS = [
    ("allocation_pools", '{"start": "172.17.17.1", "end": "172.17.17.254"}'),
    ("cidr", "172.17.17.0/24"),
    ("dns_nameservers", ""),
    ("enable_dhcp", "True"),
    ("gateway_ip", ""),
    ("host_routes", ""),
    ("ip_version", "4"),
    ("name", "sub1"),
]


def table_rows(text):
    rows = {}
    for line in text.splitlines():
        m = re.match(r"^\| (\S+)\s+\| (.*?)\s*\|$", line)
        if m and m.group(1) != "Field":
            rows[m.group(1)] = m.group(2)
    return rows


def test_story_subnet_create_prints_the_neutron_table(run):
    net_id = run("net-create", "net1", "-f", "value", "-c", "id").stdout.strip()
    r = run("subnet-create", "net1", "172.17.17.0/24", "--no-gateway", "--name=sub1")
    assert r.exit_code == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "Created a new subnet:"
    assert lines[1] == lines[3] == lines[-1]
    assert re.fullmatch(r"\+-+\+-+\+", lines[1])
    assert lines[2].startswith("| Field ") and "| Value " in lines[2]
    rows = table_rows(r.stdout)
    for field, value in STORY_ROWS:
        assert rows[field] == value
    assert rows["network_id"] == net_id
    assert re.fullmatch(r"[0-9a-f-]{36}", rows["id"])
    assert rows["tenant_id"] == rows["project_id"] == "admin"
    # Fields appear sorted, as the neutron client prints them.
    fields = [line.split("|")[1].strip() for line in lines[4:-1]]
    assert fields == sorted(fields)


def test_value_format_prints_only_the_id(run):
    r = run("net-create", "n", "-f", "value", "-c", "id")
    assert r.exit_code == 0
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\n", r.stdout)
    assert r.stderr == ""


def test_gateway_is_skipped_by_the_pool(run):
    run("net-create", "n")
    r = run("subnet-create", "n", "10.0.0.0/24", "-f", "json")
    data = json.loads(r.stdout)
    assert data["gateway_ip"] == "10.0.0.1"
    assert data["allocation_pools"] == [{"start": "10.0.0.2", "end": "10.0.0.254"}]
    r = run("subnet-create", "n", "10.0.1.0/24", "--gateway", "10.0.1.100", "-f", "json")
    assert json.loads(r.stdout)["allocation_pools"] == [
        {"start": "10.0.1.1", "end": "10.0.1.99"}, {"start": "10.0.1.101", "end": "10.0.1.254"}]


def test_json_shell_and_list_formats(run):
    run("net-create", "n")
    run("subnet-create", "n", "10.0.0.0/29", "--no-gateway")
    p = json.loads(run("port-create", "n", "--name", "p1", "-f", "json").stdout)
    assert p["fixed_ips"][0]["ip_address"] == "10.0.0.1"
    assert p["mac_address"].startswith("fa:16:3e:")
    listing = json.loads(run("port-list", "-f", "json").stdout)
    assert isinstance(listing, list) and listing[0]["id"] == p["id"]
    sh = run("port-show", "p1", "-f", "shell", "-c", "name", "-c", "id").stdout
    assert sh == f"name=p1\nid={p['id']}\n"
    assert run("net-list", "-f", "value", "-c", "name").stdout == "n\n"


def test_port_allocation_next_free_and_requested(run):
    run("net-create", "n")
    run("subnet-create", "n", "10.0.0.0/29", "--no-gateway", "--name", "s")
    ips = [run("port-create", "n", "-f", "value", "-c", "fixed_ips").stdout for _ in range(3)]
    assert [json.loads(x.strip())["ip_address"] for x in ips] == ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
    r = run("port-create", "n", "--fixed-ip", "ip_address=10.0.0.6", "-f", "json")
    assert json.loads(r.stdout)["fixed_ips"][0]["ip_address"] == "10.0.0.6"
    r = run("port-create", "n", "--fixed-ip", "subnet=s", "-f", "json")
    assert json.loads(r.stdout)["fixed_ips"][0]["ip_address"] == "10.0.0.4"
    run("port-create", "n")  # .5
    r = run("port-create", "n")
    assert r.exit_code == 2 and "no free IP address" in r.stderr


def test_instance_with_keys_user_data_and_meta(run, tmp_path):
    ud = tmp_path / "ud"
    ud.write_bytes(b"#cloud-config\nhostname: x\n")
    key = tmp_path / "k.pub"
    key.write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIF test@host\n")
    r = run("instance-create", "vm 1", "--user-data", ud, "--key-name", "k", "--public-key", key,
            "--meta", "role=web", "-f", "json")
    assert r.exit_code == 0, r.stderr
    i = json.loads(r.stdout)
    assert i["hostname"] == "vm-1"
    assert i["public_keys"] == {"k": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIF test@host"}
    assert i["meta"] == {"role": "web"} and i["user_data"] == "present"
    run("net-create", "n")
    run("subnet-create", "n", "10.9.0.0/24", "--no-gateway")
    p = json.loads(run("port-create", "n", "--device-id", "vm 1", "-f", "json").stdout)
    assert p["device_id"] == i["id"] and p["device_owner"] == "compute:nova"
    r = run("instance-delete", "vm 1")
    assert r.exit_code == 0 and p["id"] in r.stderr  # progress on stderr: stdout stays for data
    assert json.loads(run("port-list", "-f", "json").stdout) == []


def _setup(run, tmp_path):
    run("net-create", "n")
    run("net-create", "dup")
    run("net-create", "dup")
    run("subnet-create", "n", "10.0.0.0/24", "--name", "s")
    run("port-create", "n", "--mac-address", "fa:16:3e:00:00:01", "--fixed-ip", "ip_address=10.0.0.50")
    big = tmp_path / "big"
    big.write_bytes(b"x" * (64 * 1024 + 1))
    return big


BAD = [
    (["subnet-create", "n", "10.1.2.5/24"], "host bits set"),
    (["subnet-create", "n", "10.1.2.0/33"], "invalid CIDR"),
    (["subnet-create", "n", "banana"], "invalid CIDR"),
    (["subnet-create", "n", "10.0.0.0/25"], "overlaps"),
    (["subnet-create", "n", "10.5.0.0/24", "--allocation-pool", "start=10.6.0.1,end=10.6.0.9"], "outside"),
    (["subnet-create", "n", "10.5.0.0/24", "--allocation-pool", "start=10.5.0.1,end=10.5.0.9",
      "--allocation-pool", "start=10.5.0.5,end=10.5.0.20"], "overlap"),
    (["subnet-create", "n", "10.5.0.0/24", "--gateway", "10.5.0.5",
      "--allocation-pool", "start=10.5.0.1,end=10.5.0.9"], "inside an allocation pool"),
    (["subnet-create", "n", "10.5.0.0/24", "--gateway", "10.5.0.300"], "invalid gateway"),
    (["subnet-create", "n", "10.5.0.0/24", "--allocation-pool", "start=10.5.0.1"], "--allocation-pool"),
    (["subnet-create", "nope", "10.5.0.0/24"], "no net named"),
    (["subnet-create", "dup", "10.5.0.0/24"], "2 nets match"),
    (["port-create", "n", "--fixed-ip", "ip_address=10.0.1.5"], "in no subnet"),
    (["port-create", "n", "--fixed-ip", "subnet=s,ip_address=10.0.1.5"], "outside"),
    (["port-create", "n", "--fixed-ip", "ip_address=10.0.0.0"], "network address"),
    (["port-create", "n", "--fixed-ip", "ip_address=10.0.0.255"], "broadcast address"),
    (["port-create", "n", "--fixed-ip", "ip_address=10.0.0.50"], "already in use"),
    (["port-create", "n", "--fixed-ip", "ip_address=10.0.0.1"], "gateway"),
    (["port-create", "n", "--fixed-ip", "ip_address=10.0.0.999"], "invalid IP"),
    (["port-create", "n", "--mac-address", "fa:16:3e:00:00:01"], "already used"),
    (["port-create", "n", "--mac-address", "fa:16:3e:00:00"], "invalid MAC"),
    (["port-create", "n", "--mac-address", "zz:16:3e:00:00:01"], "invalid MAC"),
    (["port-create", "n", "--device-id", "ghost"], "no instance named"),
    (["net-delete", "n"], "still has 1 port"),
    (["net-create", "x", "--mtu", "10"], "10"),
    (["net-create", "x" * 300], "invalid network name"),
    (["instance-create", "vm", "--user-data", "BIG"], "64"),
    (["instance-create", "vm", "--user-data", "/nonexistent"], "cannot read"),
    (["instance-create", "vm", "--meta", "novalue"], "KEY=VALUE"),
    (["instance-create", "vm", "--key-name", "k"], "go together"),
    (["net-list", "-c", "bogus"], "unknown column"),
    (["instance-create", "vm", "--id", "not-a-uuid"], "expected a UUID"),
]


@pytest.mark.parametrize("args,message", BAD, ids=[" ".join(a)[:60] for a, _ in BAD])
def test_bad_input_is_refused_and_changes_nothing(run, tmp_path, db_snapshot, args, message):
    big = _setup(run, tmp_path)
    before = db_snapshot()
    r = run(*[str(big) if a == "BIG" else a for a in args])
    assert r.exit_code == 2, (r.stdout, r.stderr)
    assert message in r.stderr
    assert r.stderr.startswith("mdtool: error: ") and r.stderr.count("\n") == 1
    assert "Traceback" not in r.stderr and r.stdout == ""
    assert db_snapshot() == before


def test_usage_errors_are_one_line_exit_2(run):
    r = run("subnet-create", "n")
    assert r.exit_code == 2 and r.stderr.count("\n") == 1 and "Missing argument" in r.stderr


def test_help_is_fast_and_teaches(run):
    r = run("--help")
    assert r.exit_code == 0 and "subnet-create" in r.stdout and "enable" in r.stdout.lower()
    r = run("subnet-create", "--help")
    assert "--no-gateway" in r.stdout and "172.17.17.0/24" in r.stdout


def test_instance_keeps_a_given_nova_uuid(run):
    nova_id = "6f1c8f9e-3a0b-4c52-9d1e-0b2f5a7c9e11"
    r = run("instance-create", "vm", "--id", nova_id, "-f", "value", "-c", "id")
    assert r.exit_code == 0 and r.stdout.strip() == nova_id
    r = run("instance-create", "vm2", "--id", nova_id.upper())
    assert r.exit_code == 2 and "already exists" in r.stderr


def test_net_show_names_the_nodes_serving_it(run, cli_db):
    from mdtool.registry import open_registry
    run("net-create", "n")
    assert json.loads(run("net-show", "n", "-f", "json").stdout)["hosts"] == []
    reg = open_registry(cli_db)
    reg.serve_network("n", "node-b")
    reg.serve_network("n", "node-a")
    r = run("net-show", "n", "-f", "json")
    assert r.exit_code == 0 and json.loads(r.stdout)["hosts"] == ["node-a", "node-b"]
    table = run("net-show", "n").stdout
    assert "| hosts " in table and "node-a" in table and "node-b" in table


def test_instance_flavor_create_show_update(run):
    r = run("instance-create", "vm1", "-f", "value", "-c", "flavor")
    assert (r.exit_code, r.stdout) == (0, "m1.small\n")
    r = run("instance-create", "vm2", "--flavor", "m1.large", "-f", "value", "-c", "flavor")
    assert (r.exit_code, r.stdout) == (0, "m1.large\n")
    r = run("instance-update", "vm1", "--flavor", "m1.tiny", "-f", "value", "-c", "flavor")
    assert (r.exit_code, r.stdout) == (0, "m1.tiny\n")
    assert run("instance-show", "vm1", "-f", "value", "-c", "flavor").stdout == "m1.tiny\n"
    r = run("instance-create", "vm3", "--flavor", "bad\nname")
    assert r.exit_code == 2 and "flavor name" in r.stderr
    assert "vm3" not in run("instance-list", "-f", "value", "-c", "name").stdout
