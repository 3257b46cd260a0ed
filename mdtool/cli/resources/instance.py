"""instance-create, instance-list, instance-show, instance-update, instance-delete."""

from __future__ import annotations

import json

import click

from mdtool.cli import complete
from mdtool.cli import records
from mdtool.cli.output import format_options
from mdtool.cli.resources.common import delete_each, emit_list, emit_one, pass_ctx
from mdtool.errors import BadInput
from mdtool.model import DEFAULT_FLAVOR


def _read_file(path: str, what: str, limit: int) -> bytes:
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except OSError as e:
        raise BadInput(f"cannot read {what} file {path}: {e.strerror}") from None
    except ValueError:  # a NUL byte in the path
        raise BadInput(f"cannot read {what} file {path!r}: not a valid path") from None
    if len(data) > limit:
        raise BadInput(f"{what} file {path} is larger than {limit} bytes ({limit // 1024} KiB)")
    return data


def _public_key(path: str | None) -> str | None:
    if path is None:
        return None
    from mdtool.registry import validate
    raw = _read_file(path, "public key", 16384)
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        raise BadInput(f"public key file {path} is not text") from None
    return validate.public_key(text, f"public key file {path}")


def _vendor_data(path: str | None):
    if path is None:
        return None
    raw = _read_file(path, "vendor data", 65536)
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise BadInput(f"vendor data file {path} is not JSON") from None
    if not isinstance(data, dict):
        raise BadInput(f"vendor data file {path} must hold a JSON object")
    return data


def _meta(items) -> dict[str, str]:
    from mdtool.registry import validate
    return dict(validate.meta_item(m) for m in items)


@click.command("instance-create")
@click.argument("name")
@click.option("--project-id", default="admin", show_default=True, metavar="P",
              help="Project (tenant) of the instance; its ports default to it.")
@click.option("--hostname", metavar="H", help="Default: derived from NAME.")
@click.option("--user-data", metavar="FILE", help="User-data file (kept as bytes; 64 KiB at most).")
@click.option("--key-name", metavar="K", help="Name of the SSH key (with --public-key).")
@click.option("--public-key", metavar="FILE", help="OpenSSH public key file (with --key-name).")
@click.option("--meta", multiple=True, metavar="KEY=VALUE", help="Metadata item (repeatable).")
@click.option("--vendor-data", metavar="FILE", help="JSON object served as vendor_data.json.")
@click.option("--id", "instance_id", metavar="UUID",
              help="Keep this id (a real Nova's instance UUID, when mdtool stands in for Neutron).")
@click.option("--flavor", default=DEFAULT_FLAVOR, show_default=True, metavar="NAME",
              help="Flavor name (the EC2 instance-type).")
@format_options
@pass_ctx
def instance_create(ctx, name, project_id, hostname, user_data, key_name, public_key, meta,
                    vendor_data, instance_id, flavor, fmt, columns):
    """Record an instance: what Nova would know of it."""
    from mdtool.registry.api import USER_DATA_MAX
    ud = _read_file(user_data, "user-data", USER_DATA_MAX) if user_data else None
    i = ctx.registry.create_instance(
        name, project_id=project_id, hostname=hostname, user_data=ud, key_name=key_name,
        public_key=_public_key(public_key), meta=_meta(meta), vendor_data=_vendor_data(vendor_data),
        instance_id=instance_id, flavor=flavor)
    emit_one(records.instance(i), fmt, columns, "Created a new instance:")


@click.command("instance-list")
@format_options(listing=True)
@pass_ctx
def instance_list(ctx, fmt, columns):
    """List instances."""
    emit_list([records.instance(i) for i in ctx.registry.list_instances()],
              ["id", "name", "hostname", "project_id"], fmt, columns)


@click.command("instance-show")
@click.argument("instance", shell_complete=complete.instances)
@format_options
@pass_ctx
def instance_show(ctx, instance, fmt, columns):
    """Show an instance (name or id)."""
    emit_one(records.instance(ctx.registry.get_instance(instance)), fmt, columns)


@click.command("instance-update")
@click.argument("instance", shell_complete=complete.instances)
@click.option("--name", help="New name.")
@click.option("--hostname", metavar="H", help="New hostname (meta_data.json, EC2 hostname).")
@click.option("--user-data", metavar="FILE", help="Replace the user-data.")
@click.option("--no-user-data", is_flag=True, help="Remove the user-data.")
@click.option("--key-name", metavar="K", help="Add an SSH key (with --public-key).")
@click.option("--public-key", metavar="FILE",
              help="OpenSSH public key file, added under the --key-name given.")
@click.option("--meta", multiple=True, metavar="KEY=VALUE", help="Set a metadata item (repeatable).")
@click.option("--unset-meta", multiple=True, metavar="KEY", help="Remove a metadata item.")
@click.option("--vendor-data", metavar="FILE", help="Replace the vendor data (JSON object).")
@click.option("--flavor", metavar="NAME", help="New flavor name (the EC2 instance-type).")
@format_options
@pass_ctx
def instance_update(ctx, instance, name, hostname, user_data, no_user_data, key_name, public_key,
                    meta, unset_meta, vendor_data, flavor, fmt, columns):
    """Change an instance; the metadata service serves the change at once."""
    from mdtool.registry.api import USER_DATA_MAX
    if user_data and no_user_data:
        raise BadInput("--user-data and --no-user-data exclude each other")
    ud = _read_file(user_data, "user-data", USER_DATA_MAX) if user_data else None
    i = ctx.registry.update_instance(
        instance, name=name, hostname=hostname, user_data=ud, clear_user_data=no_user_data,
        meta=_meta(meta), unset_meta=unset_meta, key_name=key_name,
        public_key=_public_key(public_key), vendor_data=_vendor_data(vendor_data), flavor=flavor)
    emit_one(records.instance(i), fmt, columns, "Updated instance:")


@click.command("instance-delete")
@click.argument("instances", nargs=-1, required=True, metavar="INSTANCE...",
                shell_complete=complete.instances)
@pass_ctx
def instance_delete(ctx, instances):
    """Delete instances and, as Nova does, their compute ports (a plugged port is unplugged
    first)."""
    from mdtool.teardown import delete_instance

    def delete(ref: str) -> list[str]:
        i, ports, unplugged = delete_instance(ctx.config, ctx.registry, ref)
        return [f"unplug: {c}" for c in unplugged] + [f"Deleted instance: {i.name} ({i.id})"] + [
            f"Deleted port: {p.name or p.id} ({', '.join(f.ip_address for f in p.fixed_ips)})"
            for p in ports]
    delete_each(ctx, "instance", instances, delete)


@click.command("instance-clear-password")
@click.argument("instance", shell_complete=complete.instances)
@pass_ctx
def instance_clear_password(ctx, instance):
    """Forget the password the instance posted (Nova's clear-password), so it may post a new one."""
    i, was_set = ctx.registry.clear_instance_password(instance)
    if was_set:
        click.echo(f"Cleared the password of instance {i.name} ({i.id})")
    else:
        click.echo(f"Instance {i.name} ({i.id}) has no password: nothing to clear")


COMMANDS = [instance_create, instance_list, instance_show, instance_update, instance_delete,
            instance_clear_password]
