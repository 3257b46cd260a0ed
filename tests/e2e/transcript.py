"""Run a Markdown page's shell transcript and compare what it shows with what really happens.

A transcript is a fenced block whose lines start with ``$ `` (a command) followed by the
output the page shows for it. A command ending in a here-document (``<<'EOF'``) takes the
lines up to its terminator. Every command of the page runs in order in one bash process, so
variables (``NET=$(...)``), background jobs (``&``) and files carry from one to the next,
exactly as when an operator types them. Every command must exit 0: a page that shows a
refusal writes it as ``cmd; echo "exit $?"`` so the exit code is part of the output shown.

The output shown must appear, line by line and in order, in the real output (extra real
lines are allowed: a page may shorten), after both sides are normalised: ids, MACs, pids,
times and table padding vary from run to run. A line holding ``…`` marks an elision and is
not compared. A daemon's log line written into the middle of a command's line (they share
the terminal) is split off it first.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

FENCE = re.compile(r"^```(\w*)\s*$")
HEREDOC = re.compile(r"<<-?\s*'?(\w+)'?\s*$")
ELISION = "…"


@dataclass
class Command:
    line: int                    # 1-based line of the page where the command starts
    text: str                    # what goes to bash (a here-document included)
    shown: list[str] = field(default_factory=list)

    @property
    def first_line(self) -> str:
        return self.text.splitlines()[0]


def parse(page: str) -> list[Command]:
    """The commands of every fenced block of *page* that holds ``$ `` lines, in page order."""
    commands: list[Command] = []
    lines = page.splitlines()
    block = 0            # number of the fenced block we are in; 0: outside any
    blocks_seen = 0
    owner: Command | None = None   # the command the block's next output lines belong to
    i = 0
    while i < len(lines):
        ln = lines[i]
        if FENCE.match(ln):
            if block:
                block, owner = 0, None
            else:
                blocks_seen += 1
                block = blocks_seen
        elif block and ln.startswith("$ "):
            start = i + 1
            text = [ln[2:]]
            heredoc = HEREDOC.search(ln)
            if heredoc:
                i += 1
                while i < len(lines) and lines[i] != heredoc.group(1):
                    text.append(lines[i])
                    i += 1
                if i == len(lines):
                    raise ValueError(f"line {start}: here-document {heredoc.group(1)} never ends")
                text.append(lines[i])
            owner = Command(start, "\n".join(text))
            commands.append(owner)
        elif owner is not None:
            owner.shown.append(ln)
        i += 1
    return commands


# What differs between two honest runs: ids, addresses the kernel or dnsmasq picks, times.
_NORMAL = [
    (re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"), "<uuid>"),
    (re.compile(r"\b(brq|tap|ns-)[0-9a-f]{8}-[0-9a-f]{2}\b"), r"\1<id>"),
    (re.compile(r"\b[0-9a-f]{2}(:[0-9a-f]{2}){5}\b"), "<mac>"),
    (re.compile(r"\bi-[0-9a-f]{8}\b"), "i-<id>"),
    (re.compile(r"\b[0-9a-f]{8}\b"), "<id>"),                # a short id: port bbed57e5
    (re.compile(r"\b(running\s+)\d+\b"), r"\1<n>"),         # a pid column
    (re.compile(r"\b\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(,\d+)?( UTC)?"), "<time>"),
    (re.compile(r"\bpid \d+"), "pid <n>"),
    (re.compile(r"\b\d+/(python3?|dnsmasq|mdtool)\b"), r"<n>/\1"),
    (re.compile(r"@if\d+"), "@if<n>"),
    (re.compile(r"\(id: \d+\)"), "(id: <n>)"),
    (re.compile(r"^\d+: "), "<n>: "),
    (re.compile(r"\b\d+(\.\d+)?\s?ms\b"), "<ms>"),
    (re.compile(r"\bms=\d+(\.\d+)?"), "ms=<ms>"),
    (re.compile(r"AAAA[0-9A-Za-z+/=]+"), "AAAA<key>"),
    (re.compile(r"0xfe80000000000000[0-9a-f]{16}"), "<link-local>"),   # from the MAC
    (re.compile(r"\bfe80::[0-9a-f:]+"), "<link-local>"),
    (re.compile(r"-{3,}"), "--"),      # table borders follow the widest cell
    (re.compile(r"\s+"), " "),         # ... and so does the padding
]


def normalise(line: str) -> str:
    for pattern, repl in _NORMAL:
        line = pattern.sub(repl, line)
    return line.strip()


# Where a daemon's log line starts (logs.TEXT_FORMAT: the time first). The page's daemons
# share the terminal with its commands, and a line they write can land inside a command's
# line (curl writes the body, then its -w newline).
LOG_LINE_START = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d[.,]\d{3} [A-Z]+ mdtool[.\w]*: ")


def _own_lines(real: str) -> list[str]:
    """The real output's lines, with a daemon's log line written into another line split
    off it, as the terminal would have shown it had the writes come a moment apart."""
    out = []
    for ln in real.splitlines():
        while (m := LOG_LINE_START.search(ln, 1)) is not None:
            out.append(ln[:m.start()])
            ln = ln[m.start():]
        out.append(ln)
    return out


def missing_lines(shown: list[str], real: str) -> list[str]:
    """The shown lines (normalised) not found, in order, among the real ones."""
    real_lines = [normalise(ln) for ln in _own_lines(real)]
    pos = 0
    missing = []
    for ln in shown:
        if ELISION in ln or not ln.strip() or ln.startswith("(") and ln.endswith(")"):
            continue
        want = normalise(ln)
        try:
            pos = real_lines.index(want, pos) + 1
        except ValueError:
            missing.append(ln)
    return missing


@dataclass
class Outcome:
    command: Command
    output: str
    exit_code: int | None   # None: the script stopped before it (timeout or an earlier exit)


def run(commands: list[Command], *, cwd: Path, env: dict[str, str], timeout: float,
        substitute: dict[str, str] | None = None) -> list[Outcome]:
    """Run every command in one bash, in its own session (killed whole afterwards, so a
    background job a page starts can never outlive the run)."""
    subs = substitute or {}

    def sub(text: str) -> str:
        for old, new in subs.items():
            text = text.replace(old, new)
        return text

    script = ["exec 2>&1"]
    for n, cmd in enumerate(commands):
        script += [f"echo '@@cmd {n}'", sub(cmd.text), f"echo \"@@rc {n} $?\""]
    proc = subprocess.Popen(["bash", "-c", "\n".join(script)], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)   # background jobs the page left running
        except ProcessLookupError:
            pass
    outputs: dict[int, list[str]] = {}
    codes: dict[int, int] = {}
    current = None
    for ln in out.splitlines():
        # A marker may follow output that did not end its last line (a file without a
        # final newline): what precedes it on the line is still output.
        m = re.fullmatch(r"(.*)@@(cmd|rc) (\d+)(?: (\d+))?", ln)
        if m and m.group(1) and current is not None:
            outputs[current].append(m.group(1))
        if m and m.group(2) == "cmd":
            current = int(m.group(3))
            outputs[current] = []
        elif m:
            codes[int(m.group(3))] = int(m.group(4))
        elif current is not None:
            outputs[current].append(ln)
    return [Outcome(cmd, "\n".join(outputs.get(n, [])), codes.get(n))
            for n, cmd in enumerate(commands)]
