"""docs/soundness.md is generated from the rule registry; it must list every rule as registered now."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _without_test_column(text: str) -> str:
    """The rules as documented, less the last column (which tests mention an op changes with every test edit)."""
    rows = []
    for line in text.splitlines():
        if line.startswith("| ") and line.count(" | ") >= 5:
            line = line[: line.rstrip(" |").rfind(" | ")]
        rows.append(line)
    return "\n".join(rows)


def test_soundness_doc_lists_every_rule_as_registered():
    spec = importlib.util.spec_from_file_location("soundness_table", ROOT / "scripts" / "soundness_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    current = (ROOT / "docs" / "soundness.md").read_text()
    assert _without_test_column(current) == _without_test_column(module.render()), \
        "docs/soundness.md is stale: run `python scripts/soundness_table.py`"
