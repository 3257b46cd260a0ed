"""Observe -> plan (pure) -> apply, shared by enable and disable.

A ``Step`` is a named list of ``Action``s planned from one observation: each has the text a
dry run prints, ``do`` (which returns what it did as a list of text, anything else meaning
"its text") and an
optional ``undo``. ``Run`` applies steps in order; when an action fails, what this run did
is undone in reverse, and an undo that fails is reported in the error, never swallowed.
A dry run prints the same actions and applies none.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

from mdtool.errors import MdtoolError, OperationFailed


@dataclass
class Action:
    text: str
    do: Callable[[], Sequence[str] | object]
    undo: Callable[[], object] | None = None


@dataclass
class Step:
    name: str
    actions: list[Action] = field(default_factory=list)
    note: str = ""
    changes: list[str] = field(default_factory=list)  # what was done, or planned (dry run)


class StepFailed(OperationFailed):
    pass


class Run:
    """Apply (or, with ``dry_run``, only report) steps in order, with rollback."""

    def __init__(self, *, dry_run: bool, on_step: Callable[[Step], None] = lambda s: None):
        self.dry_run = dry_run
        self.on_step = on_step
        self.steps: list[Step] = []
        self._undo: list[Action] = []
        self._applied = 0

    def plan(self, name: str, planner: Callable[[], Step]) -> Step:
        """Call a planner (observation and pure planning); a failure is a failed step."""
        try:
            step = planner()
        except MdtoolError as e:
            raise self.failed(name, e) from e
        step.name = name
        return step

    def apply(self, step: Step) -> Step:
        if self.dry_run:
            step.changes = [a.text for a in step.actions]
        else:
            for action in step.actions:
                try:
                    did = action.do()
                except MdtoolError as e:
                    raise self.failed(step.name, e) from e
                self._applied += 1
                step.changes += list(did) if isinstance(did, (list, tuple)) else [action.text]
                if action.undo is not None:
                    self._undo.append(action)
        self.steps.append(step)
        self.on_step(step)
        return step

    def failed(self, name: str, error: MdtoolError) -> StepFailed:
        undone, not_undone = self.rollback()
        msg = f"step '{name}' failed: {error}"
        if undone:
            msg += f"; rolled back: {', '.join(undone)}"
        if not_undone:
            msg += f"; could not undo: {'; '.join(not_undone)}"
        if not self._applied:
            msg += "; nothing was changed"
        return StepFailed(msg)

    def rollback(self) -> tuple[list[str], list[str]]:
        """Undo what this run did, newest first; (what was undone, what could not be and why).
        Every undo is tried: one that fails does not keep the others from running."""
        undone, not_undone = [], []
        while self._undo:
            action = self._undo.pop()
            try:
                action.undo()
            except (MdtoolError, OSError) as e:
                not_undone.append(f"{action.text} ({e})")
            else:
                undone.append(action.text)
        return undone, not_undone
