"""Packaging smoke test: ``python -m build`` makes a wheel and an sdist, and they, and ``pip install .``
(not editable), each give a working ``lipaudit`` with the report schema inside, in fresh virtual
environments. Nothing is downloaded: builds run without isolation, installs use ``--no-index``,
and dependencies come from the environment running the tests (``--system-site-packages``).

Skipped when the ``build`` package is absent (it is in the ``test`` extra, so CI runs it).
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import ROOT, SAMPLES

pytest.importorskip("build")
pytestmark = pytest.mark.packaging

IGNORE = shutil.ignore_patterns(".git", "__pycache__", "*.egg-info", "build", "dist", ".pytest_cache",
                                ".hypothesis", "benchmarks", ".venv")


def _env():
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PIP_REQUIRE_VIRTUALENV")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def _run(*cmd, cwd=None, timeout=300):
    res = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=_env(), cwd=cwd, timeout=timeout)
    assert res.returncode == 0, f"{' '.join(map(str, cmd))}\n{res.stdout[-2000:]}\n{res.stderr[-2000:]}"
    return res


def _venv(path) -> str:
    """A fresh venv seeing this environment's packages (torch, onnx, ...); returns its python."""
    python = os.path.join(path, "bin", "python")
    if os.name == "nt":
        python = os.path.join(path, "Scripts", "python.exe")
    _run(sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", path)
    return python


def _install(python, target, tmp):
    """pip of this environment installs into the venv (pip >= 22.3); without it, the venv's own pip."""
    args = ["install", "--no-deps", "--no-index", "--no-build-isolation", "--quiet", str(target)]
    res = subprocess.run([sys.executable, "-m", "pip", "--python", python, *args], capture_output=True, text=True,
                         env=_env(), cwd=tmp)
    if res.returncode != 0:  # old pip: bootstrap pip inside the venv
        _run(python, "-m", "ensurepip", "--quiet")
        _run(python, "-m", "pip", *args, cwd=tmp)


def _smoke(python, tmp, full: bool):
    bindir = os.path.dirname(python)
    probe = _run(python, "-c", "import lipaudit, json; from lipaudit.report.json_report import schema; "
                               "print(lipaudit.__file__); print(schema()['title'])", cwd=tmp).stdout.splitlines()
    assert os.path.realpath(probe[0]).startswith(os.path.realpath(os.path.dirname(bindir))), probe[0]  # not the source tree
    assert probe[1] == "lipaudit report"
    exe = os.path.join(bindir, "lipaudit")
    assert _run(exe, "--version", cwd=tmp).stdout.startswith("lipaudit ")
    if full:
        res = _run(exe, "check", SAMPLES / "digits_cnn_bn.onnx", "--format", "json", cwd=tmp)
        assert '"verdict": "pass"' in res.stdout


def test_wheel_sdist_and_pip_install_dot(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=IGNORE, symlinks=True)
    dist = tmp_path / "dist"
    # sdist first, then the wheel built from the unpacked sdist: proves the sdist is complete
    _run(sys.executable, "-m", "build", "--no-isolation", "--outdir", dist, src)
    wheel = glob.glob(str(dist / "lipaudit-*.whl"))
    sdist = glob.glob(str(dist / "lipaudit-*.tar.gz"))
    assert len(wheel) == 1 and len(sdist) == 1
    import zipfile

    assert "lipaudit/schema/report.schema.json" in zipfile.ZipFile(wheel[0]).namelist()
    for name, target, full in (("wheel", wheel[0], True), ("sdist", sdist[0], False), ("dot", src, False)):
        python = _venv(str(tmp_path / f"venv-{name}"))
        _install(python, target, tmp_path)
        _smoke(python, tmp_path, full)
