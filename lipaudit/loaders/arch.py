"""``--arch module:factory``: build the user's architecture and check that a state dict fits it.

The module is imported as ``python -m`` would: the current directory comes first on the import
path, so ``--arch models:resnet18`` finds ``./models.py``. This runs the user's code, which the
command line asked for; a config file can never name an architecture.
"""

from __future__ import annotations

import importlib
import os
import sys
from contextlib import contextmanager
from typing import Any

from lipaudit.errors import ModelLoadError, first_line


@contextmanager
def _cwd_importable():
    """The working directory first on sys.path while importing (as ``python -m``), then as before."""
    cwd = os.getcwd()
    added = cwd not in sys.path and "" not in sys.path
    if added:
        sys.path.insert(0, cwd)
    importlib.invalidate_caches()
    try:
        yield
    finally:
        if added and cwd in sys.path:
            sys.path.remove(cwd)


def build(arch: str):
    """The torch module returned by ``factory()`` in ``module``."""
    module_name, _, attr = arch.partition(":")
    if not module_name or not attr:
        raise ModelLoadError(f"--arch {arch!r}: expected module:factory, e.g. models:resnet18 (imported from the current directory)")
    try:
        with _cwd_importable():
            module = importlib.import_module(module_name)
    except Exception as exc:
        raise ModelLoadError(f"--arch {arch}: cannot import {module_name!r} from the current directory or the "
                             f"installed packages ({first_line(exc)})") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ModelLoadError(f"--arch {arch}: {module_name} has no callable {attr!r}")
    try:
        return factory()
    except Exception as exc:
        raise ModelLoadError(f"--arch {arch}: {attr}() failed ({first_line(exc)})") from None


def _listed(keys: list[str], limit: int = 6) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def fit_problems(model_shapes: dict[str, tuple[int, ...]], file_shapes: dict[str, tuple[int, ...]]) -> list[str]:
    """Why a state dict does not fit a module: missing keys, unexpected keys, shape mismatches."""
    missing = sorted(set(model_shapes) - set(file_shapes))
    unexpected = sorted(set(file_shapes) - set(model_shapes))
    shapes = sorted(k for k in set(model_shapes) & set(file_shapes) if tuple(model_shapes[k]) != tuple(file_shapes[k]))
    problems = []
    if missing:
        problems.append(f"missing keys ({len(missing)}): {_listed(missing)}")
    if unexpected:
        problems.append(f"unexpected keys ({len(unexpected)}): {_listed(unexpected)}")
    if shapes:
        problems.append("shape mismatches: " + _listed([f"{k} {tuple(file_shapes[k])} vs {tuple(model_shapes[k])}"
                                                         for k in shapes], 4))
    if missing and unexpected:
        prefixes = {u.split(".", 1)[0] for u in unexpected if "." in u}
        if len(prefixes) == 1 and all(u.split(".", 1)[-1] in model_shapes for u in unexpected):
            problems.append(f"every unexpected key starts with {next(iter(prefixes))!r}.: strip that prefix "
                            "(e.g. a DataParallel 'module.')")
    return problems


def load_into(model, tensors: dict[str, Any], path: str, arch: str) -> None:
    """Load the weights, or say exactly which keys do not fit."""
    import numpy as np
    import torch

    model_shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    file_shapes = {k: tuple(np.asarray(v).shape) for k, v in tensors.items()}
    problems = fit_problems(model_shapes, file_shapes)
    if problems:
        raise ModelLoadError(f"{path}: does not fit --arch {arch}: " + "; ".join(problems))
    try:
        model.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in tensors.items()}, strict=True)
    except Exception as exc:
        raise ModelLoadError(f"{path}: does not fit --arch {arch} ({first_line(exc)})") from None
