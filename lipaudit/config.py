"""Settings from ``[tool.lipaudit]`` in the nearest ``pyproject.toml`` (flags override them)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lipaudit.errors import UsageError

KEYS = {
    "method", "compare", "input-shape", "input-range", "output", "until", "seed", "iters", "tol", "device",
    "max-lipschitz", "max-layer-norm", "baseline", "max-increase", "format", "jobs", "stride", "max-memory",
}
# settings that let a file run code: a config file found in some parent folder must never grant them
TRUST_KEYS = {"trust-pickle", "arch"}


def find_pyproject(start: Path | None = None) -> Path | None:
    here = (start or Path.cwd()).resolve()
    for folder in [here, *here.parents]:
        candidate = folder / "pyproject.toml"
        if candidate.is_file():
            return candidate
    return None


def load_config(start: Path | None = None) -> dict[str, Any]:
    """The ``[tool.lipaudit]`` table of the nearest pyproject.toml, or ``{}``."""
    path = find_pyproject(start)
    if path is None:
        return {}
    try:
        import tomllib
    except ImportError:  # Python 3.10
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ImportError:
            return {}
    try:
        data = tomllib.loads(path.read_text())
    except Exception as exc:
        raise UsageError(f"{path}: cannot parse ({exc})") from None
    table = data.get("tool", {}).get("lipaudit", {})
    if not isinstance(table, dict):
        raise UsageError(f"{path}: [tool.lipaudit] is not a table")
    trusted = sorted(set(table) & TRUST_KEYS)
    if trusted:
        raise UsageError(f"{path}: [tool.lipaudit] sets {', '.join(trusted)}; trust is only given on the command line "
                         f"(--trust-pickle, --arch), never by a config file")
    unknown = set(table) - KEYS
    if unknown:
        raise UsageError(f"{path}: unknown [tool.lipaudit] key(s) {sorted(unknown)}; known: {sorted(KEYS)}")
    return table
