"""Domain exceptions. The CLI maps them to exit codes: BadInput -> 2, OperationFailed -> 1."""


class MdtoolError(Exception):
    """Base for every error meant for the operator (one line, no traceback)."""

    exit_code = 1


class BadInput(MdtoolError):
    """Malformed or conflicting input; nothing was changed."""

    exit_code = 2


class NotFound(BadInput):
    """A name or id that matches nothing."""


class Conflict(BadInput):
    """Input that is well formed but clashes with what exists."""


class OperationFailed(MdtoolError):
    """A step that should have worked did not (kernel, process, filesystem)."""

    exit_code = 1
