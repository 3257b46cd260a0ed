"""Find and render the Jinja templates under ``templates/``.

An installed wheel carries them as ``mdtool/templates/`` (pyproject force-includes the
top-level folder there); an editable install or a checkout reads the repository's
top-level ``templates/``.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import jinja2

_PACKAGE_DIR = Path(__file__).resolve().parent


def templates_dir() -> Path:
    for candidate in (_PACKAGE_DIR / "templates", _PACKAGE_DIR.parent / "templates"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(
        f"no templates folder next to {_PACKAGE_DIR} (broken installation?)")


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render(name: str, **ctx) -> str:
    """Render ``templates/<name>`` with ``ctx``; an unknown variable is an error."""
    return _environment().get_template(name).render(**ctx)
