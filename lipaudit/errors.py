"""Errors that end an audit with exit code 2 and one clear line."""

from __future__ import annotations


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first line of an exception's message, for one-line errors."""
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:limit]


class LipauditError(Exception):
    """Base class: the audit could not decide. ``str(err)`` is the one-line message."""

    exit_code = 2


class ModelLoadError(LipauditError):
    """The model file is missing, unreadable, malformed, or unsafe to load."""


class InputShapeError(LipauditError):
    """A static input shape is needed and could not be determined."""


class UnsupportedOpError(LipauditError):
    """An operator has no Lipschitz rule, or no global Lipschitz constant exists."""

    def __init__(self, op: str, node: str, reason: str, hint: str | None = None, slot: str | None = None):
        self.op, self.node, self.reason, self.hint, self.slot = op, node, reason, hint, slot
        where = f"node {node!r}" + (f", slot {slot!r}" if slot else "")
        super().__init__(f"cannot bound op {op!r} at {where}: {reason}" + (f"; {hint}" if hint else ""))


class UsageError(LipauditError):
    """Bad command-line usage or settings."""
