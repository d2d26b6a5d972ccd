"""docs/soundness.md is generated from the rule registry; it must list every rule as registered now."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_soundness_doc_is_up_to_date():
    spec = importlib.util.spec_from_file_location("soundness_table", ROOT / "scripts" / "soundness_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    current = (ROOT / "docs" / "soundness.md").read_text()
    assert current == module.render(), "docs/soundness.md is stale: run `python scripts/soundness_table.py`"
