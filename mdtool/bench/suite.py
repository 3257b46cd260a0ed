"""The benchmark sections, each returning plain JSON-able results.

1. throughput and latency through (a) haproxy answering itself, (b) Neutron's haproxy ->
   mdtool agent -> metadata, (c) mdtool proxy -> agent -> metadata;
2. memory of proxying N networks: one mdtool proxy vs N haproxy;
3. boot to metadata: udhcpc start -> meta_data.json, next to DHCP alone;
4. set-up at scale: enable-isolated-metadata for many networks, and the no-change re-run;
5. registry: lookup p99 with 100k ports, dnsmasq render of 10k ports, port-create -> served;
6. CLI start-up: what scripts and TAB completion wait for, as ratios to `mdtool --help`;
7. node: `mdtool node run` at 200 networks: bring-up and full resync, idle CPU, change and
   write-to-lease latency, respawn time of each supervised process;
8. boot storm: 10 networks x 10 instances boot at once (udhcpc, then cloud-init's requests),
   through mdtool and through Neutron's shape (a haproxy per network -> agent -> metadata);
9. scale on one node: enable-isolated-metadata --all for 1,000 new networks, the no-change
   re-run, the proxy's memory, the idle CPU of every mdtool process and dnsmasq, and
   disable-isolated-metadata --all.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from mdtool.bench.harness import (Harness, delete_link, delete_netns, http_get, ip,
                                  kill, listener_pids, memory_kb, process_state, stop, wait_for,
                                  wrk)

MD_PATH = "/openstack/latest/meta_data.json"
METADATA_IP = "169.254.169.254"


@dataclass(frozen=True)
class Sizes:
    seconds: float = 5.0
    connections: tuple[int, ...] = (1, 16, 64)
    networks: tuple[int, ...] = (1, 10, 100)
    boots: int = 20
    setup: tuple[int, ...] = (1, 50, 200)
    setup_loop: int = 10
    ports: int = 100_000
    lookups: int = 100_000
    render_ports: int = 10_000
    served: int = 5
    cli_runs: int = 15
    node_networks: int = 200
    node_samples: int = 20
    node_idle_seconds: float = 20.0
    node_respawns: int = 3
    storm_networks: int = 10
    storm_instances: int = 10
    storm_rounds: int = 3
    scale_networks: int = 1000
    scale_idle_seconds: float = 30.0

    @classmethod
    def quick(cls) -> "Sizes":
        return cls(seconds=1.0, connections=(1, 16), networks=(1, 2), boots=3, setup=(1, 2),
                   setup_loop=1, ports=2_000, lookups=5_000, render_ports=500, served=1,
                   cli_runs=3, node_networks=2, node_samples=1, node_idle_seconds=1.0,
                   node_respawns=1, storm_networks=2, storm_instances=2, storm_rounds=1,
                   scale_networks=20, scale_idle_seconds=1.0)


def _pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q / 100.0 * (len(s) - 1))))]


# haproxy configurations --------------------------------------------------------------------

# Neutron's template (neutron/agent/metadata/driver.py), run in the foreground (-db) and
# without syslog, so haproxy pays nothing mdtool does not.
NEUTRON_HAPROXY = """\
global
    maxconn     1024
    pidfile     {pidfile}

defaults
    mode http
    option http-server-close
    option forwardfor
    retries                 3
    timeout http-request    30s
    timeout connect         30s
    timeout client          32s
    timeout server          32s
    timeout http-keep-alive 30s

listen listener
    bind {bind}:80
    server metadata {socket}
    http-request del-header X-Neutron-Router-ID
    http-request del-header X-Neutron-Network-ID
    http-request set-header X-Neutron-Network-ID {network_id}
"""

CEILING_HAPROXY = """\
global
    maxconn     1024
    pidfile     {pidfile}

defaults
    mode http
    timeout http-request    30s
    timeout client          32s
    timeout http-keep-alive 30s

frontend listener
    bind {bind}:80
    http-request return status 200 content-type application/json file {body}
"""


def haproxy(h: Harness, netns: str, cfg_text: str, cfg: Path) -> subprocess.Popen:
    cfg.write_text(cfg_text)
    return h.spawn(["haproxy", "-db", "-f", str(cfg)], netns=netns, log=cfg.with_suffix(".log"))


# The pipeline: one network, one instance, the three daemons ---------------------------------

class Pipeline:
    """net + subnet + instance + port via the CLI, `netns up`, the instance namespace plugged
    and statically addressed, metadata and agent running (the proxy is per scenario)."""

    def __init__(self, h: Harness, cidr: str = "10.251.0.0/24"):
        from mdtool.registry import open_registry
        self.h = h
        self.sd = sd = h.state_dir("pipeline")
        # Resources straight into the registry (what net-create & co. do, minus a Python
        # start per command); the pipeline steps themselves run through the CLI.
        self.registry = reg = open_registry(f"sqlite:///{sd}/mdtool.db")
        net = reg.create_network(h.name("bn"))
        self.net_id, self.bridge = net.id, net.bridge
        self.dhcp_ns = "qdhcp-" + self.net_id
        h.cleanup.add("bridge", lambda: delete_link(self.bridge))
        h.cleanup.add("registry", reg.engine.dispose)
        reg.create_subnet(self.net_id, cidr, no_gateway=True, name="bench")
        self.prefix = ipaddress.ip_network(cidr).prefixlen
        self.vm_id, self.port_id, self.ip = self.add_instance()
        h.cleanup.add("qdhcp namespace", lambda: delete_netns(self.dhcp_ns))
        h.cli(sd, "netns", "up", self.net_id)
        dhcp = [p for p in reg.list_ports(self.net_id) if p.device_owner == "network:dhcp"]
        self.dhcp_ip = dhcp[0].fixed_ips[0].ip_address
        self.inst_ns = h.name("bi")
        h.cleanup.add("instance namespace", lambda: delete_netns(self.inst_ns))
        h.cleanup.add("instance tap", lambda: delete_link("tap" + self.port_id[:11]))
        h.cli(sd, "port-plug", self.port_id, self.inst_ns)
        self.metadata = h.mdtool_daemon(sd, "metadata", "run", log_name="metadata")
        self.agent = h.mdtool_daemon(sd, "agent", "run", log_name="agent")
        self.agent_socket = sd / "metadata_proxy"
        wait_for(lambda: _tcp_open("127.0.0.1", h.metadata_port), 30, "the metadata service")
        wait_for(lambda: self.agent_get(self.ip)[0] == 200, 30, "the agent to serve the instance")

    def add_instance(self) -> tuple[str, str, str]:
        vm = self.registry.create_instance(self.h.name("vm"), meta={"role": "bench"})
        port = self.registry.create_port(self.net_id, device_id=vm.id)
        return vm.id, port.id, port.fixed_ips[0].ip_address

    def agent_get(self, source_ip: str) -> tuple[int, bytes]:
        def unix():
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(str(self.agent_socket))
            return s
        try:
            return http_get(unix, MD_PATH, {"X-Forwarded-For": source_ip,
                                            "X-Neutron-Network-ID": self.net_id})
        except OSError:
            return 0, b""

    def static_address(self) -> None:
        """What a DHCP lease would configure, without the DHCP exchange."""
        ip("addr", "flush", "dev", "eth0", "scope", "global", netns=self.inst_ns)
        ip("addr", "add", f"{self.ip}/{self.prefix}", "dev", "eth0", netns=self.inst_ns)
        ip("route", "replace", f"{METADATA_IP}/32", "via", self.dhcp_ip, "dev", "eth0",
           netns=self.inst_ns)

    def instance_get(self, timeout: float = 2.0) -> tuple[int, bytes]:
        from mdtool.netns.switch import run_in_netns

        def tcp():
            return socket.create_connection((METADATA_IP, 80), timeout=timeout)
        return run_in_netns(self.inst_ns, lambda: http_get(tcp, MD_PATH, timeout=timeout))

    def start_proxy(self, kind: str) -> subprocess.Popen:
        """One of: ceiling (haproxy answers), neutron (haproxy -> agent), mdtool (mdtool proxy)."""
        wait_foreign_gone(self.dhcp_ns)
        d = self.sd
        if kind == "ceiling":
            status, body = self.agent_get(self.ip)
            (d / "body.json").write_bytes(body)
            proc = haproxy(self.h, self.dhcp_ns, CEILING_HAPROXY.format(
                pidfile=d / "ceiling.pid", bind=METADATA_IP, body=d / "body.json"),
                d / "haproxy-ceiling.cfg")
        elif kind == "neutron":
            proc = haproxy(self.h, self.dhcp_ns, NEUTRON_HAPROXY.format(
                pidfile=d / "neutron.pid", bind=METADATA_IP, socket=self.agent_socket,
                network_id=self.net_id), d / "haproxy-neutron.cfg")
        else:  # mdtool: the fast path (the default); chain: metadata_backend = nova
            backend = "nova" if kind == "chain" else "local"
            proc = self.h.mdtool_daemon(d, "proxy", "run", "--network", self.net_id,
                                        log_name=f"proxy-{kind}",
                                        env={"MDTOOL_METADATA_BACKEND": backend})
        wait_for(lambda: proc.poll() is not None or proc.pid in listener_pids(self.dhcp_ns),
                 20, f"the {kind} proxy to listen")
        if proc.poll() is not None:
            raise RuntimeError(f"the {kind} proxy exited ({proc.returncode}); see {d}")
        return proc


def wait_foreign_gone(netns: str, timeout: float = 60.0) -> None:
    """Another mdtool proxy on this host that serves every qdhcp-* namespace (an e2e test,
    say) may grab :80 in ours between two scenarios: wait for it to go, bounded."""
    try:
        wait_for(lambda: not listener_pids(netns), timeout, "")
    except RuntimeError:
        pids = sorted(listener_pids(netns))
        raise RuntimeError(f"another process (pids {pids}) listens on :80 in {netns}: "
                           "an mdtool proxy serving every qdhcp-* namespace? Stop it and run "
                           "again") from None


def _tcp_open(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=0.5).close()
        return True
    except OSError:
        return False


# 1. throughput and latency -------------------------------------------------------------------

SCENARIOS = (("ceiling", "(a) haproxy answers itself"),
             ("neutron", "(b) Neutron haproxy -> agent -> metadata"),
             ("mdtool", "(c) mdtool fast path (proxy answers in-process)"),
             ("chain", "(d) mdtool chain: proxy -> agent -> metadata"))


def throughput(p: Pipeline, sizes: Sizes, log=print) -> dict:
    p.static_address()
    url = f"http://{METADATA_IP}{MD_PATH}"
    out: dict = {"path": MD_PATH, "seconds": sizes.seconds, "results": {}}
    for kind, label in SCENARIOS:
        proc = p.start_proxy(kind)
        try:
            status, body = p.instance_get()
            if status != 200:
                raise RuntimeError(f"{label}: GET {MD_PATH} from the instance answered {status}")
            out["results"][kind] = {"label": label, "body_bytes": len(body), "by_connections": {}}
            for c in sizes.connections:
                r = wrk(p.inst_ns, url, c, sizes.seconds)
                out["results"][kind]["by_connections"][str(c)] = r
                log(f"  {label:45s} c={c:<3d} {r['rps']:9.0f} req/s  p50 {r['p50_ms']:.2f} ms"
                    f"  p99 {r['p99_ms']:.2f} ms  non-2xx {r['non2xx']}")
        finally:
            stop(proc)
        wait_for(lambda: not listener_pids(p.dhcp_ns), 10, f"the {kind} proxy to let go of :80")
    res = out["results"]
    out["ratios"] = {}
    for c in sizes.connections:
        k = str(c)
        rc, rb, ra, rd = (res[x]["by_connections"][k]["rps"]
                          for x in ("mdtool", "neutron", "ceiling", "chain"))
        pc, pa = (res[x]["by_connections"][k]["p99_ms"] for x in ("mdtool", "ceiling"))
        out["ratios"][k] = {"c_over_b": rc / rb if rb else None, "c_over_a": rc / ra if ra else None,
                            "d_over_b": rd / rb if rb else None,
                            "p99_c_over_a": pc / pa if pa else None}
    return out


# 2. memory ---------------------------------------------------------------------------------------

def memory(h: Harness, sizes: Sizes, log=print) -> dict:
    from mdtool.registry import open_registry
    sd = h.state_dir("memory")
    reg = open_registry(f"sqlite:///{sd}/mdtool.db")
    nmax = max(sizes.networks)
    nets = [reg.create_network(h.name("bm")).id for _ in range(nmax)]
    reg.engine.dispose()
    for net_id in nets:
        ns = h.netns("qdhcp-" + net_id)
        ip("addr", "add", f"{METADATA_IP}/32", "dev", "lo", netns=ns)
    socket_path = sd / "metadata_proxy"  # need not exist: nothing is proxied here
    out: dict = {"unit": "kB", "by_networks": {}}
    for n in sizes.networks:
        served = nets[:n]
        for net_id in served:
            wait_foreign_gone("qdhcp-" + net_id)
        # mdtool: one process for all n
        args = ["proxy", "run"] + [a for net_id in served for a in ("--network", net_id)]
        logf = sd / f"proxy-{n}.log"
        proc = h.spawn([sys.executable, "-m", "mdtool", *args], log=logf, env=h.env(sd))
        wait_for(lambda: proc.poll() is not None or
                 logf.read_text(errors="replace").count("serving network") >= n,
                 60, f"the mdtool proxy to serve {n} networks")
        if proc.poll() is not None:
            raise RuntimeError(f"mdtool proxy exited: {logf.read_text()[-500:]}")
        time.sleep(0.3)
        md = memory_kb(proc.pid)
        stop(proc)
        # haproxy: one per network, Neutron's configuration
        procs = []
        try:
            for net_id in served:
                procs.append(haproxy(h, "qdhcp-" + net_id, NEUTRON_HAPROXY.format(
                    pidfile=sd / f"haproxy-{net_id}.pid", bind=METADATA_IP,
                    socket=socket_path, network_id=net_id), sd / f"haproxy-{net_id}.cfg"))
            for net_id, pr in zip(served, procs):
                wait_for(lambda: pr.poll() is not None or pr.pid in listener_pids("qdhcp-" + net_id),
                         20, "haproxy to listen")
                if pr.poll() is not None:
                    raise RuntimeError("haproxy exited at start")
            time.sleep(0.3)
            ha = {"rss": 0, "pss": 0, "private": 0}
            for pr in procs:
                for k, v in memory_kb(pr.pid).items():
                    ha[k] += v
        finally:
            for pr in procs:
                stop(pr)
        out["by_networks"][str(n)] = {
            "mdtool": md, "haproxy": ha,
            "ratio_private": md["private"] / ha["private"] if ha["private"] else None,
            "ratio_pss": md["pss"] / ha["pss"] if ha["pss"] else None,
            "ratio_rss": md["rss"] / ha["rss"] if ha["rss"] else None}
        log(f"  {n:4d} networks: mdtool rss {md['rss']} pss {md['pss']} private {md['private']} kB;"
            f" haproxy x{n} rss {ha['rss']} pss {ha['pss']} private {ha['private']} kB")
    return out


# 3. boot to metadata ---------------------------------------------------------------------------

UDHCPC_HOOK = r"""#!/bin/sh
# udhcpc hook for the benchmark: address + option 121 routes in the instance namespace;
# never writes resolv.conf.
PATH=/usr/sbin:/usr/bin:/sbin:/bin
case "$1" in
    deconfig) ip addr flush dev "$interface" scope global; ip link set dev "$interface" up ;;
    bound|renew)
        ip addr flush dev "$interface" scope global
        ip addr add "$ip/${mask:-32}" dev "$interface"
        if [ -n "${staticroutes:-}" ]; then
            set -- $staticroutes
            while [ $# -ge 2 ]; do
                if [ "$2" = "0.0.0.0" ]; then ip route replace "$1" dev "$interface"
                else ip route replace "$1" via "$2" dev "$interface" onlink; fi
                shift 2
            done
        fi ;;
esac
exit 0
"""


def boot(p: Pipeline, sizes: Sizes, log=print) -> dict:
    """udhcpc (own hook script) -> GET meta_data.json, with the mdtool proxy serving."""
    h = p.h
    h.cleanup.add("dnsmasq", lambda: h.cli(p.sd, "dnsmasq", "stop", p.net_id, check=False))
    h.cli(p.sd, "dnsmasq", "start", p.net_id)
    hook = p.sd / "udhcpc-hook.sh"
    hook.write_text(UDHCPC_HOOK)
    os.chmod(hook, 0o755)
    proxy = p.start_proxy("mdtool")
    dhcp_ms, boot_ms = [], []
    try:
        for _ in range(sizes.boots):
            ip("addr", "flush", "dev", "eth0", "scope", "global", netns=p.inst_ns)
            ip("route", "flush", "dev", "eth0", netns=p.inst_ns, check=False)
            t0 = time.perf_counter()
            res = subprocess.run(["ip", "netns", "exec", p.inst_ns, "udhcpc", "-f", "-q", "-n",
                                  "-i", "eth0", "-t", "5", "-T", "1", "-A", "1",
                                  "-O", "staticroutes", "-s", str(hook)],
                                 capture_output=True, text=True, timeout=30,
                                 stdin=subprocess.DEVNULL)
            t1 = time.perf_counter()
            if res.returncode != 0:
                raise RuntimeError(f"udhcpc got no lease: {res.stderr.strip()[-300:]}")
            status, _ = p.instance_get()
            t2 = time.perf_counter()
            if status != 200:
                raise RuntimeError(f"after DHCP, meta_data.json answered {status}")
            dhcp_ms.append((t1 - t0) * 1000)
            boot_ms.append((t2 - t0) * 1000)
    finally:
        stop(proxy)
        wait_for(lambda: not listener_pids(p.dhcp_ns), 10, "the proxy to let go of :80")
    added = [b - d for b, d in zip(boot_ms, dhcp_ms)]
    out = {"boots": sizes.boots, "dhcp_ms": statistics.median(dhcp_ms),
           "boot_to_metadata_ms": statistics.median(boot_ms),
           "metadata_added_ms": statistics.median(added), "metadata_added_max_ms": max(added),
           "samples": {"dhcp_ms": dhcp_ms, "boot_ms": boot_ms}}
    log(f"  DHCP alone {out['dhcp_ms']:.1f} ms, boot to metadata {out['boot_to_metadata_ms']:.1f} ms,"
        f" metadata adds {out['metadata_added_ms']:.1f} ms (median of {sizes.boots})")
    return out


# 4. set-up at scale --------------------------------------------------------------------------

def setup(h: Harness, sizes: Sizes, log=print) -> dict:
    """enable-isolated-metadata over many networks with the real CLI (daemons, dnsmasq,
    namespaces), first one call per network (the per-invocation cost), then one call for
    many networks, then the no-change re-run."""
    sd = h.state_dir("setup")
    env_port = h.metadata_port
    nets = _networks(h, sd, sizes.setup_loop + max(sizes.setup), "bs", 200)
    ids = [n.id for n in nets]
    # enable starts metadata, agent and proxy itself (the proxy follows only the
    # namespaces of this state dir); a metadata port of its own
    h.metadata_port = _free_port_other(env_port)
    try:
        out: dict = {"loop": {}, "batch": {}}
        # one call per network
        loop_ids, batch_ids = ids[:sizes.setup_loop], ids[sizes.setup_loop:]
        times, rss = [], []
        loop_failed: list[str] = []
        for net_id in loop_ids:
            r = h.cli(sd, "enable-isolated-metadata", net_id, check=False)
            times.append(r.seconds)
            rss.append(r.maxrss_kb)
            if r.rc != 0:
                loop_failed.append(f"{net_id}: " + " ".join(r.stderr.strip().splitlines()[-1:]))
                log(f"  FAILED {loop_failed[-1]}")
        out["loop"] = {"networks": len(loop_ids), "seconds_each_median": statistics.median(times),
                       "seconds_first": times[0], "peak_rss_kb": max(rss), "failed": loop_failed}
        log(f"  one call per network: {statistics.median(times):.2f} s each (first {times[0]:.2f} s,"
            f" daemons included), peak RSS {max(rss) / 1024:.0f} MB")
        done = 0
        multi = _cli_takes_many(h, sd)
        for n in sizes.setup:
            todo = batch_ids[done:n]
            t0 = time.perf_counter()
            peak = 0
            failures: list[str] = []
            if multi:
                r = h.cli(sd, "enable-isolated-metadata", *todo, timeout=900, check=False)
                peak = r.maxrss_kb
                failures = _failures(r)
            else:
                for net_id in todo:
                    peak = max(peak, h.cli(sd, "enable-isolated-metadata", net_id).maxrss_kb)
            elapsed = time.perf_counter() - t0
            done = n
            out["batch"][str(n)] = {"new_networks": len(todo), "seconds": elapsed,
                                    "peak_rss_kb": peak, "failed": failures}
            for f in failures:
                log(f"  FAILED {f}")
            log(f"  enable up to {n} networks ({len(todo)} new): {elapsed:.2f} s, "
                f"peak RSS {peak / 1024:.0f} MB")
        served = batch_ids[:done]
        # the cumulative time to bring `n` networks up from nothing
        acc = 0.0
        for n in sizes.setup:
            acc += out["batch"][str(n)]["seconds"]
            out["batch"][str(n)]["cumulative_seconds"] = acc
        t0 = time.perf_counter()
        if multi:
            r = h.cli(sd, "enable-isolated-metadata", *served, timeout=900, check=False)
            peak = r.maxrss_kb
            out["rerun_failed"] = _failures(r)
        else:
            peak = 0
            for net_id in served:
                peak = max(peak, h.cli(sd, "enable-isolated-metadata", net_id).maxrss_kb)
        out["rerun"] = {"networks": len(served), "seconds": time.perf_counter() - t0,
                        "peak_rss_kb": peak, "one_call": multi}
        log(f"  no-change re-run over {len(served)} networks: {out['rerun']['seconds']:.2f} s")
        out["one_call_for_many"] = multi
        return out
    finally:
        h.metadata_port = env_port


def _networks(h: Harness, sd: Path, count: int, prefix: str, first_octet: int) -> list:
    """``count`` networks with a /24 each (10.<first_octet + i // 250>.<i % 250>.0/24) in the
    registry of state dir ``sd``; whatever enable starts or creates for them is removed at
    close (processes judged by their command line naming ``sd``, namespaces, bridges)."""
    from mdtool.registry import open_registry
    reg = open_registry(f"sqlite:///{sd}/mdtool.db")
    nets = []
    try:
        for i in range(count):
            n = reg.create_network(h.name(prefix))
            reg.create_subnet(n.id, f"10.{first_octet + i // 250}.{i % 250}.0/24",
                              no_gateway=True)
            nets.append(n)
    finally:
        reg.engine.dispose()
        h.cleanup.add(f"networks of {sd.name}", lambda: _teardown_networks(sd, nets))
    return nets


def _failures(r) -> list[str]:
    """The per-network failure lines of a several-network enable (or its error)."""
    lines = [l.strip() for l in (r.stdout + r.stderr).splitlines() if "✗" in l]
    if r.rc != 0 and not lines:
        lines = [(r.stderr.strip().splitlines() or [f"exit {r.rc}"])[-1]]
    return lines


def _cli_takes_many(h: Harness, sd: Path) -> bool:
    r = h.cli(sd, "enable-isolated-metadata", "--help")
    return "NETWORK..." in r.stdout


def _free_port_other(other: int) -> int:
    from mdtool.bench.harness import free_port
    while True:
        p = free_port()
        if p != other:
            return p


def _kill_pidfile(path: Path, state_dir: Path) -> None:
    """Kill the process of a pid file only when its command line names our state dir (the
    pid may have been reused by anyone's process since)."""
    try:
        pid = int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return
    if str(state_dir).encode() in cmd:
        kill(pid)


# 5. registry -------------------------------------------------------------------------------

def registry(h: Harness, p: Pipeline | None, sizes: Sizes, log=print) -> dict:
    from mdtool import model
    from mdtool.agent.handler import IndexFollower
    from mdtool.dnsmasq.render import render_files
    from mdtool.registry import open_registry
    out: dict = {}
    # lookups in an index built from a real registry of `ports` ports
    sd = h.state_dir("registry")
    reg = open_registry(f"sqlite:///{sd}/mdtool.db")
    per_net = 1000
    nnets = max(1, sizes.ports // per_net)
    rows, allocs, keys = [], [], []
    rnd = random.Random(6)
    for i in range(nnets):
        net = reg.create_network(f"reg{i}")
        sub = reg.create_subnet(net.id, f"10.{i // 64}.{(i % 64) * 4}.0/22", no_gateway=True)
        base = int(ipaddress.ip_network(sub.cidr).network_address)
        for j in range(per_net):
            pid = f"{i:08x}-0000-4000-8000-{j:012x}"
            addr = str(ipaddress.IPv4Address(base + 10 + j))
            rows.append({"id": pid, "network_id": net.id, "name": "", "mac_address":
                         f"fa:16:{i >> 8 & 255:02x}:{i & 255:02x}:{j >> 8:02x}:{j & 255:02x}",
                         "device_id": f"{i:08x}-1111-4000-8000-{j:012x}", "device_owner": "compute:nova",
                         "project_id": "bench", "host": ""})
            allocs.append({"port_id": pid, "subnet_id": sub.id, "network_id": net.id,
                           "ip_address": addr, "position": 0})
            keys.append((net.id, addr))
    with reg._write() as conn:  # bulk: one transaction, not 100k
        conn.insert_many("ports", rows)
        conn.insert_many("ip_allocations", allocs)
    follower = IndexFollower(reg)
    t0 = time.perf_counter()
    index = follower.build()
    build_s = time.perf_counter() - t0
    follower.close()
    sample = [rnd.choice(keys) for _ in range(sizes.lookups)]
    lat = []
    clock = time.perf_counter_ns
    for net_id, addr in sample:
        a = clock()
        m = index.lookup(net_id, addr)
        lat.append(clock() - a)
        if len(m) != 1:
            raise RuntimeError("lookup missed a port it holds")
    miss = []
    for net_id, _ in sample[: sizes.lookups // 10]:
        a = clock()
        index.lookup(net_id, "192.0.2.77")
        miss.append(clock() - a)
    out["lookup"] = {"ports": index.port_count, "index_build_s": build_s,
                     "lookups": len(lat), "p50_us": _pct(lat, 50) / 1000,
                     "p99_us": _pct(lat, 99) / 1000, "miss_p99_us": _pct(miss, 99) / 1000}
    log(f"  lookup with {index.port_count} ports: p50 {out['lookup']['p50_us']:.2f} us, "
        f"p99 {out['lookup']['p99_us']:.2f} us; index built from the registry in {build_s:.2f} s")
    reg.engine.dispose()
    # dnsmasq render of one network with render_ports ports
    net = model.Network(id="0" * 8 + "-0000-4000-8000-" + "0" * 12, name="big", bridge="brqbig", mtu=1500)
    sub = model.Subnet(id="1" * 8 + "-0000-4000-8000-" + "0" * 12, name="s", network_id=net.id,
                       cidr="10.128.0.0/16", ip_version=4, gateway_ip=None, enable_dhcp=True)
    net.subnets.append(sub)
    dhcp_port = model.Port(id="dhcp", name="", network_id=net.id, mac_address="fa:16:3e:ff:ff:ff",
                           fixed_ips=[model.FixedIP(sub.id, "10.128.0.2")],
                           device_owner=model.DHCP_OWNER)
    net.ports.append(dhcp_port)
    for j in range(sizes.render_ports):
        net.ports.append(model.Port(id=f"p{j}", name="", network_id=net.id,
                                    mac_address=f"fa:16:3e:00:{j >> 8:02x}:{j & 255:02x}",
                                    fixed_ips=[model.FixedIP(sub.id, str(ipaddress.IPv4Address(
                                        int(ipaddress.IPv4Address("10.128.1.0")) + j)))],
                                    device_owner=model.COMPUTE_OWNER))
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        files = render_files(net, dhcp_port, dns_domain="openstacklocal", lease_duration=86400)
        times.append(time.perf_counter() - t0)
    out["render"] = {"ports": sizes.render_ports, "seconds": statistics.median(times),
                     "host_bytes": len(files["host"])}
    log(f"  dnsmasq render of {sizes.render_ports} ports: {out['render']['seconds'] * 1000:.0f} ms")
    # port-create -> the agent serves it
    if p is not None:
        served = []
        cli_s = []
        for _ in range(sizes.served):
            vm = p.registry.create_instance(h.name("vm"))
            t0 = time.perf_counter()
            r = h.cli(p.sd, "port-create", p.net_id, "--device-id", vm.id, "-f", "value",
                      "-c", "fixed_ips")
            t1 = time.perf_counter()
            new_ip = _first_ip(r.stdout)
            wait_for(lambda: p.agent_get(new_ip)[0] == 200, 10, "the new port to be served")
            t2 = time.perf_counter()
            served.append((t2 - t1) * 1000)
            cli_s.append((t1 - t0) * 1000)
        out["port_served"] = {"samples": len(served), "after_commit_ms": statistics.median(served),
                              "cli_ms": statistics.median(cli_s),
                              "total_ms": statistics.median(a + b for a, b in zip(served, cli_s))}
        log(f"  port-create -> served: CLI {out['port_served']['cli_ms']:.0f} ms + "
            f"{out['port_served']['after_commit_ms']:.0f} ms until the agent serves it")
    return out


def _first_ip(text: str) -> str:
    import re
    m = re.search(r"(\d+\.\d+\.\d+\.\d+)", text)
    if not m:
        raise RuntimeError(f"no IP in port-create output {text!r}")
    return m.group(1)


# 6. CLI start-up ---------------------------------------------------------------------------

def _completion_env(words: str) -> dict[str, str]:
    """What bash's completion function sets before it runs mdtool (click's protocol)."""
    return {"_MDTOOL_COMPLETE": "bash_complete", "COMP_WORDS": words,
            "COMP_CWORD": str(len(words.split(" ")) - 1)}


def cli_startup(h: Harness, sizes: Sizes, log=print) -> dict:
    """Median wall time of commands a shell script or a TAB runs, as ratios to `--help`
    (the floor: Python, click and mdtool's command table). The registry holds a network, a
    subnet, an instance and its port, on SQLite in a fresh state dir.

    Python runs as an installed mdtool runs: with its bytecode cache (an install compiles
    it; PYTHONDONTWRITEBYTECODE, set in some shells, would compile every module from source
    on every call, ~190 ms of a net-list), after one untimed round."""
    sd = h.state_dir("cli")
    h.cli(sd, "net-create", "clinet")
    h.cli(sd, "subnet-create", "clinet", "10.250.0.0/24", "--no-gateway")
    h.cli(sd, "instance-create", "clivm")
    port = h.cli(sd, "port-create", "clinet", "--device-id", "clivm", "-f", "value",
                 "-c", "id").stdout.strip()
    runs = max(3, sizes.cli_runs)
    cases: dict[str, tuple[list[str], dict[str, str]]] = {
        "--help": (["--help"], {}),
        "net-list": (["net-list"], {}),
        "port-show": (["port-show", port], {}),
        "port-create": (["port-create", "clinet"], {}),
        "completion (TAB on net-show)": ([], _completion_env("mdtool net-show ")),
    }
    base = {k: v for k, v in h.env(sd).items() if k != "PYTHONDONTWRITEBYTECODE"}
    times: dict[str, list[float]] = {name: [] for name in cases}
    # Round by round, every command once per round: a load that comes and goes on a shared
    # machine weighs on all of them alike. Round 0 is untimed (it writes the bytecode cache).
    for round_ in range(runs + 1):
        for name, (args, extra) in cases.items():
            start = time.perf_counter()
            res = subprocess.run([sys.executable, "-m", "mdtool", *args], env={**base, **extra},
                                 capture_output=True, stdin=subprocess.DEVNULL, timeout=120)
            if round_:
                times[name].append(time.perf_counter() - start)
            if res.returncode != 0:
                raise RuntimeError(f"mdtool {name} failed: {res.stderr.decode()[-500:]}")
    medians = {name: statistics.median(t) for name, t in times.items()}
    for name, m in medians.items():
        log(f"   {name}: median {m * 1000:.0f} ms of {runs}")
    floor = medians["--help"]
    return {"runs": runs, "median_ms": {k: round(v * 1000, 1) for k, v in medians.items()},
            "over_help": {k: round(v / floor, 2) for k, v in medians.items() if k != "--help"}}


# 7. the node: `mdtool node run` -----------------------------------------------------------

def _cpu_seconds(pid: int) -> float:
    """utime + stime of one process, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _resync_seconds(log_path: Path, offset: int) -> tuple[int, float]:
    """(networks, seconds) of the 'resync (start)' line node run logs after ``offset``."""
    import re
    text = log_path.read_bytes()[offset:].decode(errors="replace")
    m = re.search(r"resync \(start\): (\d+) network\(s\) in ([\d.]+) s", text)
    return (int(m.group(1)), float(m.group(2))) if m else (0, 0.0)


def _teardown_networks(sd: Path, nets) -> None:
    """Kill what a section's state dir started (judged by its command line naming ``sd``),
    then remove the namespaces and bridges of ``nets``."""
    for pidname in ("proxy", "agent", "metadata"):
        _kill_pidfile(sd / f"{pidname}.pid", sd)
    for n in nets:
        _kill_pidfile(sd / "dhcp" / n.id / "pid", sd)
        delete_netns("qdhcp-" + n.id)
        delete_link(n.bridge)


def node(h: Harness, sizes: Sizes, log=print) -> dict:
    """`mdtool node run` over ``sizes.node_networks`` networks: bring-up and no-change full
    resync, idle CPU, write -> dnsmasq and write -> lease latency, one port changing among
    all the networks, and the respawn time of each supervised process."""
    with _own_metadata_port(h):
        return _node(h, sizes, log)


@contextlib.contextmanager
def _own_metadata_port(h: Harness):
    """A metadata port of the section's own while it runs (the pipeline's metadata service
    may hold the run's)."""
    env_port = h.metadata_port
    h.metadata_port = _free_port_other(env_port)
    try:
        yield
    finally:
        h.metadata_port = env_port


def _text(path: Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""


def _node(h: Harness, sizes: Sizes, log) -> dict:
    from mdtool.registry import open_registry
    sd = h.state_dir("node")
    reg = open_registry(f"sqlite:///{sd}/mdtool.db")
    h.cleanup.add("node registry", reg.engine.dispose)
    host = h.env(sd)["MDTOOL_HOST"]
    nets = []
    for i in range(sizes.node_networks):
        n = reg.create_network(h.name("bn"))
        reg.create_subnet(n.id, f"10.{160 + i // 250}.{i % 250}.0/24", no_gateway=True)
        reg.serve_network(n.id, host)  # what enable records: node run brings it up
        nets.append(n)
    h.cleanup.add("node networks", lambda: _teardown_networks(sd, nets))
    out: dict = {"networks": len(nets)}
    node_log = sd / "node.log"

    def start_node() -> tuple[subprocess.Popen, tuple[int, float]]:
        offset = node_log.stat().st_size if node_log.exists() else 0
        proc = h.mdtool_daemon(sd, "node", "run", "--resync-interval", "3600", log_name="node")
        wait_for(lambda: proc.poll() is not None or _resync_seconds(node_log, offset)[0],
                 1800, "node run's first resync")
        if proc.poll() is not None:
            raise RuntimeError(f"node run exited ({proc.returncode}); see {node_log}")
        return proc, _resync_seconds(node_log, offset)

    # bring-up: node run's first resync enables every network from nothing
    proc, (count, seconds) = start_node()
    down = [n.id for n in nets if not (sd / "dhcp" / n.id / "host").exists()]
    if down:
        tail = "; ".join(_text(node_log).splitlines()[-3:])
        raise RuntimeError(f"node run did not bring {len(down)} network(s) up: {tail}")
    out["bring_up"] = {"networks": count, "seconds": seconds}
    log(f"  node run brought {count} networks up in {seconds:.1f} s")
    # idle CPU: nothing changes; the feed polls, the pidfds sleep in epoll
    before, t0 = _cpu_seconds(proc.pid), time.monotonic()
    time.sleep(sizes.node_idle_seconds)
    cpu = (_cpu_seconds(proc.pid) - before) / (time.monotonic() - t0)
    out["idle"] = {"seconds": sizes.node_idle_seconds, "cpu_percent_of_one_core": cpu * 100}
    log(f"  idle at {len(nets)} networks: {cpu * 100:.2f} % of one core")

    # one port changes among all the networks: write -> dnsmasq's host file has it
    rnd = random.Random(12)
    change_ms = []
    for _ in range(sizes.node_samples):
        n = rnd.choice(nets[1:] or nets)
        port = reg.create_port(n.id)
        t0 = time.perf_counter()
        host_file = sd / "dhcp" / n.id / "host"
        wait_for(lambda: port.mac_address in _text(host_file), 30, "the port in dnsmasq")
        change_ms.append((time.perf_counter() - t0) * 1000)
    out["change"] = {"samples": len(change_ms), "p50_ms": _pct(change_ms, 50),
                     "p99_ms": _pct(change_ms, 99), "max_ms": max(change_ms)}
    log(f"  one port among {len(nets)} networks -> dnsmasq: p50 {out['change']['p50_ms']:.0f} ms,"
        f" p99 {out['change']['p99_ms']:.0f} ms")

    # write -> lease: an instance whose port is created while its udhcpc already asks
    net = nets[0]
    first, inst_ns, hook = _lease_instance(h, reg, net.id, sd, [sd / "dhcp" / net.id / "host"])
    h.cli(sd, "port-plug", first.id, inst_ns)
    out["lease"] = _lease_samples(reg, net.id, first, inst_ns, hook,
                                  [sd / "dhcp" / net.id / "host"], sizes.node_samples)
    log(f"  port-create -> lease: p50 {out['lease']['p50_ms']:.0f} ms, p99 "
        f"{out['lease']['p99_ms']:.0f} ms (dnsmasq has it after p50 "
        f"{out['lease']['reload_p50_ms']:.0f} ms)")

    # respawn: SIGKILL each supervised process, until its successor does its job
    dhcp_ns = "qdhcp-" + net.id
    checks = {
        "dnsmasq": (sd / "dhcp" / net.id / "pid", lambda pid: True),
        "proxy": (sd / "proxy.pid", lambda pid: pid in listener_pids(dhcp_ns)),
        "agent": (sd / "agent.pid", lambda pid: _unix_answers(sd / "metadata_proxy")),
        "metadata": (sd / "metadata.pid", lambda pid: _unix_answers(sd / "metadata")),
    }
    respawn: dict = {}
    for what, (pidfile, works) in checks.items():
        times = []
        for _ in range(sizes.node_respawns):
            old = int(pidfile.read_text().split()[0])
            t0 = time.perf_counter()
            os.kill(old, 9)

            def back(old=old, pidfile=pidfile, works=works):
                try:
                    pid = int(pidfile.read_text().split()[0])
                except (OSError, ValueError, IndexError):
                    return False
                return pid != old and os.path.exists(f"/proc/{pid}") and works(pid)
            wait_for(back, 30, f"{what} to be started again")
            times.append((time.perf_counter() - t0) * 1000)
        respawn[what] = {"samples": len(times), "median_ms": statistics.median(times),
                         "max_ms": max(times)}
    out["respawn"] = respawn
    log("  respawn (SIGKILL -> working again): " + ", ".join(
        f"{k} {v['median_ms']:.0f} ms" for k, v in respawn.items()))

    # the no-change full resync: a new node run over what is all there
    stop(proc)
    proc, (count, seconds) = start_node()
    out["resync"] = {"networks": count, "seconds": seconds}
    log(f"  full resync over {count} networks (nothing to change): {seconds:.2f} s")
    stop(proc)
    out["two_nodes"] = node_two(h, sizes, log)
    return out


def _lease_instance(h: Harness, reg, net_id: str, sd: Path, host_files: list[Path]):
    """A port for the instance of the lease samples, in every host file; its namespace name
    (port-plug makes it) and the udhcpc hook: (port, namespace, hook)."""
    hook = sd / "udhcpc-hook.sh"
    hook.write_text(UDHCPC_HOOK)
    os.chmod(hook, 0o755)
    first = reg.create_port(net_id)
    inst_ns = h.name("bi")
    h.cleanup.add("instance namespace", lambda: delete_netns(inst_ns))
    h.cleanup.add("instance tap", lambda: delete_link("tap" + first.id[:11]))
    wait_for(lambda: all(first.mac_address in _text(f) for f in host_files), 30,
             "the instance's port in dnsmasq")
    return first, inst_ns, hook


def _lease_samples(reg, net_id: str, first, inst_ns: str, hook: Path, host_files: list[Path],
                   samples: int) -> dict:
    """Write -> lease, ``samples`` times: the port ``first`` (plugged in ``inst_ns``) is
    deleted until every host file forgot its MAC, a port with that MAC is created and
    udhcpc starts at once. Also write -> every host file has it ("reload")."""
    mac = first.mac_address
    reg.delete_port(first.id)
    lease_ms, reload_ms = [], []

    def everywhere(present: bool) -> bool:
        return all((mac in _text(f)) == present for f in host_files)
    for _ in range(samples):
        wait_for(lambda: everywhere(False), 30, "the old port to leave dnsmasq")
        ip("addr", "flush", "dev", "eth0", "scope", "global", netns=inst_ns)
        t0 = time.perf_counter()
        port = reg.create_port(net_id, mac_address=mac)
        client = subprocess.Popen(["ip", "netns", "exec", inst_ns, "udhcpc", "-f", "-q", "-n",
                                   "-i", "eth0", "-t", "10", "-T", "1", "-A", "1",
                                   "-O", "staticroutes", "-s", str(hook)],
                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        wait_for(lambda: everywhere(True), 30, "the port in dnsmasq")
        reload_ms.append((time.perf_counter() - t0) * 1000)
        if client.wait(timeout=30) != 0:
            raise RuntimeError("udhcpc got no lease after port-create")
        lease_ms.append((time.perf_counter() - t0) * 1000)
        reg.delete_port(port.id)
    return {"samples": len(lease_ms), "p50_ms": _pct(lease_ms, 50), "p99_ms": _pct(lease_ms, 99),
            "reload_p50_ms": _pct(reload_ms, 50), "reload_p99_ms": _pct(reload_ms, 99)}


def _pg_admin_url() -> str | None:
    """A PostgreSQL server to create a database on: MDTOOL_BENCH_PG, else the local socket."""
    url = os.environ.get("MDTOOL_BENCH_PG")
    if url:
        return url
    try:
        if any(f.startswith(".s.PGSQL.") for f in os.listdir("/var/run/postgresql")):
            return "postgresql:///postgres"
    except OSError:
        pass
    return None


def _pg_admin(url: str, sql: str) -> None:
    from mdtool.registry.db import Engine
    conn = Engine(url).raw_connect()
    try:
        conn.autocommit = True  # CREATE/DROP DATABASE cannot run in a transaction
        with conn.cursor() as cur:
            cur.execute(sql)
    finally:
        conn.close()


def node_two(h: Harness, sizes: Sizes, log=print) -> dict:
    """Two nodes on one PostgreSQL registry, on this machine (node B in a mount namespace
    of its own whose /run/netns is private, as tests/e2e/test_multinode.py does): write ->
    both host files, and write -> lease with both dnsmasq on the network."""
    from mdtool.registry import open_registry
    from mdtool.registry.db import with_database
    admin = _pg_admin_url()
    if admin is None or shutil.which("unshare") is None or shutil.which("nsenter") is None:
        return {"skipped": "needs a PostgreSQL server (MDTOOL_BENCH_PG), unshare and nsenter"}
    db = f"mdtool_bench_{h.tag}"
    _pg_admin(admin, f'CREATE DATABASE "{db}"')
    h.cleanup.add("bench database", lambda: _pg_admin(admin, f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
    url = with_database(admin, db)
    os.makedirs("/run/netns", exist_ok=True)
    holder = h.spawn(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                      f"mount -t tmpfs mdtool-bench-{h.tag} /run/netns && exec sleep 3600"])
    wait_for(lambda: Path(f"/proc/{holder.pid}/cmdline").read_bytes().startswith(b"sleep"), 10,
             "the mount-namespace holder")
    reg = open_registry(url)
    h.cleanup.add("node registry (PostgreSQL)", reg.engine.dispose)
    net = reg.create_network(h.name("bn"))
    reg.create_subnet(net.id, "10.159.0.0/24", no_gateway=True)
    nodes = []
    for label, prefix in (("a", []), ("b", ["nsenter", f"--mount=/proc/{holder.pid}/ns/mnt", "--"])):
        sd = h.state_dir(f"node-{label}")
        # one host network stack: each node's metadata service on its own Unix socket only
        env = {k: v for k, v in h.env(sd).items()
               if k not in ("MDTOOL_METADATA_LISTEN_PORT", "MDTOOL_NOVA_METADATA_URL")}
        env.update(MDTOOL_DB=url, MDTOOL_HOST=f"bench-{h.tag}-{label}")
        reg.serve_network(net.id, env["MDTOOL_HOST"])
        log_path = sd / "node.log"
        out_f = open(log_path, "ab")
        proc = subprocess.Popen(prefix + [sys.executable, "-m", "mdtool", "node", "run",
                                          "--resync-interval", "3600"],
                                stdin=subprocess.DEVNULL, stdout=out_f, stderr=subprocess.STDOUT,
                                env=env, start_new_session=True)
        out_f.close()

        def teardown(sd=sd, proc=proc, prefix=prefix):
            stop(proc)
            for pidname in ("proxy", "agent", "metadata"):
                _kill_pidfile(sd / f"{pidname}.pid", sd)
            _kill_pidfile(sd / "dhcp" / net.id / "pid", sd)
            subprocess.run(prefix + ["ip", "netns", "del", "qdhcp-" + net.id],
                           capture_output=True, timeout=30)
        h.cleanup.add(f"node {label}", teardown)
        nodes.append((sd, proc, log_path))
    for sd, proc, log_path in nodes:
        wait_for(lambda: proc.poll() is not None or _resync_seconds(log_path, 0)[0], 300,
                 "node run's first resync")
        if proc.poll() is not None:
            raise RuntimeError(f"node run exited ({proc.returncode}); see {log_path}")
    h.cleanup.add("bridge", lambda: delete_link(net.bridge))
    for link in json.loads(ip("-j", "link", "show").stdout or "[]"):  # both DHCP veths
        if link.get("ifalias", "") in (f"mdtool:dhcp:{net.id}",):
            h.cleanup.add("veth", lambda n=link["ifname"]: delete_link(n))
    files = [sd / "dhcp" / net.id / "host" for sd, _, _ in nodes]
    first, inst_ns, hook = _lease_instance(h, reg, net.id, nodes[0][0], files)
    h.drop_port_security_table(net.id)  # its registry is on PostgreSQL, not in a state dir
    h.cli(nodes[0][0], "--db", url, "port-plug", first.id, inst_ns)
    res = _lease_samples(reg, net.id, first, inst_ns, hook, files, sizes.node_samples)
    log(f"  two nodes (PostgreSQL): port-create -> both dnsmasq p50 {res['reload_p50_ms']:.0f} ms,"
        f" p99 {res['reload_p99_ms']:.0f} ms; -> lease p50 {res['p50_ms']:.0f} ms, "
        f"p99 {res['p99_ms']:.0f} ms")
    return res


def _unix_answers(path: Path) -> bool:
    def unix():
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(str(path))
        return s
    try:
        return http_get(unix, "/", {})[0] > 0
    except OSError:
        return False


# 8. boot storm -----------------------------------------------------------------------------

STORM_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ8dJmvU3mRpfm0b2xWq1Qk9Qm0Z0qVq3Y6xH2y8d1xN storm"
# What curl prints per request (storm-requests.curl.j2); _storm_boot reads it in this order.
STORM_WRITE_OUT = (r"%{http_code} %{exitcode} %{num_connects} %{time_connect} "
                   r"%{time_starttransfer} %{time_total}\n")


def recorded_requests() -> list[tuple[str, str]]:
    """What cloud-init 22.4 asks on one boot (see cloudinit-22.4-requests.txt)."""
    text = (Path(__file__).parent / "cloudinit-22.4-requests.txt").read_text()
    return [tuple(line.split(" ", 1)) for line in text.splitlines()
            if line.strip() and not line.startswith("#")]


@dataclass
class StormSide:
    """One side of the storm, set up and serving: its state dir, networks, instance
    namespaces (plugged, no address yet), the boot script, and what serves the path."""
    kind: str
    sd: Path
    nets: list
    instances: list  # (namespace, port, network)
    script: Path
    haproxies: list

    def pids(self) -> dict[str, list[int]]:
        """The processes of this side by role: what serves metadata, and the DHCP servers."""
        def pidfile(path: Path) -> list[int]:
            try:
                return [int(path.read_text().split()[0])]
            except (OSError, ValueError, IndexError):
                return []
        roles = {"proxy": pidfile(self.sd / "proxy.pid") if self.kind == "mdtool" else [],
                 "haproxy": [p.pid for p in self.haproxies if p.poll() is None],
                 "agent": pidfile(self.sd / "agent.pid"),
                 "metadata": pidfile(self.sd / "metadata.pid"),
                 "dnsmasq": [pid for n in self.nets for pid in pidfile(self.sd / "dhcp" / n.id / "pid")]}
        return {k: v for k, v in roles.items() if v}


def _storm_side(h: Harness, kind: str, sizes: Sizes, requests: list, octet: int) -> StormSide:
    """Bring up sizes.storm_networks x sizes.storm_instances instances on one node, each
    namespace plugged, ready to boot. kind: mdtool (`enable-isolated-metadata`, defaults:
    one proxy, fast path) or neutron (the same with metadata_backend = nova, mdtool's proxy
    stopped and one haproxy per network -> agent -> metadata: Neutron's shape)."""
    from mdtool import plugs
    from mdtool.config import Config
    from mdtool.registry import open_registry
    from mdtool.templates import render
    sd = h.state_dir(f"storm-{kind}")
    reg = open_registry(f"sqlite:///{sd}/mdtool.db")
    nets, instances = [], []
    for i in range(sizes.storm_networks):
        n = reg.create_network(h.name("sn"))
        reg.create_subnet(n.id, f"10.{octet}.{i}.0/24", no_gateway=True)
        nets.append(n)
        for _ in range(sizes.storm_instances):
            # What cloud-init reads must be there: a 404 for user-data or keys is a failure here.
            vm = reg.create_instance(h.name("sv"), user_data=b"#cloud-config\n", key_name="storm",
                                     public_key=STORM_KEY)
            port = reg.create_port(n.id, device_id=vm.id)
            instances.append((h.name("si"), port, n))
    reg.engine.dispose()
    side = StormSide(kind, sd, nets, instances, sd / "boot.sh", [])

    def teardown():
        _teardown_networks(sd, nets)
        for ns, port, _ in instances:
            delete_netns(ns)
            delete_link("tap" + port.id[:11])
    h.cleanup.add(f"storm {kind}", teardown)
    # mdtool: the defaults (metadata_backend = local: the proxy answers in-process)
    env = {"MDTOOL_METADATA_BACKEND": "local" if kind == "mdtool" else "nova"}
    h.cli(sd, "enable-isolated-metadata", "--all", timeout=900, env=env)
    if kind == "mdtool":  # the proxy says which path it answers from when it starts
        wait_for(lambda: "metadata proxy started" in _text(sd / "log" / "proxy.log"), 20,
                 "the storm's mdtool proxy to start")
        if "(metadata_backend = local)" not in _text(sd / "log" / "proxy.log"):
            raise RuntimeError(f"the storm's mdtool proxy is not on the fast path; see {sd}/log")
    if kind == "neutron":  # Neutron's shape: one haproxy per network in front of the agent
        _kill_pidfile(sd / "proxy.pid", sd)
        for n in nets:
            ns = "qdhcp-" + n.id
            wait_for(lambda ns=ns: not listener_pids(ns), 20, "mdtool's proxy to let go of :80")
            side.haproxies.append(haproxy(
                h, ns, NEUTRON_HAPROXY.format(pidfile=sd / f"haproxy-{n.id}.pid",
                                              bind=METADATA_IP, socket=sd / "metadata_proxy",
                                              network_id=n.id), sd / f"haproxy-{n.id}.cfg"))
    config = Config(state_dir=str(sd), config_file="/dev/null")
    fresh = open_registry(f"sqlite:///{sd}/mdtool.db")
    from mdtool.netns.ip_lib import Netlink
    with Netlink() as nl:
        for ns, port, n in instances:
            plugs.plug(config, nl, port, fresh.get_network(n.id), ns)
    fresh.engine.dispose()
    for n in nets:
        wait_for(lambda ns="qdhcp-" + n.id: listener_pids(ns), 30, f"the {kind} proxy to listen")
    hook = sd / "udhcpc.sh"
    hook.write_text(render("bench/storm-udhcpc.sh.j2"))
    hook.chmod(0o755)
    side.script.write_text(render("bench/storm-boot.sh.j2", interface="eth0", hook=hook))
    side.script.chmod(0o755)
    for d in ("fifo", "requests"):
        (sd / d).mkdir(mode=0o700)
    for ns, _, _ in instances:  # each instance's curl waits on a FIFO of its own
        os.mkfifo(sd / "fifo" / ns, 0o600)
        (sd / "requests" / ns).write_text(render(
            "bench/storm-requests.curl.j2", requests=requests, address=METADATA_IP,
            write_out=STORM_WRITE_OUT, connect_timeout=10, max_time=30,
            gate=sd / "fifo" / ns))
    return side


def _storm_boot(text: str, started: float) -> dict:
    """One instance's boot from its script's output (see storm-boot.sh.j2)."""
    marks, reqs, failed = {}, [], []
    for line in text.splitlines():
        word, _, rest = line.partition(" ")
        if word in ("start", "lease", "nolease", "done"):
            marks[word] = float(rest)
            continue
        code, exitcode, connects, connect, first_byte, total = line.split()
        reqs.append({"status": int(code), "exit": int(exitcode), "connects": int(connects),
                     "connect_ms": float(connect) * 1000.0,
                     "first_byte_ms": float(first_byte) * 1000.0,
                     "ms": float(total) * 1000.0})
        if code != "200" or exitcode != "0":
            failed.append(f"request {len(reqs)}: status {code}, curl exit {exitcode}")
    if "lease" not in marks:
        failed.append("no lease")
    elif "done" not in marks:
        failed.append("did not finish")
    start = marks.get("start", started)
    return {"spawn_s": start - started,
            "lease_s": marks["lease"] - start if "lease" in marks else None,
            "requests_s": marks["done"] - marks["lease"] if {"lease", "done"} <= set(marks) else None,
            "requests": reqs, "failed": failed}


def _machine_busy_seconds() -> float:
    """CPU seconds every core of the machine spent busy so far (/proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _on_cpu_seconds(pid: int) -> float:
    """Time ``pid`` has spent on a CPU so far (/proc/PID/schedstat: nanoseconds, where
    /proc/PID/stat counts 10 ms ticks)."""
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0]) / 1e9


def _waiting_at_barrier(pid: int, curl: int) -> bool:
    """The boot script ``pid`` sleeps (reading the barrier, after its "ready") and its curl
    waits for a writer of its FIFO: libraries loaded, its requests read and parsed."""
    try:
        return (Path(f"/proc/{curl}/wchan").read_text() == "wait_for_partner"
                and process_state(pid) == "S")
    except OSError:
        return False


def _pin(pid: int, cpus: set[int]) -> None:
    """Every thread of ``pid`` on ``cpus`` only."""
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            os.sched_setaffinity(int(task), cpus)
        except (ProcessLookupError, OSError):
            pass  # a thread that ended meanwhile


def _storm_round(side: StormSide, log=print, pin: bool = False) -> dict:
    """Every instance of ``side`` boots at once; wall times, the requests, and where the CPU
    went: what serves the path, dnsmasq, the instances' clients in the timed window
    (udhcpc and its hook, curl's requests, the script: each boot's own rusage less what its
    script and curl spent before the barrier), the whole machine.

    Each instance's script starts in its namespace before the barrier (``ip netns exec``,
    bash, curl loaded with its requests and waiting on the instance's FIFO), its address
    flushed: a guest whose kernel and programs are up. The boot starts for all at once
    when the harness closes the pipe every script reads."""
    pids = side.pids()
    for ns, _, _ in side.instances:  # a booting guest has no address yet
        ip("-4", "address", "flush", "dev", "eth0", netns=ns)

    def cpu() -> dict[str, float]:
        out = {}
        for role, ps in pids.items():
            total = 0.0
            for pid in ps:
                try:
                    total += _cpu_seconds(pid)
                except OSError:
                    raise RuntimeError(f"the storm's {role} (pid {pid}) went away; see {side.sd}")
            out[role] = total
        return out
    env = {**os.environ, "LC_ALL": "C"}
    everyone = os.sched_getaffinity(0)
    serving_cpus = {min(everyone)}
    client_cpus = everyone - serving_cpus
    taskset = []
    if pin:  # the network node's processes on one core, the instances on the others
        for ps in pids.values():
            for pid in ps:
                _pin(pid, serving_cpus)
        taskset = ["taskset", "-c", ",".join(map(str, sorted(client_cpus)))]
    procs = []
    gate, release = os.pipe()
    try:
        try:
            for ns, _, _ in side.instances:
                procs.append(subprocess.Popen(
                    taskset + ["ip", "netns", "exec", ns, "/bin/bash", str(side.script),
                     str(side.sd / "fifo" / ns), str(side.sd / "requests" / ns)],
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=gate, env=env,
                    start_new_session=True))
        finally:
            os.close(gate)
        curls = {}
        for p in procs:
            word, _, curl = p.stdout.readline().decode(errors="replace").partition(" ")
            if word != "ready":
                raise RuntimeError(f"a storm boot script did not start: "
                                   f"{p.stderr.read().decode(errors='replace')[-300:]}")
            curls[p.pid] = int(curl)
        wait_for(lambda: all(_waiting_at_barrier(pid, curl) for pid, curl in curls.items()),
                 60, "every instance's script to wait at the barrier")
        before_barrier = {pid: _on_cpu_seconds(pid) + _on_cpu_seconds(curl)
                          for pid, curl in curls.items()}
        before, busy0 = cpu(), _machine_busy_seconds()
        started, t0 = time.time(), time.perf_counter()
        os.close(release)  # the barrier: every instance boots now
        release = None
        boots, client_cpu = [], 0.0
        for p in procs:
            out, err = p.stdout.read(), p.stderr.read()
            _, status, usage = os.wait4(p.pid, 0)
            p.returncode = os.waitstatus_to_exitcode(status)
            client_cpu += usage.ru_utime + usage.ru_stime - before_barrier[p.pid]
            boot = _storm_boot(out.decode(errors="replace"), started)
            if err.strip():
                boot["failed"].append(err.decode(errors="replace").strip()[-200:])
            boots.append(boot)
        total = time.perf_counter() - t0
    finally:
        if release is not None:
            os.close(release)
        if pin:
            for ps in pids.values():
                for pid in ps:
                    _pin(pid, everyone)
        for p in procs:
            if p.returncode is None:  # a failed round: end what it started
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait()
            p.stdout.close()
            p.stderr.close()
    after, busy1 = cpu(), _machine_busy_seconds()
    reqs = [r for b in boots for r in b["requests"]]
    lat = [r["ms"] for r in reqs]
    failures = [f for b in boots for f in b["failed"]]
    served = [r["ms"] - r["connect_ms"] for r in reqs]  # connected -> last byte

    def p50(values):
        values = [v for v in values if v is not None]
        return _pct(values, 50) if values else None
    cpu_s = {role: after[role] - before[role] for role in pids}
    cpu_s["clients"] = client_cpu
    cpu_s["machine"] = busy1 - busy0
    return {"seconds_until_all_done": total, "requests": len(reqs),
            "p50_ms": _pct(lat, 50) if lat else None, "p99_ms": _pct(lat, 99) if lat else None,
            "served_p50_ms": p50(served), "served_p99_ms": _pct(served, 99) if served else None,
            "connects_per_request": (sum(r["connects"] for r in reqs) / len(reqs)) if reqs else None,
            "spawn_s_max": max(b["spawn_s"] for b in boots),
            "lease_s_p50": p50([b["lease_s"] for b in boots]),
            "requests_s_p50": p50([b["requests_s"] for b in boots]),
            "requests_s_max": max((b["requests_s"] or 0.0) for b in boots),
            "cpu_s": cpu_s, "failures": len(failures), "failure_examples": failures[:5]}


STORM_SERVING = ("proxy", "haproxy", "agent", "metadata")  # the metadata path's processes
STORM_LABELS = {"mdtool": "mdtool (one proxy, fast path)",
                "neutron": "Neutron's shape (haproxy per network -> agent -> metadata)"}


# Set (to anything): the storm's rounds run the network node's processes (what serves the
# path, dnsmasq) on the first CPU and the instances' clients on the others.
STORM_PIN_ENV = "MDTOOL_BENCH_STORM_PIN"


def storm(h: Harness, sizes: Sizes, log=print) -> dict:
    """The boot storm: every instance of 10 networks x 10 boots at once (lease, then
    cloud-init's requests over curl), through mdtool (fast path) and through Neutron's shape.
    Both sides are set up first; then rounds alternate between them, so both meet the same
    machine; each side's figure is its median round."""
    requests = recorded_requests()
    env_port = h.metadata_port
    out = {"networks": sizes.storm_networks, "per_network": sizes.storm_instances,
           "requests_per_boot": len(requests), "rounds": sizes.storm_rounds,
           "pinned": bool(os.environ.get(STORM_PIN_ENV)),
           "client": "per instance, started before the barrier: bash and curl with its "
                     "requests parsed; timed: udhcpc + its hook (one ip run), then curl's "
                     "requests, a connection each",
           "results": {}}
    sides = {}
    try:
        for octet, kind in enumerate(("mdtool", "neutron"), start=230):
            h.metadata_port = _free_port_other(env_port)  # each side's own metadata service
            sides[kind] = _storm_side(h, kind, sizes, requests, octet)
    finally:
        h.metadata_port = env_port
    rounds: dict[str, list] = {kind: [] for kind in sides}
    for i in range(sizes.storm_rounds):
        order = ("mdtool", "neutron") if i % 2 == 0 else ("neutron", "mdtool")
        for kind in order:
            r = _storm_round(sides[kind], log, pin=out["pinned"])
            rounds[kind].append(r)
            for f in r["failure_examples"][:3]:
                log(f"    failed: {f}")
            log(f"  round {i + 1} {kind}: {len(sides[kind].instances)} instances done in "
                f"{r['seconds_until_all_done']:.2f} s; requests p50 {r['p50_ms'] or 0:.1f} ms "
                f"p99 {r['p99_ms'] or 0:.1f} ms; {r['failures']} failures")
    for kind, rs in rounds.items():
        median = sorted(rs, key=lambda r: r["seconds_until_all_done"])[(len(rs) - 1) // 2]
        out["results"][kind] = {**median, "instances": len(sides[kind].instances),
                                "failures": sum(r["failures"] for r in rs),
                                "requests_all_rounds": sum(r["requests"] for r in rs),
                                "seconds_by_round": [r["seconds_until_all_done"] for r in rs],
                                "serving_cpu_s_all_rounds": sum(
                                    v for r in rs for role, v in r["cpu_s"].items()
                                    if role in STORM_SERVING)}
    m, n = out["results"]["mdtool"], out["results"]["neutron"]
    out["neutron_over_mdtool"] = n["seconds_until_all_done"] / m["seconds_until_all_done"]
    # what the node spends on the metadata path, whoever else shares its cores
    out["serving_cpu_neutron_over_mdtool"] = (n["serving_cpu_s_all_rounds"] /
                                              max(m["serving_cpu_s_all_rounds"], 0.01))
    # per boot: what the node spends serving one (all rounds), what the instance's own
    # client spends (median round), and the request phase's ratio (p50 of the boots)
    for x in (m, n):
        x["serving_cpu_ms_per_boot"] = (1000.0 * x["serving_cpu_s_all_rounds"] /
                                        (x["instances"] * sizes.storm_rounds))
        x["client_cpu_ms_per_boot"] = 1000.0 * x["cpu_s"]["clients"] / x["instances"]
    if m["requests_s_p50"] and n["requests_s_p50"]:
        out["requests_phase_neutron_over_mdtool"] = n["requests_s_p50"] / m["requests_s_p50"]
    return out


# 9. scale on one node ------------------------------------------------------------------------

# What 1,000 namespaces, bridges, veths and dnsmasq processes press against (recorded with the
# results, so a run that fails on a limit says which).
KERNEL_LIMITS = ("kernel.pid_max", "kernel.threads-max", "fs.file-max",
                 "fs.inotify.max_user_instances", "net.ipv4.neigh.default.gc_thresh3",
                 "net.ipv6.neigh.default.gc_thresh3", "net.core.somaxconn")


def kernel_limits() -> dict:
    import resource
    out: dict = {}
    for key in KERNEL_LIMITS:
        try:
            out[key] = int(Path("/proc/sys/" + key.replace(".", "/")).read_text().split()[0])
        except (OSError, ValueError, IndexError):
            out[key] = None
    out["RLIMIT_NOFILE"] = list(resource.getrlimit(resource.RLIMIT_NOFILE))
    out["processes"] = sum(1 for d in os.listdir("/proc") if d.isdigit())
    return out


def _pidfile_pid(path: Path) -> int | None:
    try:
        pid = int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if os.path.exists(f"/proc/{pid}") else None


def _cpu_of(pids: list[int]) -> dict[int, float]:
    out = {}
    for pid in pids:
        try:
            out[pid] = _cpu_seconds(pid)
        except (OSError, IndexError, ValueError):
            pass  # gone: counted as nothing
    return out


def _idle_cpu(pids: dict[str, list[int]], seconds: float) -> dict:
    """CPU of each group of processes over ``seconds`` of doing nothing, in % of one core
    (utime + stime from /proc/PID/stat, before and after)."""
    before = {g: _cpu_of(p) for g, p in pids.items()}
    t0 = time.monotonic()
    time.sleep(seconds)
    after = {g: _cpu_of(p) for g, p in pids.items()}
    wall = time.monotonic() - t0
    by = {g: 100.0 * sum(after[g].get(pid, b) - b for pid, b in before[g].items()) / wall
          for g in pids}
    return {"seconds": round(wall, 2), "percent_of_one_core": sum(by.values()),
            "by_process": {g: round(v, 3) for g, v in by.items()},
            "processes": sum(len(p) for p in pids.values())}


def _served_processes(sd: Path, nets) -> dict[str, list[int]]:
    """The pids of what serves the networks of state dir ``sd``: the daemons and every dnsmasq."""
    pids: dict[str, list[int]] = {}
    for role in ("node", "proxy", "agent", "metadata"):
        pid = _pidfile_pid(sd / f"{role}.pid")
        if pid is not None:
            pids[role] = [pid]
    pids["dnsmasq"] = [pid for n in nets
                       if (pid := _pidfile_pid(sd / "dhcp" / n.id / "pid")) is not None]
    return pids


def _leftovers(sd: Path, nets) -> dict:
    """What `disable --all` should have removed and did not."""
    procs = _served_processes(sd, nets)
    return {"namespaces": sum(os.path.exists(f"/run/netns/qdhcp-{n.id}") for n in nets),
            "dhcp_dirs": sum((sd / "dhcp" / n.id).exists() for n in nets),
            "processes": sum(len(p) for p in procs.values())}


def scale(h: Harness, sizes: Sizes, log=print) -> dict:
    """One node, ``sizes.scale_networks`` networks: `enable-isolated-metadata --all` from
    nothing (namespaces, DHCP ports, dnsmasq, metadata, agent, one proxy), the no-change
    re-run, the proxy's memory, `node run`'s no-change resync, the idle CPU of every mdtool
    process and dnsmasq, then `disable-isolated-metadata --all`."""
    with _own_metadata_port(h):
        return _scale(h, sizes, log)


def _scale(h: Harness, sizes: Sizes, log) -> dict:
    sd = h.state_dir("scale")
    out: dict = {"networks": sizes.scale_networks, "limits": kernel_limits()}
    nets = _networks(h, sd, sizes.scale_networks, "bz", 100)

    def timed(label: str, *args: str) -> dict:
        r = h.cli(sd, *args, timeout=3600, check=False)
        res = {"seconds": r.seconds, "peak_rss_kb": r.maxrss_kb, "failed": _failures(r)}
        for f in res["failed"][:5]:
            log(f"  FAILED {f}")
        log(f"  {label}: {r.seconds:.2f} s ({r.seconds / len(nets) * 1000:.0f} ms a network), "
            f"peak RSS {r.maxrss_kb / 1024:.0f} MB, {len(res['failed'])} failed")
        return res

    out["enable"] = timed(f"enable --all, {len(nets)} new networks",
                          "enable-isolated-metadata", "--all")
    # what the daemons spent while the networks came up (they serve, so they follow)
    out["daemon_cpu_seconds_during_enable"] = {
        role: round(sum(_cpu_of(p).values()), 2)
        for role, p in _served_processes(sd, nets).items() if role != "dnsmasq"}
    log("  daemon CPU during enable: " + ", ".join(
        f"{k} {v:.1f} s" for k, v in out["daemon_cpu_seconds_during_enable"].items()))
    out["rerun"] = timed("enable --all again, nothing to change",
                         "enable-isolated-metadata", "--all")
    proxy = _pidfile_pid(sd / "proxy.pid")
    if proxy is None:
        raise RuntimeError(f"no proxy running after enable; see {sd}/log")
    out["proxy_memory_kb"] = memory_kb(proxy)
    out["proxy_listening"] = sum(bool(listener_pids("qdhcp-" + n.id) & {proxy})
                                 for n in (nets[:: max(1, len(nets) // 20)]))
    log(f"  proxy serving {len(nets)} networks: PSS {out['proxy_memory_kb']['pss'] / 1024:.1f} MB,"
        f" RSS {out['proxy_memory_kb']['rss'] / 1024:.1f} MB")
    # node run over it all: its first resync changes nothing; then everything idles
    node_log = sd / "node.log"
    node = h.mdtool_daemon(sd, "node", "run", "--resync-interval", "3600", log_name="node")
    wait_for(lambda: node.poll() is not None or _resync_seconds(node_log, 0)[0], 1800,
             "node run's first resync")
    if node.poll() is not None:
        raise RuntimeError(f"node run exited ({node.returncode}); see {node_log}")
    count, seconds = _resync_seconds(node_log, 0)
    out["node_resync"] = {"networks": count, "seconds": seconds,
                          "cpu_seconds": round(_cpu_seconds(node.pid), 2)}
    log(f"  node run's no-change resync over {count} networks: {seconds:.2f} s "
        f"({out['node_resync']['cpu_seconds']:.1f} CPU s since its start)")
    pids = _served_processes(sd, nets)
    pids["node"] = [node.pid]
    out["idle"] = _idle_cpu(pids, sizes.scale_idle_seconds)
    log(f"  idle over {out['idle']['seconds']:.0f} s: {out['idle']['percent_of_one_core']:.2f} % "
        f"of one core ({out['idle']['processes']} processes: " + ", ".join(
            f"{k} {v:.2f} %" for k, v in out["idle"]["by_process"].items()) + ")")
    stop(node)  # SIGTERM: it leaves everything serving
    out["disable"] = timed(f"disable --all, {len(nets)} networks",
                           "disable-isolated-metadata", "--all")
    out["left_after_disable"] = _leftovers(sd, nets)
    if any(out["left_after_disable"].values()):
        log(f"  left after disable: {out['left_after_disable']}")
    return out
