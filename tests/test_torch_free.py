"""The ONNX path never imports torch (start-up time and memory): only torch-only features may."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = """
import sys
from lipaudit.runner import CheckOptions, run_check
# the attained value (on by default with certified) is a torch feature: asked off here
report = run_check(sys.argv[1], CheckOptions(method=sys.argv[2], attained=False))
assert report["verdict"] in ("pass", "fail"), report["verdict"]
assert "torch" not in sys.modules, "torch imported"
print("ok")
"""


@pytest.mark.parametrize("method", ["tn", "certified"])
def test_onnx_check_does_not_import_torch(method):
    model = ROOT / "sample_models" / "digits_cnn_bn.onnx"
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(model), method], capture_output=True, text=True,
                          cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]
