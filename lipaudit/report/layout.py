"""Fit the per-layer table to a terminal width without ever cutting a number.

Columns have a priority. When the table is too wide, the least useful go first, in this order:
``time``, ``share``, ``stride``, then headers are abbreviated (``BN folded`` -> ``BN``,
``kernel`` -> ``k``), then names wrap, then ``input``, ``BN``, ``module``, ``op``, ``kernel``, ``#``, the
ratio columns and, last, compared methods other than ``exact``; the legend names what was left
out. The layer name wraps to at most two lines (a longer one keeps its start and end around ``…``).
Numbers are never shortened, wrapped or cut, and the selected method, ``certified`` and ``exact``
are always shown (the table is wider than the terminal rather than cut). ``wide`` shows every column.
Pure: cells in, a plan out; :mod:`lipaudit.report.table` draws it with rich.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

# rich's default box with padding (0, 1): one border per column plus one, and one space each side
BORDER = 3
NAME_MIN = 8  # the layer column is never narrower than this (names are then shortened to two lines)
DROP_ORDER = ["time", "share", "stride", "<abbreviate>", "input", "BN folded", "module", "op", "kernel", "#", "<ratios>",
              "<compared>"]
SHORT = {"BN folded": "BN", "kernel": "k", "stride": "s"}


@dataclass
class Column:
    key: str  # header in full
    cells: list[str]  # plain text of every cell (for widths)
    justify: str = "left"
    number: bool = False  # never cut, never wrapped
    ratio: bool = False
    compared: bool = False  # a --compare method other than exact: the last to go, with a note

    def width(self, header: str) -> int:
        return max([len(header)] + [len(c) for c in self.cells])


@dataclass
class Plan:
    columns: list[Column]  # the shown ones, in order (layer included)
    headers: dict[str, str]  # key -> header shown
    name_width: int  # width of the layer column
    names: list[str]  # layer names as shown (abbreviated when longer than two lines)
    dropped: list[str] = field(default_factory=list)
    width: int = 0  # the table's width

    def header(self, key: str) -> str:
        return self.headers.get(key, key)


def shorten(name: str, width: int, lines: int = 2) -> str:
    """``name`` if it fits in ``lines`` lines of ``width``, else its start and end around ``…``."""
    room = width * lines
    if len(name) <= room:
        return name
    head = (room - 1) // 2
    tail = room - 1 - head
    return name[:head] + "…" + name[-tail:]


def _table_width(columns: list[Column], headers: dict[str, str], name_width: int) -> int:
    total = 1
    for c in columns:
        total += (name_width if c.key == "layer" else c.width(headers.get(c.key, c.key))) + BORDER
    return total


def plan(columns: list[Column], names: list[str], width: int, wide: bool = False) -> Plan:
    """Which columns to show, with which headers, and how wide the layer column is."""
    headers: dict[str, str] = {}
    longest = max([len("layer")] + [len(n) for n in names])
    if wide:
        return Plan(columns, headers, longest, list(names), width=_table_width(columns, headers, longest))
    shown = list(columns)
    dropped: list[str] = []

    def name_width_for(cols) -> int:
        others = _table_width([c for c in cols if c.key != "layer"], headers, 0) + BORDER
        return max(NAME_MIN, min(longest, width - others))

    def fits(cols, wrap: bool) -> bool:
        w = name_width_for(cols)
        need = math.ceil(longest / 2) if wrap else longest
        return _table_width(cols, headers, w) <= width and w >= min(longest, need)

    # first keep names on one line by dropping the least useful columns; only then wrap names
    wrap = False
    before_wrap: set[str] = set()
    for step in DROP_ORDER:
        if fits(shown, wrap):
            break
        if step == "input" and not wrap:
            wrap = True
            if fits(shown, wrap):
                break
        if step == "<abbreviate>":
            headers.update(SHORT)
        elif step in ("<ratios>", "<compared>"):
            flag = "ratio" if step == "<ratios>" else "compared"
            for c in reversed([c for c in shown if getattr(c, flag)]):  # put back one by one below if room
                if fits(shown, wrap):
                    break
                shown = [x for x in shown if x is not c]
                dropped.append(c.key)
        elif any(c.key == step for c in shown):
            shown = [c for c in shown if c.key != step]
            dropped.append(step)
            if not wrap:
                before_wrap.add(step)
    # put back what fits again, most useful first (dropping a wide ratio column may leave room for '#');
    # a column dropped to keep names on one line comes back only if names still fit on one line
    order = {id(c): i for i, c in enumerate(columns)}
    for key in reversed(list(dropped)):
        trial = sorted(shown + [c for c in columns if c.key == key], key=lambda c: order[id(c)])
        if fits(trial, wrap and key not in before_wrap):
            shown = trial
            dropped.remove(key)
    name_width = name_width_for(shown)
    shown_names = [shorten(n, name_width) for n in names]
    return Plan(shown, headers, name_width, shown_names, dropped, _table_width(shown, headers, name_width))
