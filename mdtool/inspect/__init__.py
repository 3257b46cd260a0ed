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

from mdtool.config import Config
from mdtool.registry import Registry


def inspect_network(config: Config, registry: Registry, network_ref: str,
                    port_ref: str | None = None):
    """Observe and judge one network: a :class:`~mdtool.inspect.report.Report`."""
    from mdtool.inspect.checks import evaluate
    from mdtool.inspect.observe import observe
    from mdtool.inspect.report import Report
    obs = observe(config, registry, network_ref, port_ref)
    return Report(obs, evaluate(obs))
