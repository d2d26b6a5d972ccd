"""Errors that end an audit with exit code 2 and one clear line.

The same classes are raised by the Python API (:func:`lipaudit.audit`,
:func:`lipaudit.certify`) and exported from ``lipaudit``; the CLI maps every
one of them to exit code 2 (``exit_code``) and a finding code (``code``).
"""

from __future__ import annotations


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first line of an exception's message, for one-line errors."""
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:limit]


class LipauditError(Exception):
    """Base class: the audit could not decide. ``str(err)`` is the one-line message."""

    exit_code = 2
    code = "LIP104"


class ModelLoadError(LipauditError):
    """The model file is missing, unreadable, malformed, or unsafe to load."""

    code = "LIP100"


class InputShapeError(LipauditError):
    """A static input shape is needed and could not be determined."""

    code = "LIP102"


class UnsupportedOpError(LipauditError):
    """An operator has no Lipschitz rule, or no global Lipschitz constant exists."""

    code = "LIP101"

    def __init__(self, op: str, node: str, reason: str, hint: str | None = None, slot: str | None = None):
        self.op, self.node, self.reason, self.hint, self.slot = op, node, reason, hint, slot
        where = f"node {node!r}" + (f", slot {slot!r}" if slot else "")
        super().__init__(f"cannot bound op {op!r} at {where}: {reason}" + (f"; {hint}" if hint else ""))


class UsageError(LipauditError):
    """Bad command-line usage or settings."""

    code = "LIP103"


class BaselineError(LipauditError):
    """The ``--baseline`` report could not be read."""

    code = "LIP105"


class BaselineMismatch(BaselineError):
    """The ``--baseline`` report was computed with other settings than this run: not comparable."""

    code = "LIP130"


class DataError(LipauditError):
    """Data given to ``certify`` is unusable: missing arrays, wrong shapes, labels out of range, NaN."""

    code = "LIP120"
