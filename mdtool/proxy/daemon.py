"""The proxy daemon: one process, one listener set per served DHCP namespace.

Every ``poll_interval`` the daemon compares what it serves with what should be served:
the networks asked for (or every ``qdhcp-*`` namespace), each on 169.254.169.254:80 and,
when the namespace holds it, [fe80::a9fe:a9fe%<tap>]:80. A namespace that is not there
yet, or lacks the address, is tried again on the next round; a namespace that went away
(or was recreated under the same name) is dropped (and served anew).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import resource
import signal
import socket
import time
from dataclasses import dataclass, field

from mdtool.config import Config
from mdtool.http.client import UpstreamPool
from mdtool.http.server import (OPEN_CONNECTIONS, HttpServer, Limits, release_body_memory,
                                run_daemon)
from mdtool.model import METADATA_IPV4, METADATA_IPV6
from mdtool.netns import switch
from mdtool.proxy.handler import LATENCY_BUCKETS, ProxyHandler
from mdtool.proxy.ratelimit import RateLimiter, RateLimits
from mdtool.proxy.tokens import TokenSealer, derive_key

log = logging.getLogger("mdtool.proxy")

NETNS_PREFIX = "qdhcp-"
DEFAULT_PORT = 80
MAX_CONNECTIONS_PER_NETWORK = 1024  # Neutron's haproxy: maxconn 1024 per network
V6_CHECK_SECONDS = 5.0  # first wait between looks for fe80::a9fe:a9fe once IPv4 is served
V6_CHECK_MAX_SECONDS = 60.0  # ... doubling up to this while the namespace still lacks it
SETTLED_SECONDS = 1.0  # a directory changed more recently than this: a full round
FD_RESERVE = 64  # descriptors kept for everything but client connections (logs, netns, ...)
EMFILE_REPORT_EVERY = 60.0  # seconds between two reports of running out of descriptors


def raise_nofile_limit() -> tuple[int, int]:
    """RLIMIT_NOFILE's soft limit up to the hard one (systemd and shells start at 1024);
    returns (before, now)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            return soft, soft
        return soft, hard
    return soft, soft


def connection_budget(nofile: int, pool_size: int, listeners: int) -> int:
    """Client connections the process may hold without accept() ever meeting EMFILE."""
    return max(16, nofile - pool_size - listeners - FD_RESERVE)


def limits_from_config(config: Config) -> Limits:
    sect = "metadata_haproxy"
    return Limits(
        head_timeout=config.get("timeout_http_request", sect),
        keepalive_timeout=config.get("timeout_http_keep_alive", sect),
        max_header_bytes=config.get("max_header_bytes", sect),
        max_header_count=config.get("max_header_count", sect),
        max_body_bytes=config.get("max_body_bytes", sect),
        max_connections_per_source=config.get("max_connections_per_source", sect),
        max_buffered_body_bytes=config.get("max_buffered_body_bytes", sect),
        # The upstream timeout answers 504 first; this only catches a wedged handler.
        handler_timeout=config.get("timeout_server", sect) + 5.0,
        max_connections=MAX_CONNECTIONS_PER_NETWORK,
    )


def pool_from_config(config: Config, size: int = 128):
    """The proxy's upstream: the agent's Unix socket, or in fast-path mode the agent's and
    the metadata service's code in this process (mdtool/fastpath.py)."""
    if config.fast_path:
        from mdtool.fastpath import LocalBackend
        return LocalBackend(config)
    timeout = config.get("timeout_server", "metadata_haproxy")
    return UpstreamPool("unix:" + str(config.agent_socket), size=size,
                        connect_timeout=min(5.0, timeout), read_timeout=timeout)


@dataclass
class _Site:
    """What is served for one network."""

    network_id: str
    netns: str
    inode: int | None
    server: HttpServer
    v4_key: int | None = None
    v6_key: int | None = None
    v6_ifname: str | None = None
    reported: set = field(default_factory=set)  # waiting messages already logged
    limiter: RateLimiter | None = None
    v6_due: float = 0.0  # loop time of the next look for fe80::a9fe:a9fe
    v6_wait: float = V6_CHECK_SECONDS  # from that look to the one after (doubles)

    @property
    def listening(self) -> int:
        return (self.v4_key is not None) + (self.v6_key is not None)

    @property
    def handler(self) -> ProxyHandler:
        return self.server.handler  # type: ignore[return-value]


class ProxyDaemon:
    """Serves the networks asked for (None: every ``qdhcp-*`` namespace) until stopped."""

    def __init__(self, pool: UpstreamPool, limits: Limits, network_ids: list[str] | None = None,
                 *, port: int = DEFAULT_PORT, poll_interval: float = 1.0,
                 drain_timeout: float = 5.0, netns_prefix: str = NETNS_PREFIX,
                 rate_limits: RateLimits | None = None, served_dir: str | None = None,
                 sealer: TokenSealer | None = None, tokens_required: bool = False,
                 hop_limit: int = 1):
        for net_id in network_ids or ():
            switch.netns_path(netns_prefix + net_id)  # NotFound (exit 2) for a bad id
        self.pool = pool
        self.rate_limits = rate_limits
        self.token_args = dict(sealer=sealer, tokens_required=tokens_required,
                               hop_limit=hop_limit)
        self.netns_prefix = netns_prefix
        # Following namespaces, serve only the networks this node's state dir serves
        # (<state_dir>/dhcp/<id>), so two mdtool nodes on one host never steal each other's.
        self.served_dir = served_dir
        self.limits = limits
        self.network_ids = list(dict.fromkeys(network_ids)) if network_ids else None
        self.port = port
        self.poll_interval = poll_interval
        self.drain_timeout = drain_timeout
        self.sites: dict[str, _Site] = {}
        # Counters of sites no longer served, so metrics never go backwards.
        self._retired_counts: dict[tuple[str, int], int] = {}
        self._retired_durations: dict[str, float] = {}
        self._retired_latency = [0] * (len(LATENCY_BUCKETS) + 1)
        self._missing_reported: set[str] = set()
        self._settled: tuple[int, ...] | None = None  # _stamp() after a complete round
        self.nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        self._emfile_last = -EMFILE_REPORT_EVERY
        self._emfile_suppressed = 0
        self._v6_wake = False  # SIGUSR1: every site lacking IPv6 looks in the next round

    def wake_v6(self) -> None:
        """Make every site lacking fe80::a9fe:a9fe due for a look in the next round
        (SIGUSR1: enable sends it after adding that address to a DHCP tap)."""
        self._v6_wake = True

    # what should be served -----------------------------------------------------------

    def wanted(self) -> list[str]:
        if self.network_ids is not None:
            return self.network_ids
        prefix = self.netns_prefix
        ids = [name[len(prefix):] for name in switch.list_netns()
               if name.startswith(prefix) and len(name) > len(prefix)]
        if self.served_dir is not None:
            ids = [i for i in ids if os.path.isdir(os.path.join(self.served_dir, i))]
        return ids

    # one round -------------------------------------------------------------------------

    def _stamp(self) -> tuple[int, ...] | None:
        """When namespaces or served networks last came or went: the mtimes of the
        namespace dir and of the served dir (None when unreadable)."""
        try:
            return tuple(os.stat(d).st_mtime_ns for d in (switch.NETNS_DIR, self.served_dir)
                         if d is not None)
        except OSError:
            return None

    async def reconcile(self) -> None:
        now = asyncio.get_running_loop().time()
        stamp = self._stamp()
        if (stamp is not None and stamp == self._settled
                and time.time_ns() - max(stamp) > SETTLED_SECONDS * 1e9):
            # Nothing came or went since a round that left every network served (a
            # timestamp older than a second cannot hide a newer change): no look at each
            # namespace, 1,000 stat calls a second at 1,000 networks.
            await self._tend(list(self.sites.values()), now)
            return
        self._settled = None
        wanted = self.wanted()
        wanted_set = set(wanted)
        for net_id, site in list(self.sites.items()):
            inode = switch.netns_inode(site.netns)
            if net_id not in wanted_set:
                await self._drop(site, "no longer asked for")
            elif inode is None:
                await self._drop(site, f"namespace {site.netns} is gone")
            elif inode != site.inode:
                await self._drop(site, f"namespace {site.netns} was recreated")
        for net_id in wanted:
            netns = self.netns_prefix + net_id
            site = self.sites.get(net_id)
            if site is None:
                inode = switch.netns_inode(netns)
                if inode is None:
                    if net_id not in self._missing_reported:
                        self._missing_reported.add(net_id)
                        log.info("network %s: waiting for namespace %s", net_id, netns)
                    continue
                self._missing_reported.discard(net_id)
                limiter = RateLimiter(self.rate_limits) if self.rate_limits else None
                site = _Site(net_id, netns, inode,
                             HttpServer(ProxyHandler(self.pool, net_id, limiter,
                                                     **self.token_args), self.limits),
                             limiter=limiter)
                self.sites[net_id] = site
        await self._tend([self.sites[n] for n in wanted if n in self.sites], now)
        if len(self.sites) == len(wanted) and all(s.v4_key is not None
                                                  for s in self.sites.values()):
            self._settled = stamp

    async def _tend(self, sites: list[_Site], now: float) -> None:
        """Every round, for every site: bind what is missing, prune, log summaries."""
        todo: list[_Site] = []
        v6_wake, self._v6_wake = self._v6_wake, False
        for site in sites:
            # Not listening yet: every round. Most networks never get IPv6: look for it
            # 5 s after the first look, then 10, 20, 40 s, then every 60 s, however often rounds
            # are woken (enable wakes one per network); at once after a SIGUSR1, which
            # whatever adds the address sends. One thread visits every namespace of the round.
            if site.v4_key is None or (site.v6_key is None and (v6_wake or now >= site.v6_due)):
                todo.append(site)
                if site.v4_key is not None:
                    site.v6_wait = min(2 * site.v6_wait, V6_CHECK_MAX_SECONDS)
                site.v6_due = now + site.v6_wait
            if site.limiter is not None:
                site.limiter.prune()
            site.handler.flush_repeats()
        if todo:
            await self._bind_missing(todo)
        release_body_memory()
        OPEN_CONNECTIONS.limit = connection_budget(
            self.nofile, self.pool.size, sum(s.listening for s in self.sites.values()))

    def _out_of_descriptors(self, error: OSError) -> None:
        """EMFILE/ENFILE: one line per EMFILE_REPORT_EVERY, never a traceback per round."""
        now = asyncio.get_running_loop().time()
        if now - self._emfile_last < EMFILE_REPORT_EVERY:
            self._emfile_suppressed += 1
            return
        more = (f"; {self._emfile_suppressed} more times since the last report"
                if self._emfile_suppressed else "")
        self._emfile_last = now
        self._emfile_suppressed = 0
        log.warning("out of file descriptors (%s): %d client connections open, open-file "
                    "limit %d; raise LimitNOFILE%s", error.strerror or error, OPEN_CONNECTIONS.count,
                    self.nofile, more)

    async def _bind_missing(self, sites: list[_Site]) -> None:
        """Bind what each site lacks, in its namespace; all of them from one thread."""
        port = self.port

        def in_netns(site: _Site):
            """Runs inside the namespace: bind what is missing and possible."""
            v4 = v6 = None
            v4_err = v6_err = None
            tap = None
            if site.v4_key is None:
                try:
                    v4 = switch.make_listener(socket.AF_INET, METADATA_IPV4, port)
                except OSError as e:
                    v4_err = e
            if site.v6_key is None:
                tap = switch.ipv6_address_ifname(METADATA_IPV6)
                if tap is not None:
                    try:
                        v6 = switch.make_listener(socket.AF_INET6, METADATA_IPV6, port,
                                                 scope_ifname=tap)
                    except OSError as e:
                        v6_err = e
            return v4, v4_err, v6, v6_err, tap

        results = await asyncio.to_thread(switch.run_in_each_netns, [
            (site.netns, lambda site=site: in_netns(site)) for site in sites])
        for site, (result, error) in zip(sites, results):
            if error is not None:  # namespace vanished between stat and setns, EPERM...
                self._report(site, "setns", f"network {site.network_id}: cannot enter "
                             f"{site.netns}: {error}", logging.WARNING)
                continue
            await self._take(site, *result)

    async def _take(self, site: _Site, v4, v4_err, v6, v6_err, tap) -> None:
        """Serve on the sockets bound for ``site``; report what could not be bound."""
        port = self.port
        if v4 is not None:
            site.v4_key = await site.server.add_socket(v4)
            log.info("serving network %s on %s:%d in %s", site.network_id, METADATA_IPV4,
                     port, site.netns)
        elif v4_err is not None:
            if v4_err.errno == errno.EADDRNOTAVAIL:
                self._report(site, "v4", f"network {site.network_id}: waiting for "
                             f"{METADATA_IPV4} in {site.netns}", logging.INFO)
            else:
                self._report(site, "v4", f"network {site.network_id}: cannot listen on "
                             f"{METADATA_IPV4}:{port}: {v4_err.strerror}", logging.WARNING)
        if v6 is not None:
            site.v6_key = await site.server.add_socket(v6)
            site.v6_ifname = tap
            log.info("serving network %s on [%s%%%s]:%d in %s", site.network_id,
                     METADATA_IPV6, tap, port, site.netns)
        elif v6_err is not None:
            self._report(site, "v6", f"network {site.network_id}: cannot listen on "
                         f"[{METADATA_IPV6}%{tap}]:{port}: {v6_err.strerror}", logging.WARNING)

    @staticmethod
    def _report(site: _Site, what: str, message: str, level: int) -> None:
        if what not in site.reported:
            site.reported.add(what)
            log.log(level, message)

    def totals(self) -> dict[tuple[str, int], int]:
        """Requests answered, by (network id, status), since start."""
        out = dict(self._retired_counts)
        for net, site in self.sites.items():
            for status, n in site.handler.status_counts.items():
                out[(net, status)] = out.get((net, status), 0) + n
        return out

    def latency_counts(self) -> list[int]:
        """Requests per latency bucket (handler.LATENCY_BUCKETS, then +Inf), all networks."""
        out = list(self._retired_latency)
        for site in self.sites.values():
            out = [a + b for a, b in zip(out, site.handler.latency_counts)]
        return out

    def durations(self) -> dict[str, float]:
        out = dict(self._retired_durations)
        for net, site in self.sites.items():
            out[net] = out.get(net, 0.0) + site.handler.duration_sum
        return out

    def _retire(self, site: _Site) -> None:
        h = site.handler
        for status, n in h.status_counts.items():
            key = (site.network_id, status)
            self._retired_counts[key] = self._retired_counts.get(key, 0) + n
        self._retired_latency = [a + b for a, b in zip(self._retired_latency, h.latency_counts)]
        self._retired_durations[site.network_id] = (
            self._retired_durations.get(site.network_id, 0.0) + h.duration_sum)

    async def _drop(self, site: _Site, why: str) -> None:
        self.sites.pop(site.network_id, None)
        site.handler.flush_repeats(everything=True)
        self._retire(site)
        await site.server.close(self.drain_timeout)
        if site.v4_key is not None or site.v6_key is not None:
            log.info("stopped serving network %s: %s", site.network_id, why)

    # lifecycle ---------------------------------------------------------------------------

    async def serve(self, stop: asyncio.Event) -> None:
        """Reconcile every poll_interval until ``stop`` is set, then close everything.

        SIGHUP reconciles at once: enable-isolated-metadata sends it after bringing a
        namespace up, so it need not wait for the next poll (up to a second per network).
        SIGUSR1 does too, and looks for fe80::a9fe:a9fe in every namespace lacking it:
        enable sends it after adding that address (the periodic look backs off to a minute).
        """
        loop = asyncio.get_running_loop()
        wake = asyncio.Event()

        def wake_v6() -> None:
            self.wake_v6()
            wake.set()
        try:
            loop.add_signal_handler(signal.SIGHUP, wake.set)
            loop.add_signal_handler(signal.SIGUSR1, wake_v6)
            hup = True
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread
            hup = False
        try:
            while not stop.is_set():
                wake.clear()
                try:
                    await self.reconcile()
                except OSError as e:
                    if e.errno not in (errno.EMFILE, errno.ENFILE):
                        log.exception("proxy reconcile round failed")
                    else:
                        self._out_of_descriptors(e)
                except Exception:
                    log.exception("proxy reconcile round failed")
                waiters = {asyncio.ensure_future(stop.wait()), asyncio.ensure_future(wake.wait())}
                try:
                    await asyncio.wait(waiters, timeout=self.poll_interval,
                                       return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for w in waiters:
                        w.cancel()
        finally:
            if hup:
                loop.remove_signal_handler(signal.SIGHUP)
                loop.remove_signal_handler(signal.SIGUSR1)
            await self.close()

    async def close(self) -> None:
        sites = list(self.sites.values())
        self.sites.clear()
        for s in sites:
            s.handler.flush_repeats(everything=True)
        await asyncio.gather(*(s.server.close(self.drain_timeout) for s in sites),
                             return_exceptions=True)
        for s in sites:
            if s.v4_key is not None or s.v6_key is not None:
                log.info("stopped serving network %s: shutting down", s.network_id)
        await self.pool.close()


def _setup_logging(config: Config, verbose: int | None = None) -> None:
    from mdtool import logs
    logs.setup(config, "proxy", verbose)


def run(config: Config, network_ids: list[str] | None = None, *, port: int = DEFAULT_PORT,
        poll_interval: float = 1.0, netns_prefix: str = NETNS_PREFIX,
        verbose: int | None = None) -> int:
    """Run the proxy in the foreground until SIGTERM/SIGINT; returns the exit code (0)."""
    _setup_logging(config, verbose)
    before, nofile = raise_nofile_limit()

    async def main(stop: asyncio.Event) -> int:
        pool = pool_from_config(config)
        if hasattr(pool, "open"):
            await pool.open(stop)
        daemon = ProxyDaemon(pool, limits_from_config(config), network_ids,
                             port=port, poll_interval=poll_interval,
                             netns_prefix=netns_prefix,
                             rate_limits=RateLimits.from_config(config),
                             served_dir=str(config.state_dir / "dhcp"),
                             sealer=TokenSealer(derive_key(config.shared_secret())),
                             tokens_required=config.get("http_tokens") == "required",
                             hop_limit=config.get("http_put_response_hop_limit"))
        what = (", ".join(network_ids) if network_ids else
                f"every {netns_prefix}* namespace with a {config.state_dir}/dhcp/<id> dir")
        log.info("metadata proxy started (pid %d): %s -> %s", os.getpid(), what,
                 "in-process agent and metadata service (metadata_backend = local)"
                 if config.fast_path else f"unix:{config.agent_socket}")
        if nofile != before:
            log.info("open-file limit raised from %d to %d", before, nofile)
        metrics = None
        metrics_port = config.get("metrics_port_proxy")
        if metrics_port:
            from mdtool.proxy.metrics import handler_for

            metrics = HttpServer(handler_for(daemon), Limits(head_timeout=5, keepalive_timeout=5))
            try:
                sock = switch.make_listener(socket.AF_INET, "127.0.0.1", metrics_port)
            except OSError as e:
                log.error("cannot listen on 127.0.0.1:%d for metrics: %s", metrics_port,
                          e.strerror)
                return 1
            await metrics.add_socket(sock)
            log.info("metrics on http://127.0.0.1:%d/metrics", metrics_port)
        try:
            await daemon.serve(stop)
        finally:
            if metrics is not None:
                await metrics.close(1)
        log.info("metadata proxy stopped")
        return 0

    return run_daemon(main)

