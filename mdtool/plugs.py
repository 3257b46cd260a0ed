"""Instances this node plugged (``port-plug``), remembered in the state dir.

A record per port, ``<state_dir>/plugs/<port_id>.json`` (namespace, interface, network,
bridge), is written before the kernel is touched and removed after the unplug. It is how
deleting a port or an instance finds what to unplug, how ``inspect --port`` says where the
port is plugged, and how ``cleanup`` knows which namespaces, veths and bridges are this
state dir's own (another state dir's, or another test's, are never touched).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mdtool import model
from mdtool.config import Config
from mdtool.errors import Conflict, OperationFailed
from mdtool.files import ensure_dir, write_atomic

if TYPE_CHECKING:
    from mdtool.netns.ip_lib import Netlink


@dataclass(frozen=True)
class Plug:
    port_id: str
    network_id: str
    namespace: str
    ifname: str
    bridge: str


def plugs_dir(config: Config) -> Path:
    return Path(config.state_dir) / "plugs"


def _path(config: Config, port_id: str) -> Path:
    return plugs_dir(config) / f"{port_id}.json"


def _load(path: Path) -> Plug | None:
    try:
        data = json.loads(path.read_text())
        return Plug(**{k: str(data[k]) for k in Plug.__dataclass_fields__})
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise OperationFailed(f"unreadable plug record {path}: {e}; remove it by hand") from None


def read(config: Config, port_id: str) -> Plug | None:
    """The record of ``port_id`` (a full id), None when this node did not plug it."""
    return _load(_path(config, port_id))


def list_plugs(config: Config) -> list[Plug]:
    d = plugs_dir(config)
    if not d.is_dir():
        return []
    return [p for p in (_load(f) for f in sorted(d.glob("*.json"))) if p is not None]


def find(config: Config, ref: str) -> Plug | None:
    """A record by port id or unique id prefix (for a port the registry no longer has)."""
    found = [p for p in list_plugs(config) if p.port_id.startswith(ref)]
    return found[0] if len(found) == 1 else None


def forget(config: Config, port_id: str) -> bool:
    """Drop the record of ``port_id``; False when there was none."""
    try:
        _path(config, port_id).unlink()
    except FileNotFoundError:
        return False
    return True


def plug(config: Config, nl: Netlink, port: model.Port, network: model.Network,
         namespace: str, *, ifname: str = "eth0", dry_run: bool = False) -> list[str]:
    """Wire ``port`` into ``namespace`` and remember it; refused while the port is plugged
    into another namespace that still exists (one port, one MAC, one place)."""
    from mdtool.netns import ip_lib
    from mdtool.netns import plug as netns_plug
    from mdtool.netns.actions import apply
    old = read(config, port.id)
    if old is not None and old.namespace != namespace and ip_lib.namespace_exists(old.namespace):
        raise Conflict(f"port {port.id} is plugged into namespace {old.namespace}: "
                       f"mdtool port-unplug {port.id} {old.namespace}")
    # plan first: bad input (an interface name) is refused before anything is written
    actions = netns_plug.plug(nl, port, network, namespace, ifname=ifname, dry_run=True)
    if not dry_run:
        ensure_dir(plugs_dir(config), 0o755)
        write_atomic(_path(config, port.id), json.dumps(asdict(Plug(
            port.id, network.id, namespace, ifname, network.bridge)), indent=1) + "\n", 0o644)
        apply(nl, actions)
    return [a.text for a in actions]


def unplug(config: Config, nl: Netlink, port_id: str, namespace: str | None = None, *,
           network: model.Network | None = None, dry_run: bool = False) -> list[str]:
    """Remove the namespace, both veth ends, and the bridge when it carried its last port;
    ``namespace`` defaults to where this node plugged the port ([] when it did not).
    With ``network`` (from the registry), the port's port security rules go too."""
    from mdtool.netns import plug as netns_plug
    rec = read(config, port_id)
    namespace = namespace or (rec.namespace if rec else None)
    if namespace is None:
        return []
    bridge, network_id = ((rec.bridge, rec.network_id) if rec is not None
                          else (network.bridge, network.id) if network is not None else (None, None))
    actions = netns_plug.unplug(nl, port_id, namespace, bridge=bridge, network_id=network_id,
                                network=network, dry_run=dry_run)
    texts = [a.text for a in actions]
    if rec is not None and rec.namespace == namespace:
        if not dry_run:
            forget(config, port_id)
        texts.append(f"forget plug record {_path(config, port_id).name}")
    return texts
