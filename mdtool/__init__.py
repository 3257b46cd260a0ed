"""mdtool: instance metadata for isolated networks, the Neutron way."""

__version__ = "0.1.0"
