"""Nova 34's own metadata API (``MetadataRequestHandler`` with a real ``InstanceMetadata``),
served over HTTP on 127.0.0.1 for one instance. Prints ``{"port": N}`` once listening.

Stubbed, because each needs a server: the database (the instance lookup, its block device
mappings) and Neutron (its security groups). The instance is a real
``nova.objects.Instance`` built from the payload's fields; its network info a real
``nova.network.model.NetworkInfo`` hydrated from the payload's VIFs (as Nova's cache
holds them).

The network info is what Nova's own ``neutron.API._build_vif_model`` builds from the
Neutron network and ports of the payload (Neutron's client stubbed with them). Nova 34
refuses to build a ``binding:vif_type=bridge`` VIF (Linux bridge support is gone), so the
VIF is built as ``ovs`` and its type set to the payload's ``vif_type`` afterwards; only the
link's ``type`` of network_data.json reads it.

Payload: ``secret``, ``dhcp_domain``, ``vif_type``, ``instance`` (uuid, hostname,
display_name, project_id, key_name, key_data, key_type, user_data (base64 or null),
metadata, flavor, availability_zone, launch_index, reservation_id, ec2_instance_id, ami_id,
root_device_name, security_groups), ``network`` (as tests/interop/neutron.py's
``neutron_network`` gives it).
"""

import json
import sys
import threading
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server


def _instance(d, network_info):
    from nova import objects
    from oslo_utils import timeutils

    inst = objects.Instance(
        uuid=d["uuid"], hostname=d["hostname"], display_name=d["display_name"],
        project_id=d["project_id"], user_id="user", key_name=d["key_name"],
        key_data=d["key_data"], user_data=d["user_data"], metadata=d["metadata"],
        system_metadata={}, availability_zone=d["availability_zone"],
        launch_index=d["launch_index"], reservation_id=d["reservation_id"],
        root_device_name=d["root_device_name"], default_ephemeral_device=None,
        default_swap_device=None, device_metadata=None, numa_topology=None,
        created_at=timeutils.utcnow(), launched_at=None, vm_state="active",
        task_state=None, power_state=1, host="compute", node="compute", id=1,
        deleted=False, cell_name=None, locked=False, hidden=False)
    inst.flavor = objects.Flavor(name=d["flavor"], flavorid="1", memory_mb=512, vcpus=1,
                                 root_gb=1, ephemeral_gb=0, swap=0, extra_specs={})
    inst.old_flavor = None
    inst.new_flavor = None
    inst.ec2_ids = objects.EC2Ids(instance_id=d["ec2_instance_id"], ami_id=d["ami_id"],
                                  kernel_id=None, ramdisk_id=None)
    keys = []
    if d["key_name"]:
        keys.append(objects.KeyPair(name=d["key_name"], public_key=d["key_data"],
                                    type=d["key_type"], user_id="user"))
    inst.keypairs = objects.KeyPairList(objects=keys)
    inst.info_cache = objects.InstanceInfoCache(instance_uuid=d["uuid"],
                                                network_info=network_info)
    inst.security_groups = objects.SecurityGroupList(objects=[])
    inst.services = objects.ServiceList(objects=[])
    inst.tags = objects.TagList(objects=[])
    inst.pci_devices = objects.PciDeviceList(objects=[])
    inst.migration_context = None
    inst.trusted_certs = None
    inst.resources = None
    inst.vcpu_model = None
    inst.ec2_ids  # noqa: B018 (loaded above; Nova touches it the same way)
    return inst


class _Neutron:
    """Neutron's client, answering from the payload's network."""

    def __init__(self, network):
        self.network = network

    def list_subnets(self, id=None, **kwargs):
        return {"subnets": [s for s in self.network["subnets"] if id is None or s["id"] in id]}

    def list_ports(self, network_id=None, device_owner=None, **kwargs):
        return {"ports": [p for p in self.network["ports"]
                          if device_owner is None or p["device_owner"] == device_owner]}

    def list_floatingips(self, **kwargs):
        return {"floatingips": []}

    def list_extensions(self):
        return {"extensions": []}

    def show_network(self, net_id, fields=None):  # a flat, untunnelled network
        return {"network": {"id": net_id, "provider:network_type": "flat",
                            "provider:physical_network": None}}

    def __getattr__(self, name):
        raise AttributeError(f"the interop stub of Neutron has no {name}")


def network_info(payload):
    """Nova's own VIFs for the instance's ports."""
    from nova import context
    from nova.network import model as network_model
    from nova.network import neutron as neutron_api

    net = payload["network"]
    client = _Neutron(net)
    neutron_api.get_client = lambda *args, **kwargs: client
    api = neutron_api.API()
    networks = [{"id": net["id"], "name": net["name"], "tenant_id": net["project_id"],
                 "mtu": net["mtu"]}]
    vifs = []
    for port in net["ports"]:
        if port["device_id"] != payload["instance"]["uuid"]:
            continue
        port = dict(port, tenant_id=port["project_id"], status="ACTIVE", admin_state_up=True)
        port["binding:vif_type"] = network_model.VIF_TYPE_OVS
        port["binding:vif_details"] = {}
        port["binding:vnic_type"] = "normal"
        port["binding:profile"] = {}
        vif = api._build_vif_model(context.get_admin_context(), client, port, networks, [])
        vif["type"] = payload["vif_type"]
        vifs.append(vif)
    return network_model.NetworkInfo(vifs)


def main(payload):
    import nova.conf
    from nova import objects
    from nova.api.metadata import base, handler
    from nova.network import security_group_api

    objects.register_all()
    from oslo_log import log

    conf = nova.conf.CONF
    log.register_options(conf)
    conf([], project="nova", default_config_files=[])
    conf.set_override("service_metadata_proxy", True, "neutron")
    conf.set_override("metadata_proxy_shared_secret", payload["secret"], "neutron")
    conf.set_override("dhcp_domain", payload["dhcp_domain"], "api")
    conf.set_override("local_metadata_per_cell", True, "api")
    conf.set_override("metadata_cache_expiration", 0, "api")

    d = payload["instance"]
    instance = _instance(d, network_info(payload))
    groups = [{"name": n} for n in d["security_groups"]]

    # The servers Nova would ask: its database and Neutron.
    objects.BlockDeviceMappingList.get_by_instance_uuid = classmethod(
        lambda cls, ctxt, uuid, use_slave=False: objects.BlockDeviceMappingList(objects=[]))
    security_group_api.get_instance_security_groups = lambda ctxt, inst, detailed=False: groups

    def by_instance_id(instance_id, address, ctxt=None):
        if instance_id != instance.uuid:
            raise base.exception.InstanceNotFound(instance_id=instance_id)
        return base.InstanceMetadata(instance, address)

    base.get_metadata_by_instance_id = by_instance_id
    # The password POST reads the instance again and saves it.
    objects.Instance.get_by_uuid = classmethod(lambda cls, ctxt, uuid, **kw: instance)
    objects.Instance.save = lambda self, *args, **kwargs: None
    app = handler.MetadataRequestHandler()

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args):
            pass

    class Server(ThreadingMixIn, WSGIServer):
        daemon_threads = True

    server = make_server("127.0.0.1", 0, app, server_class=Server, handler_class=Quiet)
    print(json.dumps({"port": server.server_address[1]}), flush=True)
    sys.stdout.close()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    threading.Event().wait()
