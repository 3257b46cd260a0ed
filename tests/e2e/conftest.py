"""A real pipeline per test: its own state dir, networks, instance namespaces and daemons,
all removed in teardown even when the test fails."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.e2e.helpers import Cleanup, DhcpClients, make_state_dir, processes_matching, _kill


@dataclass
class Instance:
    name: str
    id: str
    port_id: str
    ip: str
    mac: str
    namespace: str


@dataclass
class Site:
    """mdtool driven through its CLI, as an operator would, in a private state dir."""

    state_dir: Path
    cleanup: Cleanup
    dhcp: DhcpClients
    networks: list[str] = field(default_factory=list)
    env: dict = field(default_factory=dict)
    metadata_port: int = 8775

    def mdtool(self, *args, check: bool = True, env: dict | None = None,
               timeout: float = 120) -> subprocess.CompletedProcess:
        res = subprocess.run([sys.executable, "-m", "mdtool", *map(str, args)], capture_output=True,
                             text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                             env={**os.environ, **self.env, **(env or {})})
        if check and res.returncode != 0:
            raise AssertionError(f"mdtool {' '.join(map(str, args))} -> {res.returncode}\n"
                                 f"{res.stdout}\n{res.stderr}")
        return res

    def json(self, *args) -> dict | list:
        return json.loads(self.mdtool(*args, "-f", "json").stdout)

    def network(self, name: str, cidr: str, *extra: str) -> str:
        net_id = self.mdtool("net-create", name, "-f", "value", "-c", "id").stdout.strip()
        self.networks.append(net_id)
        self.cleanup.nft_table(net_id)
        self.mdtool("subnet-create", net_id, cidr, "--no-gateway", *extra)
        return net_id

    def instance(self, name: str, network: str, *extra: str, ip: str | None = None) -> Instance:
        inst = self.json("instance-create", name, *extra)
        fixed = ["--fixed-ip", f"ip_address={ip}"] if ip else []
        port = self.json("port-create", network, "--device-id", inst["id"], *fixed)
        ns = f"i-{port['id'][:8]}"
        self.cleanup.netns(ns)
        self.cleanup.link("tap" + port["id"][:11])
        return Instance(name, inst["id"], port["id"], port["fixed_ips"][0]["ip_address"],
                        port["mac_address"], ns)

    def plug(self, inst: Instance) -> None:
        self.mdtool("port-plug", inst.port_id, inst.namespace)

    def boot(self, inst: Instance, client: str = "udhcpc") -> None:
        """Plug the instance and let a real DHCP client configure it."""
        self.plug(inst)
        ok = getattr(self.dhcp, client)(inst.namespace)
        assert ok, self.dhcp.output(client)

    def pid(self, role: str) -> int | None:
        try:
            pid = int((self.state_dir / f"{role}.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        return pid if os.path.exists(f"/proc/{pid}") else None

    def curl(self, inst: Instance, path: str, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["ip", "netns", "exec", inst.namespace, "curl", "-sS", "-m", "5",
                               "-w", "\n%{http_code}", *args, f"http://169.254.169.254{path}"],
                              capture_output=True, text=True, timeout=20)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(res: subprocess.CompletedProcess) -> tuple[int, str]:
    """(status, body) of a Site.curl result."""
    body, _, code = res.stdout.rpartition("\n")
    return int(code or 0), body


@pytest.fixture
def site(tmp_path, request):
    if os.geteuid() != 0:
        pytest.skip("needs root")
    cleanup = Cleanup()
    state = make_state_dir(cleanup)
    port = free_port()
    # A private metadata port: tests of several sessions (or a node's real service) never
    # meet on 8775.
    s = Site(state, cleanup, DhcpClients(tmp_path / "dhcp", cleanup),
             env={"MDTOOL_STATE_DIR": str(state), "MDTOOL_METADATA_LISTEN_PORT": str(port),
                  "MDTOOL_NOVA_METADATA_PORT": str(port)})
    s.metadata_port = port
    # The fast path (the proxy answers in-process) is the default and what most tests run;
    # tests of the wire-compatible chain itself (agent down, a signature refused, ...) are
    # marked `chain` and run proxy -> agent -> metadata service.
    s.env["MDTOOL_METADATA_BACKEND"] = "nova" if request.node.get_closest_marker("chain") else "local"
    for var in ("MDTOOL_DB", "MDTOOL_CONFIG", "MDTOOL_NOVA_METADATA_URL"):
        if var in os.environ:
            s.env[var] = ""  # empty counts as unset: the test's own defaults apply

    tracebacks: list[str] = []

    def teardown():
        for net in reversed(s.networks):
            s.mdtool("disable-isolated-metadata", net, check=False)
        for pid in processes_matching("mdtool", str(state)):
            _kill(pid)
        for pid in processes_matching("dnsmasq", str(state)):
            _kill(pid)
        # A daemon that logged a traceback met a failure nobody asked for, even when the test
        # passed (a proxy round failing every second still serves the sites it bound first).
        for log in sorted((state / "log").glob("*.log*")):
            text = log.read_text(errors="replace")
            if "Traceback (most recent call last)" in text:
                at = text.index("Traceback (most recent call last)")
                tracebacks.append(f"{log.name}:\n{text[max(0, at - 300):at + 1200]}")

    cleanup.add("pipeline", teardown)
    try:
        yield s
    finally:
        cleanup.run()
    assert not processes_matching(str(state)), "a process of this test outlived its teardown"
    assert not tracebacks, "a daemon logged a traceback:\n" + "\n".join(tracebacks)
