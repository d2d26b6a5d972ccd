"""Resource budgets: refuse work whose memory estimate, from shapes alone, is above the budget.

The default budget is 4 GB (``--max-memory``). Estimates are taken before anything is allocated:
the unpacked size of an archive, the size of a folded constant, the shape of every value in the
graph, and each per-layer method's working set (:func:`method_bytes`). A refusal is one line that
names the node, the estimate and the flag that raises the budget.
"""

from __future__ import annotations

import math
import re

from lipaudit.errors import LipauditError

DEFAULT_MAX_MEMORY = 4 * 10**9
_UNITS = {"": 1, "B": 1, "K": 10**3, "KB": 10**3, "M": 10**6, "MB": 10**6, "G": 10**9, "GB": 10**9,
          "T": 10**12, "TB": 10**12, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


class BudgetError(LipauditError):
    """The work asked for needs more memory (or time) than the budget allows."""

    code = "LIP107"


def parse_size(text: str) -> int:
    """``4GB``, ``500MB``, ``2GiB``, ``1e9`` -> bytes; a usage error otherwise."""
    from lipaudit.errors import UsageError

    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([A-Za-z]*)\s*", str(text))
    unit = m.group(2).upper() if m else None
    if m is None or unit not in _UNITS:
        raise UsageError(f"--max-memory {text!r}: expected a size such as 4GB, 500MB or 2GiB")
    value = float(m.group(1)) * _UNITS[unit]
    if not math.isfinite(value) or value < 1:
        raise UsageError(f"--max-memory {text!r}: must be a positive, finite size")
    return int(value)


def human(n: float) -> str:
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


def refuse(what: str, need: float, budget: int) -> BudgetError:
    return BudgetError(f"{what} needs about {human(need)}, above the memory budget of {human(budget)}; "
                       f"raise it with --max-memory {_suggest(need)}")


def _suggest(need: float) -> str:
    return f"{max(1, math.ceil(need * 1.25 / 1e9))}GB"


def require(what: str, need: float, budget: int | None) -> None:
    """Raise :class:`BudgetError` when ``need`` bytes exceed the budget (None: no budget)."""
    if budget is not None and not need <= budget:
        raise refuse(what, need, budget)
