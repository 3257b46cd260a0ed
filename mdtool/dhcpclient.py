"""A DHCP client for an instance namespace that mdtool plugged (``port-plug --dhcp``, the
demo): Debian's udhcpc asking for option 121, with mdtool's own hook script, which
configures only the interface inside the namespace and never the host's resolv.conf."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from mdtool import process
from mdtool.errors import OperationFailed
from mdtool.templates import render


def lease(namespace: str, ifname: str = "eth0", attempts: int = 6) -> list[str]:
    """Get a lease on ``ifname`` in ``namespace`` (address and option 121 routes installed);
    returns the namespace's IPv4 routes afterwards."""
    script_dir = Path(tempfile.mkdtemp(prefix="mdtool-udhcpc-"))
    script = script_dir / "udhcpc.sh"
    script.write_text(render("instance/udhcpc.sh.j2", namespace=namespace))
    os.chmod(script, 0o700)
    try:
        res = process.run(["udhcpc", "-i", ifname, "-n", "-q", "-f", "-O", "staticroutes",
                           "-s", str(script), "-t", str(attempts), "-T", "1", "-A", "1"],
                          netns=namespace, check=False, timeout=30)
        if res.returncode != 0:
            raise OperationFailed(f"no DHCP lease in {namespace}: {res.stderr.strip()[-200:]}")
        return process.run(["ip", "-4", "route"], netns=namespace).stdout.strip().splitlines()
    finally:
        script.unlink(missing_ok=True)
        script_dir.rmdir()
