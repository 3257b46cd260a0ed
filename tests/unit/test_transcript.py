"""The transcript checker that runs docs/operator-guide.md: what it takes for a command, what
it compares, and that a changed line fails."""

from tests.e2e import transcript

PAGE = """\
Intro text.

```
$ mdtool netns up net1
  ✓ create namespace qdhcp-9c348e67-992f-4da5-893b-d1b8096c1148
netns up net1: 9 change(s) done
$ cat > hook.sh <<'EOF'
#!/bin/sh
$ this line is part of the here-document
EOF
$ NET=$(mdtool net-show net1 -f value -c id)
```

A block without commands is not run:

```
orphan: qdhcp-37faaeda-… (network 37faaeda-… is not in the registry)
```
"""


def test_parse_commands_outputs_and_heredocs():
    cmds = transcript.parse(PAGE)
    assert [c.first_line for c in cmds] == [
        "mdtool netns up net1", "cat > hook.sh <<'EOF'", "NET=$(mdtool net-show net1 -f value -c id)"]
    assert cmds[0].line == 4 and cmds[0].shown[-1] == "netns up net1: 9 change(s) done"
    assert cmds[1].text.splitlines()[-1] == "EOF" and "$ this line" in cmds[1].text
    assert cmds[1].shown == [] and cmds[2].shown == []


def test_ids_pids_and_padding_do_not_count():
    shown = ["| id         | 9c348e67-992f-4da5-893b-d1b8096c1148 |",
             "  ✓ start dnsmasq for net1 (pid 19703)",
             "ok       dnsmasq running                        pid 19703 in qdhcp-9c348e67-992f-4da5-893b-d1b8096c1148"]
    real = ("| id   | 0b1c2d3e-1111-4222-8333-444455556666 |\n"
            "  ✓ start dnsmasq for net1 (pid 5)\n"
            "ok dnsmasq running pid 5 in qdhcp-0b1c2d3e-1111-4222-8333-444455556666\n")
    assert transcript.missing_lines(shown, real) == []


def test_a_changed_word_a_missing_line_or_another_order_fails():
    real = "1. registry: ok, nothing to do\n2. DHCP port: changed\nisolated metadata enabled on net1: 1 change(s)\n"
    assert transcript.missing_lines(["2. DHCP port: ok, nothing to do"], real)
    assert transcript.missing_lines(["3. namespace: ok, nothing to do"], real)
    assert transcript.missing_lines(["2. DHCP port: changed", "1. registry: ok, nothing to do"], real)
    # ... while an elided line, or one the page shortened away, is fine
    assert transcript.missing_lines(["1. registry: ok, nothing to do", "…",
                                     "isolated metadata enabled on net1: 1 change(s)"], real) == []



def test_a_daemon_line_written_into_a_command_line_is_split_off():
    """curl prints the body, then its -w newline; a background proxy's access line can land
    between the two writes. The body is still the line the page shows."""
    log = "2026-12-03 08:21:07,512 INFO mdtool.proxy.access: network=n1 GET /x status=200"
    real = f"172.17.17.1{log}\n\n$ next\n"
    assert transcript.missing_lines(["172.17.17.1"], real) == []
    assert transcript.missing_lines(["172.17.17.2"], real)  # a wrong body still fails
    # a line that merely mentions a time is left whole
    assert transcript.missing_lines(["x"], "x 2026-12-03 08:21:07,512 done\n")

def test_run_keeps_variables_exit_codes_and_unterminated_output(tmp_path):
    cmds = transcript.parse("```\n$ X=41\n$ printf 'no newline %s' $((X+1))\n$ false\n$ echo $X\n41\n```\n")
    out = transcript.run(cmds, cwd=tmp_path, env={"PATH": "/usr/bin:/bin"}, timeout=30)
    assert [o.exit_code for o in out] == [0, 0, 1, 0]
    assert out[1].output == "no newline 42" and out[3].output == "41"
