"""plan.Run: a dry run reports the actions it would apply; a failure undoes what this run
did, newest first, and names every undo that failed."""

from __future__ import annotations

import pytest

from mdtool.errors import BadInput, OperationFailed
from mdtool.plan import Action, Run, Step, StepFailed


def steps(log: list[str], fail_at: str | None = None, bad_undo: str | None = None):
    def act(name):
        def do():
            if name == fail_at:
                raise OperationFailed(f"{name} broke")
            log.append(f"do {name}")
            return [f"{name} (done)"] if name == "b" else None

        def undo():
            if name == bad_undo:
                raise OperationFailed(f"{name} would not go")
            log.append(f"undo {name}")
        return Action(name, do, undo)
    return [Step("one", [act("a"), act("b")]), Step("two", [act("c")])]


def test_dry_run_reports_the_plan_and_applies_nothing():
    log: list[str] = []
    seen: list[tuple[str, list[str]]] = []
    run = Run(dry_run=True, on_step=lambda s: seen.append((s.name, s.changes)))
    for s in steps(log):
        run.apply(s)
    assert log == [] and seen == [("one", ["a", "b"]), ("two", ["c"])]


def test_real_run_reports_what_each_action_did():
    log: list[str] = []
    run = Run(dry_run=False)
    for s in steps(log):
        run.apply(s)
    assert log == ["do a", "do b", "do c"]
    assert [s.changes for s in run.steps] == [["a", "b (done)"], ["c"]]


def test_failure_rolls_back_newest_first_and_reports_a_failed_undo():
    log: list[str] = []
    run = Run(dry_run=False)
    one, two = steps(log, fail_at="c", bad_undo="a")
    run.apply(one)
    with pytest.raises(StepFailed) as e:
        run.apply(two)
    assert log == ["do a", "do b", "undo b"]
    assert str(e.value) == ("step 'two' failed: c broke; rolled back: b; "
                            "could not undo: a (a would not go)")


def test_a_plan_that_fails_changes_nothing():
    run = Run(dry_run=False)

    def planner():
        raise BadInput("127.0.0.1:8775 is held by pid 1 (user root: init), not by mdtool")

    with pytest.raises(StepFailed, match="not by mdtool; nothing was changed$"):
        run.plan("metadata service", planner)
