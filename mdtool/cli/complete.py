"""Shell completion of resource names from the registry (networks, subnets, ports, instances).

A completion callback runs on every <TAB>: it never raises and never creates anything
(no database is made when there is none); any trouble completes to nothing.
"""

from __future__ import annotations

from click.shell_completion import CompletionItem


def _registry(ctx):
    root = ctx.find_root()
    obj = root.obj
    if obj is not None and hasattr(obj, "registry"):
        return obj.registry
    from pathlib import Path

    from mdtool.config import Config
    p = root.params
    cfg = Config(p.get("state_dir"), p.get("db_url"), p.get("config_file"))
    if cfg.db_url.startswith("sqlite:///") and not Path(cfg.db_url[len("sqlite:///"):]).exists():
        return None
    from mdtool.registry import open_registry
    return open_registry(cfg.db_url)


def _items(objects, incomplete: str, describe) -> list[CompletionItem]:
    out: list[CompletionItem] = []
    seen: set[str] = set()
    for o in objects:
        for value in (o.name, o.id):
            if value and value.startswith(incomplete) and value not in seen:
                # ids only when typed: a name is what an operator means
                if value == o.id and o.name and not incomplete:
                    continue
                seen.add(value)
                out.append(CompletionItem(value, help=describe(o)))
    return out


def _complete(lister, describe):
    def complete(ctx, param, incomplete: str) -> list[CompletionItem]:
        try:
            reg = _registry(ctx)
            if reg is None:
                return []
            return _items(lister(reg), incomplete or "", describe)
        except BaseException:  # noqa: BLE001 -- completion must never fail the shell
            return []
    return complete


networks = _complete(lambda r: r.list_networks(), lambda n: f"network {n.id}")
subnets = _complete(lambda r: r.list_subnets(), lambda s: f"subnet {s.cidr} {s.id}")
ports = _complete(lambda r: r.list_ports(),
                  lambda p: "port " + ", ".join(f.ip_address for f in p.fixed_ips))
instances = _complete(lambda r: r.list_instances(), lambda i: f"instance {i.id}")
