"""Run one driver module inside .venv-openstack: JSON in on stdin, JSON out to a file.

    .venv-openstack/bin/python tests/interop/drivers/run.py MODULE OUT_PATH < payload.json

MODULE is a file of this folder (without .py) with ``main(payload) -> JSON-able``. The
result goes to OUT_PATH, not stdout, so whatever OpenStack's libraries print or log cannot
corrupt it. A driver that serves (``--serve``) prints one JSON line on stdout when it is
ready and runs until it is terminated; that mode has no OUT_PATH.
"""

import importlib
import json
import sys
import warnings
from pathlib import Path


def main() -> int:
    warnings.simplefilter("ignore")  # eventlet, pkg_resources... noise on stderr otherwise
    here = Path(__file__).resolve().parent
    sys.path.insert(0, str(here))
    module, out = sys.argv[1], sys.argv[2]
    payload = json.load(sys.stdin)
    result = importlib.import_module(module).main(payload)
    if out == "--serve":
        return 0
    with open(out, "w") as f:
        json.dump(result, f)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
