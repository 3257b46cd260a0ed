"""``mdtool inspect``: observe one network on this node (read only), judge what is seen,
and probe the metadata path end to end.

- ``procnet``: /proc/net/tcp{,6} parsing and socket owners (netstat -anpt)
- ``layout``: the ``ip a``, ``route -n`` and ``netstat`` text (pure)
- ``observe``: everything read from the kernel, /proc, the files and the daemons
- ``probe``: the HTTP requests the checks need (GET only)
- ``checks``: verdicts with a likely cause and a fixing command (pure)
- ``report``: all of it as plain data (``-f json``)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mdtool.config import Config
from mdtool.registry import Registry

if TYPE_CHECKING:
    from mdtool.netns.ip_lib import Netlink


def inspect_network(config: Config, registry: Registry, nl: Netlink, network_ref: str,
                    port_ref: str | None = None, instance_ref: str | None = None):
    """Observe and judge one network (the kernel through session ``nl``): a
    :class:`~mdtool.inspect.report.Report`; with ``port_ref`` or ``instance_ref``, that
    instance's view too (and the probe as its port)."""
    from mdtool.inspect import instance
    from mdtool.inspect.checks import evaluate
    from mdtool.inspect.observe import observe
    from mdtool.inspect.report import Report
    port = None
    if port_ref or instance_ref:
        port = instance.pick(registry.get_network(network_ref), registry, port_ref, instance_ref)
    obs = observe(config, registry, nl, network_ref, port.id if port else None)
    report = Report(obs, evaluate(obs))
    if port is not None:
        report.instance = instance.observe(config, registry, nl, obs.ref, obs.network, port,
                                           obs.dhcp_port)
        report.instance_checks = instance.evaluate(report.instance)
    return report
