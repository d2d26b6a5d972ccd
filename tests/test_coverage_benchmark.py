"""benchmarks/coverage.py: skips cleanly without torchvision, and renders every kind of row."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "coverage.py"


def _module():
    spec = importlib.util.spec_from_file_location("coverage_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_skips_cleanly_without_torchvision(tmp_path):
    if importlib.util.find_spec("torchvision") is not None:
        pytest.skip("torchvision is installed here")
    out = tmp_path / "coverage.md"
    done = subprocess.run([sys.executable, str(SCRIPT), "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0
    assert "torchvision is not importable" in done.stderr and "skipped" in done.stderr
    assert not out.exists()


def test_render_covers_certified_refused_infinite_and_failed_rows():
    m = _module()
    row = dict(time_s=1.0, layers=3, layers_with_values=3, certified=12.5, kind="upper", valid_on=None,
               refused_ops=[], first_reason=None, eps_layers=2)
    refused = dict(row, certified=None, kind=None, refused_ops=["Mul"], first_reason="a product", eps_layers=0)
    domain = dict(row, certified="inf", valid_on=[-3.0, 3.0])
    rows = {"resnet18": {"global": row, "domain": domain}, "mobilenet_v3_small": {"global": refused, "domain": refused},
            "vit_b_16": {"error": "RuntimeError: export failed"}}
    text = m.render(rows, 64, "torch x", "a test machine")
    assert "| resnet18 | 3 of 3 layers | 12.5 (upper); 2 eps-based norm factor(s) (LIP014) | inf (upper" in text
    assert "| mobilenet_v3_small | 3 of 3 layers | refused: Mul |" in text
    assert "| vit_b_16 | not run: RuntimeError: export failed |" in text
    assert "| densenet121 | not run: missing |" in text
