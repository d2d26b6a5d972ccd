"""Settings from ``[tool.lipaudit]`` in the nearest ``pyproject.toml`` (flags override them).

Values are checked by the very click parameter types of the flags they stand for, and handed to
click as the command's ``default_map``: one set of types and choices, one merge (click's own).
Config files never grant trust: options that run code or waive a safety check stay command-line only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lipaudit.errors import UsageError

# config key -> the long flag it stands for (same name without the dashes)
KEYS = (
    "method", "compare", "input-shape", "input-range", "output", "until", "seed", "iters", "tol", "device",
    "expansion-budget", "max-lipschitz", "max-layer-norm", "baseline", "max-increase", "format", "jobs", "stride",
    "max-memory",
    "ignore", "select", "wide",
)
NUMBER_OR_TEXT = {"max-increase", "max-memory"}  # text flags that also take a plain number (0.05, bytes)
TABLES = ("waive",)  # [[tool.lipaudit.waive]]: per-layer waivers (lipaudit.suppress)
COMMAND_LINE_ONLY = {
    "trust-pickle": "loading pickled code is trusted only from the command line (--trust-pickle)",
    "arch": "importing an architecture runs code; give --arch on the command line",
    "allow-baseline-mismatch": "comparing with a baseline computed differently is a per-run decision "
                               "(--allow-baseline-mismatch)",
}


def find_pyproject(start: Path | None = None) -> Path | None:
    here = (start or Path.cwd()).resolve()
    for folder in [here, *here.parents]:
        candidate = folder / "pyproject.toml"
        if candidate.is_file():
            return candidate
    return None


def load_config(start: Path | None = None) -> tuple[dict[str, Any], Path | None]:
    """The ``[tool.lipaudit]`` table of the nearest pyproject.toml (or ``{}``) and that file's path."""
    path = find_pyproject(start)
    if path is None:
        return {}, None
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8", errors="replace"))
    except Exception as exc:
        raise UsageError(f"{path}: cannot parse ({exc})") from None
    table = data.get("tool", {}).get("lipaudit", {})
    if not isinstance(table, dict):
        raise UsageError(f"{path}: [tool.lipaudit] must be a table")
    for key, why in COMMAND_LINE_ONLY.items():
        if key in table:
            raise UsageError(f"{path}: [tool.lipaudit] {key} is not allowed in a config file: {why}")
    unknown = sorted(set(table) - set(KEYS) - set(TABLES))
    if unknown:
        raise UsageError(f"{path}: unknown [tool.lipaudit] key(s) {', '.join(unknown)}; known: {', '.join(KEYS + TABLES)}")
    return table, path


def _annotation(param):
    """The Python type a flag converts to: typer's annotation (typer >= 0.2x, which vendors click)
    or the click type's name (older typer)."""
    descriptor = getattr(param, "type_descriptor", None)
    if descriptor is not None:
        return descriptor.annotation
    return {"float": float, "integer": int, "boolean": bool}.get(getattr(param.type, "name", ""), str)


def _base(annotation):
    import typing

    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    origin = typing.get_origin(annotation)
    if origin in (list, tuple) and args:
        return _base(args[0])
    if origin is typing.Union and args:
        return _base(args[0])
    return annotation


def expected(param) -> str:
    """How a flag's type reads in an error: ``a number``, ``one of tn, f4``..."""
    import enum

    base = _base(_annotation(param))
    choices = getattr(getattr(param, "type", None), "choices", None)
    if isinstance(base, type) and issubclass(base, enum.Enum):
        what = "one of " + ", ".join(str(m.value) for m in base)
    elif choices:
        what = "one of " + ", ".join(map(str, choices))
    elif base is float:
        what = "a number"
    elif base is int:
        what = "an integer"
    elif base is bool or getattr(param, "is_flag", False):
        what = "true or false"
    else:
        what = "a string"
    return f"a list of {what.removeprefix('a ').removeprefix('an ')}s or {what}" if param.multiple else what


def _convert(param, ctx, value):
    """The flag's own conversion and validation (click's type_cast_value, or typer's process_value)."""
    if hasattr(param, "type_cast_value"):
        return param.type_cast_value(ctx, value)
    return param.process_value(ctx, value)


def default_map(command, ctx, table: dict[str, Any], path: Path) -> dict[str, Any]:
    """``{param_name: value}`` for click, each value converted by the flag's own type.

    A wrong type or choice is one :class:`UsageError` naming the file, the key and what it expects.
    """
    by_flag = {}
    for param in command.params:
        for opt in getattr(param, "opts", []):
            if opt.startswith("--"):
                by_flag[opt[2:]] = param
    out: dict[str, Any] = {}
    for key, value in table.items():
        if key in TABLES:
            continue
        param = by_flag.get(key)
        if param is None:  # a key of KEYS without a flag in this command
            continue
        want = expected(param)
        where = f"{path}: [tool.lipaudit] {key} = {value!r}"
        if param.multiple and isinstance(value, str):
            value = [value]
        base = _base(_annotation(param))
        values = value if param.multiple and isinstance(value, list) else [value]
        for v in values:
            # TOML has types: no number from a string, no bool for a number, no fraction for an integer
            bad = isinstance(v, (dict, list)) \
                or (base is not bool and base not in (int, float) and not isinstance(v, str)
                    and not (key in NUMBER_OR_TEXT and isinstance(v, (int, float)) and not isinstance(v, bool))) \
                or (base in (int, float) and (isinstance(v, (bool, str)))) \
                or (base is int and isinstance(v, float)) \
                or ((base is bool or getattr(param, "is_flag", False)) and not isinstance(v, bool))
            if bad:
                raise UsageError(f"{where}: expected {want}")
        if key in NUMBER_OR_TEXT and isinstance(value, (int, float)):
            value = str(value)
        try:
            _convert(param, ctx, value)
        except Exception:  # click's BadParameter (a UsageError), or a TypeError from an odd value
            raise UsageError(f"{where}: expected {want}") from None
        out[param.name] = value
    return out
