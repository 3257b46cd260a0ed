"""What shell scripts rely on (issue 16.1): every -f format, valid shell names, structured
JSON, --max-width, --long, -f yaml and csv."""

from __future__ import annotations

import csv
import io
import json
import subprocess

import yaml


def _net(run, name="net1", cidr="10.31.0.0/24"):
    net_id = run("net-create", name, "-f", "value", "-c", "id").stdout.strip()
    sub_id = run("subnet-create", name, cidr, "--no-gateway", "-f", "value", "-c", "id").stdout.strip()
    return net_id, sub_id


def test_shell_format_evaluates_in_bash_with_valid_names_and_prefix(run):
    _net(run)
    run("port-create", "net1", "--name", "p1")
    sh = run("port-show", "p1", "-f", "shell").stdout
    assert "binding_host_id=" in sh and "binding:host_id" not in sh
    # Every line must be a valid assignment: bash runs it under `set -e` and echoes one var.
    out = subprocess.run(["bash", "-ec", sh + '\necho "$mac_address"'], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().startswith("fa:16:3e:")
    pre = run("port-show", "p1", "-f", "shell", "--prefix", "PORT_", "-c", "binding:host_id").stdout
    assert pre.startswith("PORT_binding_host_id=")
    listed = run("port-list", "-f", "shell", "--prefix", "p_").stdout
    out = subprocess.run(["bash", "-ec", listed + '\necho "$p_id_0"'], capture_output=True, text=True)
    assert out.returncode == 0 and len(out.stdout.strip()) == 36


def test_net_list_json_carries_structured_subnets(run):
    net_id, sub_id = _net(run)
    rows = json.loads(run("net-list", "-f", "json").stdout)
    assert rows == [{"id": net_id, "name": "net1", "subnets": [sub_id]}]
    # The table still shows the CIDR beside each subnet id, for people.
    assert f"{sub_id} 10.31.0.0/24" in run("net-list").stdout


def test_yaml_and_csv(run):
    net_id, sub_id = _net(run)
    one = yaml.safe_load(run("net-show", "net1", "-f", "yaml").stdout)
    assert one["id"] == net_id and one["subnets"] == [sub_id]
    many = yaml.safe_load(run("subnet-list", "-f", "yaml").stdout)
    assert many[0]["id"] == sub_id
    rows = list(csv.reader(io.StringIO(run("net-list", "-f", "csv").stdout)))
    assert rows[0] == ["id", "name", "subnets"]
    assert rows[1][:2] == [net_id, "net1"] and json.loads(rows[1][2]) == [sub_id]
    field_value = list(csv.reader(io.StringIO(run("subnet-show", sub_id, "-f", "csv").stdout)))
    assert field_value[0] == ["Field", "Value"] and ["cidr", "10.31.0.0/24"] in field_value


def test_long_lists_every_column(run):
    _net(run)
    short = run("net-list").stdout.splitlines()[1]
    long = run("net-list", "--long").stdout.splitlines()[1]
    assert "mtu" not in short and "mtu" in long and "bridge" in long


def test_max_width_wraps_the_widest_column(run):
    _, sub_id = _net(run)
    wide = run("subnet-show", sub_id).stdout
    assert max(len(x) for x in wide.splitlines()) > 60
    narrow = run("subnet-show", sub_id, "--max-width", "60").stdout
    assert max(len(x) for x in narrow.splitlines()) <= 60
    assert narrow.count("+------") == wide.count("+------")  # same table, wrapped cells
