"""Running lipaudit as an attacker's victim would: the real entry point, in a sandbox folder.

:func:`hostile_run` returns the finished process after asserting the contract every hostile case
shares: the expected exit code, at most one line on stderr (exactly one for errors), never a
traceback, nothing created or changed in the sandbox except the declared outputs, and a time bound.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import ROOT

ENV = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "NO_COLOR", "PYTHONWARNINGS")}
ENV["PYTHONPATH"] = str(ROOT) + os.pathsep + ENV.get("PYTHONPATH", "")


def snapshot(folder: Path) -> dict[str, str]:
    """Every entry under ``folder`` (files by content hash; FIFOs and links by kind)."""
    out = {}
    for path in sorted(folder.rglob("*")):
        rel = str(path.relative_to(folder))
        if path.is_symlink():
            out[rel] = "link:" + os.readlink(path)
        elif path.is_fifo():
            out[rel] = "fifo"
        elif path.is_file():
            out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
        elif path.is_dir():
            out[rel] = "dir"
    return out


def lipaudit_cmd(*args) -> list[str]:
    return [sys.executable, "-m", "lipaudit", *map(str, args)]


def check_contract(res, code: int | None, before: dict, after: dict, outputs=(), lines: int | None = None):
    err = res.stderr if isinstance(res.stderr, str) else res.stderr.decode("utf-8", "replace")
    if code is not None:
        assert res.returncode == code, (res.returncode, err[-2000:])
    assert "Traceback" not in err, err
    if lines is None:
        lines = 1 if code == 2 else None
    if lines is not None:
        got = [l for l in err.splitlines() if l.strip()]
        assert len(got) == lines, err
    changed = {k for k in set(before) | set(after) if before.get(k) != after.get(k)}
    assert changed <= set(outputs), f"files created or changed outside the outputs: {sorted(changed - set(outputs))}"
    return err


def hostile_run(sandbox: Path, *args, code: int = 2, outputs=(), lines: int | None = None, timeout: float = 90,
                stdin=subprocess.DEVNULL, env=None):
    """Run ``lipaudit ARGS`` with ``sandbox`` as working folder and check the shared contract."""
    before = snapshot(sandbox)
    start = time.monotonic()
    res = subprocess.run(lipaudit_cmd(*args), cwd=sandbox, capture_output=True, text=True, timeout=timeout,
                         stdin=stdin, env={**ENV, **(env or {})})
    assert time.monotonic() - start < timeout
    check_contract(res, code, before, snapshot(sandbox), outputs, lines)
    return res


def invoke(sandbox: Path, monkeypatch, *args, code: int = 2, outputs=(), lines: int | None = None, timeout: float = 60,
           env=None):
    """:func:`hostile_run` in process (typer's CliRunner): faster, for cases that need no real process."""
    from typer.testing import CliRunner

    from lipaudit.cli import app

    monkeypatch.chdir(sandbox)
    before = snapshot(sandbox)
    start = time.monotonic()
    res = CliRunner().invoke(app, list(map(str, args)), env=env)
    assert time.monotonic() - start < timeout
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)

    class Done:
        returncode = res.exit_code
        stderr = res.stderr
        stdout = res.stdout

    check_contract(Done, code, before, snapshot(sandbox), outputs, lines)
    return Done
