"""Seeded mutation fuzz of the sample ONNX files: single-byte changes and truncations.

Every mutant must end as pass, fail or error (0, 1, 2) without an exception escaping, and a
mutant that onnx's checker rejects must never pass. Half of the byte changes hit the first 4 KB,
where protobuf puts the graph's nodes, names and attributes; the rest land anywhere (mostly weights).
Runs in process (about 600 mutants in a few seconds), plus a few through the real command.
"""

from __future__ import annotations

import random
import warnings

import onnx
import pytest

from lipaudit.runner import CheckOptions, run_check
from tests.conftest import SAMPLES
from tests.hostile.harness import hostile_run

FILES = ["digits_cnn_bn.onnx", "mnist_resnet.onnx", "mnist_spectral_norm.onnx"]
PER_FILE = 200


def mutants(data: bytes, seed: int, count: int):
    rng = random.Random(seed)
    for i in range(count):
        kind = ("head", "any", "cut")[i % 3]
        if kind == "cut":
            yield kind, data[: rng.randrange(len(data))]
            continue
        pos = rng.randrange(min(len(data), 4096)) if kind == "head" else rng.randrange(len(data))
        out = bytearray(data)
        out[pos] = (out[pos] + rng.randrange(1, 256)) % 256  # always a different byte
        yield kind, bytes(out)


def _checker_accepts(data: bytes) -> bool:
    try:
        onnx.checker.check_model(onnx.load_from_string(data))
        return True
    except Exception:
        return False


@pytest.mark.parametrize("name", FILES)
def test_mutants_end_cleanly(tmp_path, name):
    data = (SAMPLES / name).read_bytes()
    path = tmp_path / name
    seen = {"pass": 0, "fail": 0, "error": 0}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i, (kind, mutant) in enumerate(mutants(data, seed=FILES.index(name), count=PER_FILE)):
            path.write_bytes(mutant)
            report = run_check(str(path), CheckOptions(method="fro", timed=False))
            seen[report["verdict"]] += 1
            if report["verdict"] == "error":
                code = report["findings"][0]["code"]
                assert code != "LIP104", (i, kind, report["findings"][0]["message"])  # no internal error
            elif report["verdict"] == "pass":
                assert _checker_accepts(mutant), (i, kind, "passed a graph onnx's checker rejects")
    assert seen["error"] > PER_FILE // 10 and seen["pass"] > 0, seen  # the fuzz reaches both outcomes


def test_mutants_through_the_real_command(tmp_path):
    """A few mutants as a user would run them: exit 0/1/2, at most one error line, no traceback."""
    data = (SAMPLES / FILES[0]).read_bytes()
    for i, (kind, mutant) in enumerate(mutants(data, seed=99, count=2)):
        (tmp_path / f"m{i}.onnx").write_bytes(mutant)
        res = hostile_run(tmp_path, "check", f"m{i}.onnx", "-q", code=None, lines=1)
        assert res.returncode in (0, 1, 2)


# -- what the fuzz found, kept as regressions ---------------------------------------------------------

def _resnet():
    return onnx.load(str(SAMPLES / "mnist_resnet.onnx"))


def test_kernel_shape_contradicting_the_weight_is_refused(tmp_path):
    model = _resnet()
    conv = next(n for n in model.graph.node if n.op_type == "Conv")
    next(a for a in conv.attribute if a.name == "kernel_shape").ints[:] = [126, 3]  # weight is 3x3
    onnx.save(model, str(tmp_path / "k.onnx"))
    report = run_check(str(tmp_path / "k.onnx"), CheckOptions(method="fro", timed=False))
    assert report["verdict"] == "error" and report["findings"][0]["code"] == "LIP100"
    assert "negative size" in report["findings"][0]["message"] or "kernel_shape" in report["findings"][0]["message"]
    next(a for a in conv.attribute if a.name == "kernel_shape").ints[:] = [1, 1]
    onnx.save(model, str(tmp_path / "k.onnx"))
    report = run_check(str(tmp_path / "k.onnx"), CheckOptions(method="fro", timed=False))
    assert report["verdict"] == "error" and "kernel_shape" in report["findings"][0]["message"]


def _with_raw_name(data: bytes, old: bytes, new: bytes) -> bytes:
    assert len(old) == len(new) and data.count(old) >= 1
    return data.replace(old, new)


def test_names_that_are_not_utf8_in_a_model_with_large_weights(tmp_path):
    model = _resnet()
    model.graph.name = "GRAPHNAME"
    data = _with_raw_name(model.SerializeToString(), b"GRAPHNAME", b"G\xe5APHN\xffEE")
    (tmp_path / "u.onnx").write_bytes(data)
    report = run_check(str(tmp_path / "u.onnx"), CheckOptions(method="fro", timed=False))
    assert report["verdict"] == "pass", report["findings"]


def test_non_utf8_value_names_that_would_merge_are_refused(tmp_path):
    """A byte name must not become, once decoded, the name of another value (that would join two edges)."""
    model = _resnet()
    relus = [n for n in model.graph.node if n.op_type == "Relu"][:2]
    rename = {relus[0].output[0]: "PPPPPP1", relus[1].output[0]: "QQQQQQQQQ2"}
    for node in model.graph.node:
        node.input[:] = [rename.get(x, x) for x in node.input]
        node.output[:] = [rename.get(x, x) for x in node.output]
    data = model.SerializeToString()
    data = _with_raw_name(data, b"PPPPPP1", b"\xffzzzzzz")  # decodes to the text \\xffzzzzzz ...
    data = _with_raw_name(data, b"QQQQQQQQQ2", b"\\xffzzzzzz")  # ... which this valid name already is
    (tmp_path / "c.onnx").write_bytes(data)
    report = run_check(str(tmp_path / "c.onnx"), CheckOptions(method="fro", timed=False))
    assert report["verdict"] == "error" and "collide" in report["findings"][0]["message"]
