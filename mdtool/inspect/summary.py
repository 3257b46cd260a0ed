"""inspect with no NETWORK: one line for the node and a row per network (pure)."""

from __future__ import annotations

from mdtool.inspect.checks import Check
from mdtool.inspect.report import Report


def first_failure(checks: list[Check]) -> Check | None:
    """The root cause: checks run in dependency order, so the first failure is it."""
    return next((c for c in checks if not c.ok), None)


def line(reports: list[Report], orphans: list[str]) -> str:
    """``30 networks: 29 ok, 1 failing: net7 (dnsmasq running)``; orphans and their fix."""
    failing = [r for r in reports if not r.ok]
    text = f"{len(reports)} network{'s' if len(reports) != 1 else ''}: " \
           f"{len(reports) - len(failing)} ok, {len(failing)} failing"
    if failing:
        shown = ", ".join(f"{r.observation.ref} ({first_failure(r.checks).name})"
                          for r in failing[:5])
        text += ": " + shown + (f", … {len(failing) - 5} more" if len(failing) > 5 else "")
    if orphans:
        text += f"; {len(orphans)} orphan(s) the registry no longer knows (fix: mdtool cleanup)"
    return text


def rows(reports: list[Report]) -> list[dict]:
    out = []
    for r in reports:
        o, bad = r.observation, first_failure(r.checks)
        out.append({"network": o.network.name, "id": o.network.id,
                    "status": "ok" if bad is None else "FAIL",
                    "cause": "" if bad is None else f"{bad.name}: {bad.cause or bad.detail}",
                    "fix": "" if bad is None else bad.fix})
    return out
