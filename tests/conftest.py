from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

# `pytest --hypothesis-profile=deep`: the soundness property suites with many fresh examples (local use)
settings.register_profile("deep", max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))

ROOT = Path(__file__).resolve().parent.parent
SHARED_MODELS = ROOT.parent / "shared" / "models"
SAMPLES = ROOT / "sample_models"


def shared_model(name: str) -> str:
    """Path of a model in ../shared/models, skipping the test when it is absent (a user's clone)."""
    path = SHARED_MODELS / name
    if not path.exists():
        pytest.skip(f"{path} not present (../shared/models is only beside CI and developer clones)")
    return str(path)


def light_model(name: str) -> str:
    import onnx

    path = Path(os.path.dirname(onnx.__file__)) / "backend" / "test" / "data" / "light" / name
    if not path.exists():
        pytest.skip(f"{name} not shipped with this onnx wheel")
    return str(path)


def export_onnx(model, x, path, keep_bn: bool = True) -> str:
    """Export a torch module to ONNX (legacy exporter: fast, no network); BN kept or folded."""
    import torch

    model.eval()
    kwargs = dict(training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=False) if keep_bn else {}
    torch.onnx.export(model, (x,), str(path), dynamo=False, opset_version=13, input_names=["input"], output_names=["output"], **kwargs)
    return str(path)
