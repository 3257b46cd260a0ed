"""The registry: networks, subnets, ports and instances (SQLite or PostgreSQL)."""

from mdtool.registry.api import Registry, open_registry

__all__ = ["Registry", "open_registry"]
