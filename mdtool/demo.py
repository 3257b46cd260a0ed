"""The demo: an isolated network, two instances in namespaces, metadata for both.

Everything here uses the same steps an operator would type; what the demo makes it
records, so it can remove exactly that.
"""

from __future__ import annotations

import base64
import http.client
import json
import secrets
import struct
from dataclasses import dataclass, field
from pathlib import Path

from mdtool import model
from mdtool.config import Config
from mdtool.errors import OperationFailed
from mdtool.registry import Registry
from mdtool.templates import render

DEMO_CIDR = "10.254.169.0/24"


def fake_public_key(comment: str) -> str:
    """A well-formed ssh-ed25519 public key (random; nobody holds its private half)."""
    blob = b"".join(struct.pack(">I", len(x)) + x for x in (b"ssh-ed25519", secrets.token_bytes(32)))
    return f"ssh-ed25519 {base64.b64encode(blob).decode()} {comment}"


@dataclass
class DemoInstance:
    name: str
    instance_id: str
    port_id: str
    ip: str
    mac: str
    namespace: str
    received: dict = field(default_factory=dict)


@dataclass
class Demo:
    network_id: str
    network_name: str
    instances: list[DemoInstance]

    def save(self, path: Path) -> None:
        path.write_text(json.dumps({"network_id": self.network_id, "network_name": self.network_name,
                                    "instances": [i.__dict__ for i in self.instances]}, indent=2))

    @classmethod
    def load(cls, path: Path) -> "Demo":
        d = json.loads(path.read_text())
        return cls(d["network_id"], d["network_name"], [DemoInstance(**i) for i in d["instances"]])


def state_file(config: Config) -> Path:
    return config.state_dir / "demo.json"


def create(config: Config, registry: Registry, say) -> Demo:
    """Build the demo; on any failure remove what was built so far, then re-raise."""
    made: list[Demo] = []
    try:
        return _create(config, registry, say, made)
    except BaseException:
        if made:
            destroy(config, registry, made[0], say)
        raise


def _create(config: Config, registry: Registry, say, made: list) -> Demo:
    suffix = secrets.token_hex(2)
    net_name = f"demo-{suffix}"
    net = registry.create_network(net_name)
    say(f"$ mdtool net-create {net_name}")
    sub = registry.create_subnet(net.id, DEMO_CIDR, no_gateway=True, name=f"{net_name}-sub")
    say(f"$ mdtool subnet-create {net_name} {DEMO_CIDR} --no-gateway --name={sub.name}")
    demo = Demo(net.id, net_name, [])
    made.append(demo)
    state_file(config).parent.mkdir(parents=True, exist_ok=True)
    demo.save(state_file(config))
    from mdtool.netns.ip_lib import Netlink
    with Netlink() as nl:
        _create_in(config, registry, nl, say, demo, net, suffix)
    return demo


def _create_in(config: Config, registry: Registry, nl, say, demo: Demo, net, suffix: str) -> None:
    from mdtool.enable import enable
    from mdtool.netns import plug
    net_name = demo.network_name
    enable(config, registry, nl, net.id)  # first, so the DHCP port takes the pool's first address
    say(f"$ mdtool enable-isolated-metadata {net_name}")
    for n in (1, 2):
        name = f"demo-vm{n}-{suffix}"
        ud = render("demo/user-data.j2", instance_name=name, hostname=f"demo-vm{n}").encode()
        inst = registry.create_instance(name, hostname=f"demo-vm{n}", user_data=ud, key_name="demo",
                                        public_key=fake_public_key(f"demo@{name}"),
                                        meta={"role": "demo", "index": str(n)})
        say(f"$ mdtool instance-create {name} --user-data ud{n}.yaml --key-name demo --public-key demo.pub "
            f"--meta role=demo --meta index={n}")
        port = registry.create_port(net.id, name=f"{name}-port", device_id=inst.id)
        say(f"$ mdtool port-create {net_name} --device-id {name}   # {port.fixed_ips[0].ip_address}")
        ns = f"demo-vm{n}-{suffix}"
        demo.instances.append(DemoInstance(name, inst.id, port.id, port.fixed_ips[0].ip_address,
                                           port.mac_address, ns))
        demo.save(state_file(config))
        plug.plug(nl, port, registry.get_network(net.id), ns)
        say(f"$ mdtool port-plug {port.id[:8]} {ns}")
    from mdtool.pipeline import Node
    Node(config, registry, nl).dnsmasq_reload(net.id)
    say(f"$ mdtool dnsmasq reload {net_name}")


def http_get(namespace: str, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
    """GET http://169.254.169.254<path> from inside ``namespace``."""
    from mdtool.netns.switch import run_in_netns

    def get():
        conn = http.client.HTTPConnection(model.METADATA_IPV4, 80, timeout=timeout)
        try:
            conn.request("GET", path)
            r = conn.getresponse()
            return r.status, r.read()
        finally:
            conn.close()

    return run_in_netns(namespace, get)


def fetch(inst: DemoInstance) -> dict:
    status, body = http_get(inst.namespace, "/openstack/latest/meta_data.json")
    if status != 200:
        raise OperationFailed(f"{inst.name}: meta_data.json answered {status}: {body[:200]!r}")
    md = json.loads(body)
    st, ud = http_get(inst.namespace, "/openstack/latest/user_data")
    st2, iid = http_get(inst.namespace, "/latest/meta-data/local-ipv4")
    inst.received = {"uuid": md.get("uuid"), "name": md.get("name"), "hostname": md.get("hostname"),
                     "public_keys": sorted(md.get("public_keys", {})), "meta": md.get("meta"),
                     "user_data": ud.decode(errors="replace") if st == 200 else None,
                     "ec2_local_ipv4": iid.decode() if st2 == 200 else None}
    return inst.received


def destroy(config: Config, registry: Registry, demo: Demo, say) -> None:
    """Remove what the demo made, in reverse; tolerate what is already gone."""
    from mdtool.enable import disable
    from mdtool.errors import MdtoolError
    from mdtool.netns import plug
    from mdtool.netns.ip_lib import Netlink
    try:
        network = registry.get_network(demo.network_id)
    except MdtoolError:
        network = None
    with Netlink() as nl:
        for inst in demo.instances:
            try:
                plug.unplug(nl, inst.port_id, inst.namespace, network=network)
            except MdtoolError as e:
                say(f"  (unplug {inst.namespace}: {e})")
        try:
            disable(config, registry, nl, demo.network_id)
        except MdtoolError as e:
            say(f"  (disable: {e})")
    for inst in demo.instances:
        try:
            registry.delete_instance(inst.instance_id)
        except MdtoolError:
            pass
    for p in registry.list_ports(demo.network_id) if _exists(registry, demo.network_id) else []:
        registry.delete_port(p.id)
    if _exists(registry, demo.network_id):
        registry.delete_network(demo.network_id)
    # disable keeps dnsmasq's log for the operator; the demo leaves nothing of its own behind.
    from mdtool.dnsmasq import control
    control.paths(config, demo.network_id).log.unlink(missing_ok=True)
    state_file(config).unlink(missing_ok=True)
    say(f"removed demo network {demo.network_name}, its instances, namespaces and daemons")


def _exists(registry: Registry, network_id: str) -> bool:
    from mdtool.errors import NotFound
    try:
        registry.get_network(network_id)
        return True
    except NotFound:
        return False
