"""The installed versions of the packages named in the payload (a smoke test of the tier)."""

import importlib.metadata


def main(payload):
    return {name: importlib.metadata.version(name) for name in payload["packages"]}
