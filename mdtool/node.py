"""``mdtool node run``: this network node's own loop, Neutron's DHCP agent in one process.

What it converges to is registry state: the networks whose ``network_hosts`` rows name
``config.host`` (written by enable/disable-isolated-metadata). Everything it changes goes
through the one code path of ``enable`` (observe, then change only what differs), under
the node lock that the one-shot commands take too, so the two never fight.

- **Changes**: it follows the registry's change feed (LISTEN/NOTIFY on PostgreSQL, a
  revision poll on SQLite). When the revision moves it reads every network once and
  converges only those whose view changed (ports, subnets, MTU, hosts): enable re-renders
  dnsmasq's files and SIGHUPs it only when the bytes changed. A network newly served is
  brought up; one no longer served is torn down.
- **Processes**: each served network's dnsmasq and the shared metadata service, agent
  and proxy are watched with a pidfd (readable the moment the process ends), so a death
  is noticed at once, not at the next poll. A dead process is started again through the
  same enable; one that keeps dying waits longer each time (backoff). Every restart is
  logged and counted (``mdtool_node_restarts_total{process=...}``).
- **Drift**: a deleted agent or metadata socket is checked every second; everything else (a deleted
  address, a veth off its bridge, an edited or deleted dnsmasq file) is repaired by the
  periodic full resync, which runs enable over every served network.
- **One pass, one session**: each pass of the loop (a resync, the changes followed, the
  restarts) reaches the kernel through one netlink session (``ip_lib.Netlink``), closed
  when the pass ends, and hands every network's enable the model it read.
- **Stop**: SIGTERM/SIGINT end the loop with exit 0 and leave dnsmasq and the daemons
  serving (they run in their own sessions); ``cleanup=True`` tears this node's data path
  down instead (the registry still says the node serves them: the next start restores).
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import signal
import stat
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

from mdtool import daemons, model
from mdtool.config import Config
from mdtool.errors import MdtoolError
from mdtool.registry import Registry

if TYPE_CHECKING:
    from mdtool.netns.ip_lib import Netlink

log = logging.getLogger("mdtool.node")

RESYNC_INTERVAL = 60.0
CHECK_INTERVAL = 1.0        # the agent socket, retries that are due
BACKOFF_FREE = 3            # restarts within BACKOFF_WINDOW before any waiting
BACKOFF_WINDOW = 60.0
BACKOFF_MAX = 30.0

LOCK_FILE = "node.lock"


@contextlib.contextmanager
def node_lock(config: Config):
    """The node lock: one writer of this node's namespaces, files and processes at a time
    (``enable``/``disable`` and ``node run`` each take it around one network)."""
    from mdtool.files import locked
    with locked(config.state_dir / LOCK_FILE):
        yield


@dataclass
class Watch:
    """One supervised process: its pid and the pidfd that tells when it ends."""
    key: str                 # "dnsmasq:<network id>" or a daemon role
    pid: int | None = None
    fd: int | None = None


@dataclass
class Backoff:
    """Restarts of one thing: free for the first few, then exponentially later."""
    times: list[float] = field(default_factory=list)
    not_before: float = 0.0

    def record(self, now: float) -> float:
        """Note a restart at ``now``; returns how long the next one must wait."""
        self.times = [t for t in self.times if now - t < BACKOFF_WINDOW] + [now]
        extra = len(self.times) - BACKOFF_FREE
        delay = 0.0 if extra <= 0 else min(BACKOFF_MAX, 2.0 ** (extra - 1))
        self.not_before = now + delay
        return delay


class NodeMetrics:
    """``mdtool_node_*`` on loopback when ``metrics_port_node`` is set."""

    role = "node"

    def __init__(self):
        from prometheus_client import CollectorRegistry, Counter, Histogram
        from prometheus_client.process_collector import ProcessCollector
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        self.restarts = Counter("mdtool_node_restarts", "Supervised processes started again "
                                "after they died, by process", ["process"], registry=self.registry)
        self.converges = Counter("mdtool_node_converges", "Networks converged (enable run), "
                                 "by reason", ["reason"], registry=self.registry)
        self.failures = Counter("mdtool_node_failures", "Converge runs that failed",
                                registry=self.registry)
        self.resync_seconds = Histogram("mdtool_node_resync_seconds",
                                        "Duration of a full resync", registry=self.registry,
                                        buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 120))
        self.change_seconds = Histogram("mdtool_node_change_seconds", "From noticing a "
                                        "registry change to every changed network converged",
                                        registry=self.registry,
                                        buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5))


def _metrics(config: Config) -> NodeMetrics | None:
    port = config.get("metrics_port_node")
    if not port:
        return None
    from mdtool import metrics as daemon_metrics
    m = NodeMetrics()
    daemon_metrics.serve(m, port)
    log.info("node metrics on http://%s:%d/metrics", daemon_metrics.LISTEN_ADDRESS, port)
    return m


class NodeRunner:
    """The loop. ``run()`` blocks until SIGTERM/SIGINT (or ``stop()``), returns 0."""

    def __init__(self, config: Config, registry: Registry, *,
                 resync_interval: float = RESYNC_INTERVAL, cleanup: bool = False,
                 metrics: NodeMetrics | None = None):
        self.config, self.registry = config, registry
        self.resync_interval = resync_interval
        self.cleanup = cleanup
        self.metrics = metrics
        self.host = config.host
        self.served: dict[str, model.Network] = {}   # network id -> view last converged
        self.revision: int | None = None
        self.watches: dict[str, Watch] = {}
        self.backoff: dict[str, Backoff] = {}
        self.dead: set[str] = set()       # watch keys whose process ended
        self.failed: set[str] = set()     # networks whose last converge failed
        self.restarts: dict[str, int] = {}
        self._stopping = threading.Event()
        self._sel: selectors.BaseSelector | None = None
        self._feed_w = -1

    # -- the loop -------------------------------------------------------------------------
    # One thread does all the work (pyroute2's sync API runs an event loop of its own, so
    # none may be running here): it sleeps in epoll on the pidfds of the supervised
    # processes, a self-pipe woken by the change feed's thread, and the signal wakeup fd.

    def run(self) -> int:
        sig_r, sig_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        feed_r, self._feed_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._sel = selectors.DefaultSelector()
        self._sel.register(sig_r, selectors.EVENT_READ, "signal")
        self._sel.register(feed_r, selectors.EVENT_READ, "feed")
        old_handlers = {sig: signal.signal(sig, lambda *_: self.stop())
                        for sig in (signal.SIGTERM, signal.SIGINT)}
        old_fd = signal.set_wakeup_fd(sig_w)
        feed = self.registry.changes()
        follower = threading.Thread(target=self._follow, args=(feed,), name="mdtool-feed",
                                    daemon=True)
        log.info("node %s: following the registry (%s), resync every %.0f s", self.host,
                 feed.kind, self.resync_interval)
        from mdtool.netns.ip_lib import Netlink
        try:
            follower.start()
            with Netlink() as nl:
                self.resync(nl, "start")
            next_resync = time.monotonic() + self.resync_interval
            while not self._stopping.is_set():
                timeout = max(0.0, min(next_resync - time.monotonic(), CHECK_INTERVAL))
                moved = False
                for key, _ in self._sel.select(timeout):
                    if key.data == "signal" or key.data == "feed":
                        with contextlib.suppress(BlockingIOError):
                            while os.read(key.fd, 512):
                                pass
                        moved = moved or key.data == "feed"
                    else:
                        self._ended(key.data)
                if self._stopping.is_set():
                    break
                with Netlink() as nl:  # this pass's sockets, closed when it ends
                    if moved:
                        self.follow_changes(nl)
                    self.supervise(nl)
                    if time.monotonic() >= next_resync:
                        self.resync(nl, "periodic")
                        next_resync = time.monotonic() + self.resync_interval
        finally:
            self._stopping.set()
            signal.set_wakeup_fd(old_fd)
            for sig, h in old_handlers.items():
                signal.signal(sig, h)
            for w in list(self.watches.values()):
                self._unwatch(w)
            self._sel.close()
            for fd in (sig_r, sig_w, feed_r):
                os.close(fd)
        if self.cleanup:
            self.teardown()
        log.info("node %s: stopped%s", self.host,
                 " (data path torn down)" if self.cleanup else "; dnsmasq and the daemons keep serving")
        return 0

    def stop(self) -> None:
        self._stopping.set()

    def _follow(self, feed) -> None:
        """The feed's own thread: a byte down the pipe whenever the registry may have
        changed (a notification, or the poll/fallback interval passed)."""
        try:
            while not self._stopping.is_set():
                feed.wait_blocking(feed.interval)
                with contextlib.suppress(BlockingIOError, OSError):
                    os.write(self._feed_w, b"c")
        finally:
            feed.close()
            with contextlib.suppress(OSError):
                os.close(self._feed_w)

    # -- converging ---------------------------------------------------------------------

    def _read(self) -> tuple[int, dict[str, model.Network]]:
        revision, nets = self.registry.networks_with_ports()
        return revision, {n.id: n for n in nets if self.host in n.hosts}

    def converge(self, nl: Netlink, net: model.Network, revision: int, reason: str) -> bool:
        """enable-isolated-metadata for one network (``net`` as read at ``revision``), under
        the node lock; True when it succeeded. Changes are logged; a failure is logged and
        retried later."""
        from mdtool.enable import as_read, enable
        network_id = net.id
        changes: list[str] = []

        def on_step(step) -> None:
            changes.extend(f"{step.name}: {c}" for c in step.changes)

        try:
            with node_lock(self.config):
                # decided before the lock: a disable that held it may have ended the serving
                if network_id not in self.registry.served_networks(self.host):
                    return True
                enable(self.config, self.registry, nl, as_read(self.registry, net, revision),
                       on_step=on_step)
        except MdtoolError as e:
            if network_id not in self.failed:
                log.error("network %s (%s): %s", network_id, reason, e)
            self.failed.add(network_id)
            if self.metrics:
                self.metrics.failures.inc()
            return False
        except Exception:  # a bug in one network's run must not stop serving the others:
            log.exception("network %s (%s): unexpected error", network_id, reason)  # said, loudly
            self.failed.add(network_id)
            if self.metrics:
                self.metrics.failures.inc()
            return False
        if self.metrics:
            self.metrics.converges.labels(reason).inc()
        if network_id in self.failed:
            log.info("network %s: converged again", network_id)
        self.failed.discard(network_id)
        for c in changes:
            log.info("network %s (%s): %s", network_id, reason, c)
        return True

    def resync(self, nl: Netlink, reason: str) -> None:
        """Every served network through enable: whatever drifted is repaired."""
        t0 = time.monotonic()
        revision, want = self._read()  # one read for all the networks
        for net in want.values():
            if self._stopping.is_set():  # SIGTERM during a long resync: stop here
                break
            self.converge(nl, net, revision, reason)
        for nid in set(self.served) - set(want):
            self.release(nl, nid)
        # what the networks look like now, our own writes (DHCP ports, records) included:
        # otherwise the next change would converge every network again for them
        self.revision, self.served = self._read()
        self.watch_all()
        elapsed = time.monotonic() - t0
        if self.metrics:
            self.metrics.resync_seconds.observe(elapsed)
        log.log(logging.INFO if reason == "start" else logging.DEBUG,
                "resync (%s): %d network(s) in %.2f s", reason, len(want), elapsed)

    def follow_changes(self, nl: Netlink) -> None:
        """The registry's revision moved: converge the networks whose view changed."""
        revision = self.registry.revision()
        if revision == self.revision:
            return
        t0 = time.monotonic()
        self.revision, want = self._read()
        touched = [nid for nid, net in want.items() if self.served.get(nid) != net]
        gone = [nid for nid in self.served if nid not in want]
        for nid in touched:
            self.converge(nl, want[nid], self.revision, "change" if nid in self.served else "served")
        for nid in gone:
            self.release(nl, nid)
        self.served = want
        if touched or gone:
            self.watch_all()
            if self.metrics:
                self.metrics.change_seconds.observe(time.monotonic() - t0)
            log.debug("revision %d: %d network(s) converged, %d released in %.3f s",
                      revision, len(touched), len(gone), time.monotonic() - t0)

    def release(self, nl: Netlink, network_id: str) -> None:
        """This node no longer serves the network: disable it (when the network still
        exists; a deleted one is left to ``mdtool cleanup``)."""
        from mdtool.enable import disable
        self._unwatch(self.watches.pop(f"dnsmasq:{network_id}", None))
        self.failed.discard(network_id)
        try:
            with node_lock(self.config):
                steps = disable(self.config, self.registry, nl, network_id)
        except MdtoolError as e:
            log.warning("network %s is no longer served by %s, not torn down: %s",
                        network_id, self.host, e)
            return
        for s in steps:
            for c in s.changes:
                log.info("network %s (no longer served): %s", network_id, c)

    # -- supervision ----------------------------------------------------------------------

    def _roles(self) -> list[str]:
        if not self.served:
            return []
        return [r for r in daemons.ROLES if r != "metadata" or self.config.nova_metadata_is_local]

    def _current_pid(self, key: str) -> int | None:
        if key.startswith("dnsmasq:"):
            from mdtool.dnsmasq import control
            return control.running_pid(self.config, key.split(":", 1)[1])
        return daemons.running(self.config, key)

    def watch_all(self) -> None:
        """Watch what runs now: every served network's dnsmasq and the shared daemons."""
        keys = [f"dnsmasq:{nid}" for nid in self.served] + self._roles()
        for key in set(self.watches) - set(keys):
            self._unwatch(self.watches.pop(key))
        for key in keys:
            pid = self._current_pid(key)
            w = self.watches.setdefault(key, Watch(key))
            if pid is None:
                self.dead.add(key)
            elif pid != w.pid:
                self._unwatch(w)
                self._watch(w, pid)

    def _watch(self, w: Watch, pid: int) -> None:
        w.pid = pid
        try:
            w.fd = os.pidfd_open(pid)
        except ProcessLookupError:  # gone between the check and here
            w.fd = None
            self.dead.add(w.key)
            return
        self._sel.register(w.fd, selectors.EVENT_READ, w)

    def _unwatch(self, w: Watch | None) -> None:
        if w is None or w.fd is None:
            return
        self._sel.unregister(w.fd)
        os.close(w.fd)
        w.fd = None

    def _ended(self, w: Watch) -> None:
        """The pidfd became readable: the process ended."""
        self._unwatch(w)
        self.dead.add(w.key)

    def _lost_socket(self) -> tuple[str, str] | None:
        """(role, path) of a running daemon whose Unix socket file is gone (deleted by hand,
        a cleanup script): the process lives on, but nobody can reach it."""
        for role in ("agent", "metadata"):
            if role not in self.watches or self.watches[role].pid is None:
                continue
            for listener in daemons.listeners(self.config, role):
                if listener.path is None:
                    continue
                try:
                    if not stat.S_ISSOCK(os.lstat(listener.path).st_mode):
                        return role, listener.path
                except FileNotFoundError:
                    return role, listener.path
        return None

    def supervise(self, nl: Netlink) -> None:
        """Start again what died (after its backoff), retry networks that failed."""
        now = time.monotonic()
        lost = self._lost_socket()
        if lost is not None:
            role, path = lost
            log.warning("the %s's socket %s is gone: restarting it", role, path)
            with node_lock(self.config):
                daemons.stop(self.config, role)
            self.dead.add(role)
        due = []
        for key in sorted(self.dead):
            b = self.backoff.setdefault(key, Backoff())
            if now >= b.not_before:
                due.append(key)
        retry = [nid for nid in self.failed if nid in self.served
                 and now >= self.backoff.setdefault(f"net:{nid}", Backoff()).not_before]
        if not due and not retry:
            return
        self.follow_changes(nl)  # a disable may be why it died: never start what is not served
        due = [k for k in due if k in self.watches]
        retry = [nid for nid in retry if nid in self.served]
        for key in due:
            self.dead.discard(key)
            w = self.watches.get(key)
            old = w.pid if w else None
            if self._current_pid(key) is not None and self._current_pid(key) != old:
                continue  # someone else started it already: watch_all picks it up
            what = key.split(":", 1)[0]
            # a shared daemon: through any served network, healthy ones first
            nets = ([key.split(":", 1)[1]] if what == "dnsmasq" else
                    sorted(self.served, key=lambda nid: nid in self.failed))
            nets = [nid for nid in nets if nid in self.served]  # their models, as last read
            if not nets:
                continue
            delay = self.backoff[key].record(now)
            n = self.restarts[key] = self.restarts.get(key, 0) + 1
            log.warning("%s%s (pid %s) died: starting it again (restart %d%s)", what,
                        f" of {nets[0]}" if what == "dnsmasq" else "", old or "-", n,
                        f"; next one waits {delay:.0f} s" if delay else "")
            if self.metrics:
                self.metrics.restarts.labels(what).inc()
            if w is not None:
                w.pid = None
            for nid in nets:
                if self.converge(nl, self.served[nid], self.revision, f"restart {what}"):
                    break
        for nid in retry:
            self.backoff[f"net:{nid}"].record(now)
            self.converge(nl, self.served[nid], self.revision, "retry")
        self.watch_all()

    # -- stop with --cleanup ----------------------------------------------------------------

    def teardown(self) -> None:
        """Tear this node's data path down: every served network's dnsmasq, namespace and
        files, then the shared daemons. The registry keeps saying what to serve."""
        from mdtool.netns.ip_lib import Netlink
        from mdtool.pipeline import Node
        with Netlink() as nl, node_lock(self.config):
            node = Node(self.config, self.registry, nl)
            for nid, net in self.served.items():
                for step in (lambda: node.dnsmasq_stop(nid), lambda: node.netns_down(net),
                             lambda: node.forget_dhcp_files(nid)):
                    try:
                        for c in step():
                            log.info("cleanup %s: %s", nid, c)
                    except MdtoolError as e:
                        log.error("cleanup %s: %s", nid, e)
            for role in reversed(daemons.ROLES):
                try:
                    if daemons.stop(self.config, role):
                        log.info("cleanup: stop mdtool %s", role)
                except MdtoolError as e:
                    log.error("cleanup: %s: %s", role, e)


def run(config: Config, registry: Registry, *, resync_interval: float = RESYNC_INTERVAL,
        cleanup: bool = False, on_ready: Callable[[NodeRunner], None] | None = None) -> int:
    runner = NodeRunner(config, registry, resync_interval=resync_interval, cleanup=cleanup,
                        metrics=_metrics(config))
    if on_ready is not None:
        on_ready(runner)
    return runner.run()
