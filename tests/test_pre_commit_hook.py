"""The pre-commit hook: valid, matches staged .onnx files only, and its entry gates on pyproject settings."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

import pytest
import yaml  # in the test extra: the hook definition is always checked

from tests.conftest import ROOT, SAMPLES


def test_hook_definition():
    hooks = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    assert [(h["id"], h["language"]) for h in hooks] == [("lipaudit", "python"), ("lipaudit-system", "system")]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    for hook in hooks:
        assert hook["pass_filenames"] is True and hook["entry"] == hooks[0]["entry"]
        files = re.compile(hook["files"])
        assert files.search("models/net.onnx") and not files.search("net.onnx.json") and not files.search("train.py")
        assert shlex.split(hook["entry"])[0] in scripts  # the console script pip installs


def test_hook_entry_uses_the_repository_config(tmp_path):
    """What pre-commit runs (entry + staged file names) in a repository whose pyproject sets a gate."""
    hook = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())[0]
    shutil.copy(SAMPLES / "digits_cnn_bn.onnx", tmp_path / "model.onnx")
    (tmp_path / "pyproject.toml").write_text("[tool.lipaudit]\nmax-lipschitz = 10.0\n")
    entry = shlex.split(hook["entry"])
    cmd = [sys.executable, "-m", "lipaudit", *entry[1:], "model.onnx"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, env=env)
    assert res.returncode == 1 and res.stderr.startswith("FAIL model.onnx") and "LIP001" in res.stderr
