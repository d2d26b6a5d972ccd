"""--arch imports the architecture from the current directory (as python -m) and names keys that do not fit."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from lipaudit.cli import app
from lipaudit.loaders.arch import fit_problems

MODELS = '''
import torch.nn as nn


def small():
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 10))


def other():
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 5))
'''


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    name = f"user_models_{tmp_path.name.replace('-', '_')}"  # a fresh module name per test: no import cache
    (tmp_path / f"{name}.py").write_text(MODELS)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(),
                              torch.nn.Linear(4 * 8 * 8, 10))
    torch.save(net.state_dict(), tmp_path / "ckpt.pt")
    torch.save({f"module.{k}": v for k, v in net.state_dict().items()}, tmp_path / "parallel.pt")
    monkeypatch.chdir(tmp_path)
    return name


def test_arch_module_from_the_current_directory(workdir):
    res = CliRunner().invoke(app, ["check", "ckpt.pt", "--arch", f"{workdir}:small", "--input-shape", "1,1,8,8",
                                   "--format", "json"])
    assert res.exit_code == 0, res.stderr
    report = json.loads(res.stdout)
    assert report["model"]["format"] == "state-dict+arch" and "certified" in report["network"]


def test_checkpoint_that_does_not_fit_names_the_keys(workdir):
    runner = CliRunner()
    res = runner.invoke(app, ["check", "ckpt.pt", "--arch", f"{workdir}:other", "--input-shape", "1,1,8,8"])
    assert res.exit_code == 2
    assert "shape mismatches: 3.bias (10,) vs (5,), 3.weight (10, 256) vs (5, 256)" in res.stderr
    res = runner.invoke(app, ["check", "parallel.pt", "--arch", f"{workdir}:small", "--input-shape", "1,1,8,8"])
    assert res.exit_code == 2 and len(res.stderr.strip().splitlines()) == 1
    assert "missing keys (4): 0.bias, 0.weight, 3.bias, 3.weight" in res.stderr
    assert "unexpected keys (4): module.0.bias" in res.stderr
    res = runner.invoke(app, ["check", "ckpt.pt", "--arch", "no_such_module_xyz:small", "--input-shape", "1,1,8,8"])
    assert res.exit_code == 2 and "cannot import 'no_such_module_xyz' from the current directory" in res.stderr


def test_fit_problems_hints_at_a_common_prefix():
    problems = fit_problems({"a.w": (1,), "b.w": (2,)}, {"module.a.w": (1,), "module.b.w": (2,)})
    assert problems[-1].startswith("every unexpected key starts with 'module'")
    assert fit_problems({"a": (1,)}, {"a": (1,)}) == []
