"""enable-isolated-metadata / disable-isolated-metadata: every step, only what is missing.

Observe, plan, apply (``mdtool.plan``): one look at the registry, the kernel, the files and
the processes; a plan per step (DHCP port, namespace, dnsmasq files and process, metadata,
agent, proxy, the proxy serving this network, the registry's record); then the actions in
order. ``--dry-run`` prints the same plan and applies nothing, so a real run right after a
dry run does what the dry run said. When an action fails, what this run did is undone in
reverse, and an undo that fails is named in the error.

Every step gets the one ``Network`` model read for the run (read again only after this
run's own write of the DHCP port) and reaches the kernel through the caller's netlink
session (``ip_lib.Netlink``): a command over many networks, or a pass of the node loop,
reads the registry once and opens at most one socket of each kind per namespace.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Callable, Iterator

from mdtool import daemons, model, process
from mdtool.config import Config
from mdtool.errors import BadInput, MdtoolError
from mdtool.pipeline import Node
from mdtool.plan import Action, Run, Step, StepFailed  # noqa: F401 (StepFailed: callers)
from mdtool.registry import Registry

if TYPE_CHECKING:
    from mdtool.netns.ip_lib import Netlink

PROXY_WAIT = 5.0


def _proxy_listener(network_id: str) -> process.Listener:
    from mdtool.netns import names
    return process.Listener.tcp(model.METADATA_IPV4, 80, netns=names.namespace_name(network_id))


def wait_serving(config: Config, network_id: str, timeout: float = PROXY_WAIT) -> None:
    """Wake the proxy (it looks for new namespaces at once) and wait until that very process
    holds 169.254.169.254:80 in the network's namespace."""
    for error in _await_proxy(config, [network_id], timeout).values():
        raise error


def _await_proxy(config: Config, network_ids: list[str], timeout: float
                 ) -> dict[str, MdtoolError]:
    """Wake the proxy and wait, ``timeout`` seconds at most, until that very process holds
    169.254.169.254:80 in each network's namespace: ``{network id: why not}`` for each
    network it does not serve (someone else holds the address, the namespace cannot be
    read, or time ran out)."""
    import time

    from mdtool.errors import OperationFailed
    waiting = list(network_ids)
    pid = daemons.manager(config, "proxy").pid
    daemons.wake_proxy(config)
    failed: dict[str, MdtoolError] = {}
    deadline = time.monotonic() + timeout
    while waiting:
        listeners = [_proxy_listener(net_id) for net_id in waiting]
        left = []
        for net_id, listener, answer in zip(
                waiting, listeners, process.listener_holders_each(listeners, pid)):
            if isinstance(answer, MdtoolError):
                failed[net_id] = answer
                continue
            ours, others = answer
            if others:
                failed[net_id] = BadInput(process.held_sentence(listener, others[0]))
            elif not ours:
                left.append(net_id)
        waiting = left
        if waiting and time.monotonic() > deadline:
            for net_id in waiting:
                failed[net_id] = OperationFailed(
                    f"the proxy does not listen on {_proxy_listener(net_id)} "
                    f"(log: {daemons.logfile(config, 'proxy')})")
            break
        if waiting:
            time.sleep(0.02)
    return failed


def _plan_serving(config: Config, net: model.Network, proxy_restarts: bool,
                  namespace_exists: bool) -> Step:
    """The proxy serves this network: our proxy holds 169.254.169.254:80 in its namespace;
    anyone else there is an error naming it."""
    listener = _proxy_listener(net.id)
    if namespace_exists:
        ours, others = process.listener_holders(listener, daemons.manager(config, "proxy").pid)
        if others:
            raise BadInput(process.held_sentence(listener, others[0]))
        if ours and not proxy_restarts:
            return Step("proxy serving")
    return Step("proxy serving", [Action(f"wait for mdtool proxy to listen on {listener}",
                                         lambda: wait_serving(config, net.id))])


def _plan_served(config: Config, registry: Registry, net: model.Network, serve: bool) -> Step:
    """The registry's record that this node serves ``net`` (what every `node run` follows)."""
    if (config.host in net.hosts) == serve:
        return Step("served by this node")
    on, off = registry.serve_network, registry.unserve_network
    do, undo = (on, off) if serve else (off, on)
    text = (f"record {config.host} as serving {net.name}" if serve
            else f"forget {config.host} serving {net.name}")
    return Step("served by this node", [Action(text, lambda: do(net.id, config.host),
                                               lambda: undo(net.id, config.host))])


def _plan_daemon(config: Config, role: str) -> Step:
    pm = daemons.manager(config, role)
    st = pm.check()
    return Step(role, [Action(t, pm.enable, pm.disable if st.pid is None else None)
                       for t in pm.plan(st)])


def as_read(registry: Registry, net: model.Network, revision: int) -> model.Network | str:
    """``net`` as read at ``revision`` while the registry has not moved since; otherwise its
    id, which ``enable``/``disable`` look up again (a change made by anyone since the read
    is seen). One cheap query: a command over many networks reads them all once."""
    return net if registry.revision() == revision else net.id


class Batch:
    """What a command over many networks (``enable --all``, ``disable --all``) shares between
    its networks:

    - one listing of the node's processes (``process.one_scan``);
    - the shared daemons (metadata, agent, proxy) checked once: a role found running as
      asked, or started, by one network's enable is not checked again by the next ones;
    - one wait for the proxy: a network's enable ends with its namespace ready and its
      wait for the proxy handed here; ``finish`` wakes the proxy once and waits for every
      network at once. A network the proxy does not serve in time fails then: what its
      enable did is rolled back and ``finish`` names it, as a wait inside its run did."""

    def __init__(self, config: Config):
        self.config = config
        self.daemons_ok: set[str] = set()
        self._waiting: list[tuple[str, Run]] = []  # (network id, its run)
        self.deferred: tuple[str, Run] | None = None  # the last enable's handed-over wait

    def defer_serving(self, network_id: str, run: Run) -> None:
        self.deferred = (network_id, run)
        self._waiting.append(self.deferred)

    def drop(self, run: Run) -> None:
        self._waiting = [(n, r) for n, r in self._waiting if r is not run]
        if self.deferred is not None and self.deferred[1] is run:
            self.deferred = None

    def take_deferred(self) -> tuple[str, Run] | None:
        """The wait the enable that just returned handed over (None: it waited for
        nothing); the caller reports that network once ``finish`` has answered."""
        got, self.deferred = self.deferred, None
        return got

    def finish(self, timeout: float = PROXY_WAIT) -> dict[int, str]:
        """Wake the proxy and wait until it serves every network handed over, ``timeout``
        seconds at most; ``{id(run): error}`` for each network that failed, its run rolled
        back (under the node lock)."""
        from mdtool.node import node_lock
        waiting, self._waiting = self._waiting, []
        if not waiting:
            return {}
        failed = _await_proxy(self.config, list(dict.fromkeys(n for n, _ in waiting)), timeout)
        out = {}
        for net_id, run in waiting:
            if net_id in failed:
                with node_lock(self.config):
                    out[id(run)] = str(run.failed("proxy serving", failed[net_id]))
        return out


@contextlib.contextmanager
def batch(config: Config) -> Iterator[Batch]:
    """One ``Batch`` for the networks of one command, in a ``with`` block."""
    with process.one_scan():
        yield Batch(config)


def _network(registry: Registry, network: model.Network | str) -> model.Network:
    return network if isinstance(network, model.Network) else registry.get_network(network)


def enable(config: Config, registry: Registry, nl: Netlink, network: model.Network | str, *,
           dry_run: bool = False, on_step: Callable[[Step], None] = lambda s: None,
           batch: Batch | None = None) -> list[Step]:
    """``network``: the model the caller read, or a name or id looked up here (in the
    registry step, so a bad one fails that step). ``batch``: the command's ``Batch``; the
    shared daemons are then checked once per batch and the wait for the proxy is handed
    to it (``Batch.finish``)."""
    node = Node(config, registry, nl)
    run = Run(dry_run=dry_run, on_step=on_step)

    # 1. registry: the network (one read; the steps share this model) and its DHCP subnets
    seen = {}

    def check() -> Step:
        st = seen["dhcp"] = node.dhcp(_network(registry, network), create=False)
        gw = [s.cidr for s in st.network.subnets if s.enable_dhcp and s.ip_version == 4 and s.gateway_ip]
        note = (f"subnet(s) {', '.join(gw)} have a gateway: instances get the metadata route "
                "and a default route") if gw else ""
        return Step("registry", note=note)

    run.apply(run.plan("registry", check))
    net, port = seen["dhcp"].network, seen["dhcp"].port

    # 2. the DHCP port in the registry: everything after it needs its MAC and addresses
    if port is None:
        def reserve() -> list[str]:
            st = seen["dhcp"] = node.dhcp(net, create=True)  # the network as it is now
            return st.changes
        run.apply(Step("DHCP port", [Action(f"reserve DHCP port on {net.name}", reserve,
                                            lambda: node.release_dhcp_port(net.id))]))
        if not dry_run:
            net, port = seen["dhcp"].network, seen["dhcp"].port
    else:
        run.apply(Step("DHCP port"))

    # 3-9: planned from one observation, then applied in order
    ns_exists = _namespace_exists(net.id)
    steps: list[Step] = []
    if port is None:  # dry run before the port exists: what it will do, in outline
        steps.append(Step("namespace", [Action(
            f"create namespace qdhcp-{net.id}, the DHCP port veth, its addresses and "
            "169.254.169.254/32", lambda: None)]))
        steps.append(Step("dnsmasq", [Action(f"render files and start dnsmasq for {net.name}",
                                             lambda: None)]))
    else:
        steps.append(run.plan("namespace", lambda: Step("namespace", node.plan_netns_up(net, port))))
        steps.append(run.plan("dnsmasq", lambda: Step("dnsmasq", node.plan_dnsmasq(net, port))))
    for role in daemons.ROLES:
        name = role if role != "metadata" else "metadata service"
        if role == "metadata" and not config.nova_metadata_is_local:
            steps.append(Step(name, note=f"not started: agent forwards to {config.nova_metadata_url}"))
            continue
        if batch is not None and role in batch.daemons_ok:
            steps.append(Step(name))  # checked (or started) for this batch already
            continue
        steps.append(run.plan(name, lambda role=role: _plan_daemon(config, role)))
    proxy_restarts = bool(steps[-1].actions)
    serving = run.plan("proxy serving",
                       lambda: _plan_serving(config, net, proxy_restarts, ns_exists))
    if batch is not None and not dry_run and serving.actions:
        serving.actions = [Action(a.text, lambda: batch.defer_serving(net.id, run))
                           for a in serving.actions]
    steps.append(serving)

    # 9. the registry says this node serves the network (every `node run` follows it)
    steps.append(run.plan("served by this node", lambda: _plan_served(config, registry, net, True)))
    try:
        for step in steps:
            run.apply(step)
    except BaseException:
        if batch is not None:  # rolled back: nothing of it is left to wait for
            batch.drop(run)
        raise
    if batch is not None and not dry_run:
        batch.daemons_ok.update(daemons.ROLES)
    return run.steps


def _namespace_exists(network_id: str) -> bool:
    from mdtool.netns import ip_lib, names
    return ip_lib.namespace_exists(names.namespace_name(network_id))


def enabled_networks(config: Config) -> list[str]:
    """Networks this node serves: a dhcp dir in the state dir and a namespace up."""
    d = config.state_dir / "dhcp"
    if not d.is_dir():
        return []
    return sorted(p.name for p in d.iterdir() if p.is_dir() and _namespace_exists(p.name))


def disable(config: Config, registry: Registry, nl: Netlink, network: model.Network | str, *,
            dry_run: bool = False, on_step: Callable[[Step], None] = lambda s: None,
            batch: Batch | None = None) -> list[Step]:
    """``batch``: the command's ``Batch`` (its one listing of the node's processes)."""
    from mdtool.dnsmasq import control
    node = Node(config, registry, nl)
    net = _network(registry, network)
    run = Run(dry_run=dry_run, on_step=on_step)
    steps: list[Step] = []

    # first, so a `node run` of this host stops converging it back
    steps.append(run.plan("served by this node", lambda: _plan_served(config, registry, net, False)))

    def dnsmasq() -> Step:
        pid = control.running_pid(config, net.id)
        if pid is None:
            return Step("dnsmasq")
        return Step("dnsmasq", [Action(f"stop dnsmasq for {net.name} (pid {pid})",
                                       lambda: control.stop(config, net.id))])

    steps.append(run.plan("dnsmasq", dnsmasq))
    steps.append(run.plan("namespace", lambda: Step("namespace", node.plan_netns_down(net))))

    def port_and_files() -> list[Step]:
        port = node.own_dhcp_port(net)
        release = [] if port is None else [Action(
            f"release DHCP port {port.id[:8]}", lambda: registry.delete_port(port.id))]
        d = config.dhcp_dir(net.id)
        remove = [Action(f"remove {d}", lambda: node.forget_dhcp_files(net.id))] if d.exists() else []
        return [Step("DHCP port", release), Step("files", remove)]

    steps += port_and_files()
    others = [n for n in enabled_networks(config) if n != net.id]
    for role in reversed(daemons.ROLES):
        if others:
            steps.append(Step(role, note=f"kept: {len(others)} other network(s) use it"))
            continue

        def stop(role=role) -> Step:
            pm = daemons.manager(config, role)
            pid = pm.check().pid
            if pid is None:
                return Step(role)
            return Step(role, [Action(f"stop mdtool {role} (pid {pid})", pm.disable)])

        steps.append(run.plan(role, stop))
    for step in steps:
        run.apply(step)
    return run.steps
