"""Shell completion: scripts for bash/zsh/fish, names completed from the registry."""

import os
import subprocess
import sys

import pytest


def complete(state_dir, words: str, shell: str = "bash") -> str:
    # click's protocol: bash/zsh pass the index of the word being completed, fish the word.
    cword = words.split(" ")[-1] if shell == "fish" else str(len(words.split(" ")) - 1)
    env = dict(os.environ, MDTOOL_STATE_DIR=str(state_dir), _MDTOOL_COMPLETE=f"{shell}_complete",
               COMP_WORDS=words, COMP_CWORD=cword)
    env.pop("MDTOOL_DB", None)
    env.pop("MDTOOL_CONFIG", None)
    r = subprocess.run([sys.executable, "-m", "mdtool"], env=env, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    return r.stdout


@pytest.fixture
def registry(run):
    run("net-create", "net1")
    run("net-create", "netb")
    run("net-create", "other")
    run("subnet-create", "net1", "172.17.17.0/24", "--no-gateway", "--name", "sub1")
    run("instance-create", "vm1")
    run("port-create", "net1", "--device-id", "vm1", "--name", "p1")


def test_network_names(registry, state_dir):
    assert complete(state_dir, "mdtool net-show ne") == "plain,net1\nplain,netb\n"
    assert complete(state_dir, "mdtool enable-isolated-metadata o") == "plain,other\n"
    assert complete(state_dir, "mdtool dnsmasq start n") == "plain,net1\nplain,netb\n"
    assert complete(state_dir, "mdtool port-list --network ot") == "plain,other\n"


def test_other_resources(registry, state_dir):
    assert complete(state_dir, "mdtool subnet-show s") == "plain,sub1\n"
    assert complete(state_dir, "mdtool port-delete p") == "plain,p1\n"
    assert complete(state_dir, "mdtool instance-show v") == "plain,vm1\n"
    assert complete(state_dir, "mdtool port-create net1 --device-id v") == "plain,vm1\n"


def test_ids_complete_when_typed(registry, state_dir, run):
    net_id = run("net-show", "other", "-f", "value", "-c", "id").output.strip()
    assert complete(state_dir, f"mdtool net-show {net_id[:8]}") == f"plain,{net_id}\n"


def test_zsh_and_fish_carry_descriptions(registry, state_dir, run):
    vm_id = run("instance-show", "vm1", "-f", "value", "-c", "id").output.strip()
    assert complete(state_dir, "mdtool instance-show v", "zsh") == f"plain\nvm1\ninstance {vm_id}\n"
    out = complete(state_dir, "mdtool instance-show v", "fish")
    assert out == f"plain,vm1\tinstance {vm_id}\n"


def test_no_registry_completes_nothing_and_creates_nothing(tmp_path):
    state = tmp_path / "none"
    assert complete(state, "mdtool net-show ").strip() == ""
    assert not state.exists()


def test_broken_registry_completes_nothing(tmp_path):
    state = tmp_path / "broken"
    state.mkdir()
    (state / "mdtool.db").write_text("not a database")
    assert complete(state, "mdtool net-show n").strip() == ""


def test_commands_still_complete(state_dir):
    out = complete(state_dir, "mdtool net-sh")
    assert out == "plain,net-show\n"


@pytest.mark.parametrize("shell, marker", [("bash", "complete -o nosort -F _mdtool_completion mdtool"),
                                           ("zsh", "compdef _mdtool_completion mdtool"),
                                           ("fish", "complete --no-files --command mdtool")])
def test_scripts(run, shell, marker):
    r = run("completion", shell)
    assert r.exit_code == 0
    assert marker in r.output
    assert "_MDTOOL_COMPLETE" in r.output


def test_bad_shell(run):
    r = run("completion", "tcsh")
    assert r.exit_code == 2


def test_inspect_completes_networks_and_ports(registry, state_dir):
    assert complete(state_dir, "mdtool inspect ne") == "plain,net1\nplain,netb\n"
    assert complete(state_dir, "mdtool inspect net1 --port p") == "plain,p1\n"
