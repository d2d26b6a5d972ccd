"""Class 1: no code from a model file runs unless the command line says so.

Every route gets a planted payload that creates one marker file and truncates another; the run
must refuse (exit 2, one line) and leave both markers as they were. The payloads are checked to
be live: the unguarded torch call does run them (``test_payloads_are_live``).
"""

from __future__ import annotations

import shutil
import warnings

import pytest

from lipaudit.runner import CheckOptions, run_check
from tests.hostile import payloads as P
from tests.hostile.harness import hostile_run


def test_payloads_are_live(tmp_path):
    """Without lipaudit's guards the payloads do run (so the tests below can fail)."""
    import torch

    new, old = P.markers(tmp_path)
    with warnings.catch_warnings(), pytest.raises(Exception):
        warnings.simplefilter("ignore")
        torch.load(P.raw_pickle(tmp_path, new, old), weights_only=False)
    assert not P.untouched(new, old)
    new, old = P.markers(tmp_path)
    ts = P.torchscript_setstate(tmp_path, new, old)
    with pytest.raises(Exception):
        torch.jit.load(str(ts))
    assert not P.untouched(new, old)


@pytest.mark.parametrize("route", ["raw_pickle", "torchscript"])
def test_planted_payload_never_runs_cli(tmp_path, route):
    """Through the real command: exit 2, one line naming the trust flag, markers untouched."""
    new, old = P.markers(tmp_path)
    path = P.raw_pickle(tmp_path, new, old) if route == "raw_pickle" else P.torchscript_setstate(tmp_path, new, old)
    res = hostile_run(tmp_path, "check", path.name, "--input-shape", "1,1,8,8")
    assert P.untouched(new, old)
    assert "--trust-pickle" in res.stderr


@pytest.mark.parametrize("route", ["zip_pickle", "pt2_weight", "pt2_sample_inputs"])
def test_planted_payload_never_runs(tmp_path, route):
    """In process (faster): the audit is an error report and the markers are untouched."""
    new, old = P.markers(tmp_path)
    path = {
        "zip_pickle": lambda: P.zip_pickle(tmp_path, new, old),
        "pt2_weight": lambda: P.pt2_pickled_weight(tmp_path, new, old),
        "pt2_sample_inputs": lambda: P.pt2_pickled_weight(tmp_path, new, old, "sample_inputs"),
    }[route]()
    report = run_check(str(path), CheckOptions(input_shape=(1, 1, 8, 8), timed=False))
    assert P.untouched(new, old)
    assert report["verdict"] == "error" and report["findings"][0]["code"] == "LIP100"
    assert "refusing" in report["findings"][0]["message"]


def test_config_file_never_grants_trust(tmp_path):
    """trust-pickle in a pyproject.toml of a parent folder is refused, and nothing is unpickled."""
    new, old = P.markers(tmp_path)
    (tmp_path / "pyproject.toml").write_text('[tool.lipaudit]\ntrust-pickle = true\ninput-shape = "1,1,8,8"\n')
    work = tmp_path / "repo" / "models"
    work.mkdir(parents=True)
    shutil.move(P.raw_pickle(tmp_path, new, old), work / "model.pt")
    res = hostile_run(work, "check", "model.pt")
    assert P.untouched(new, old)
    assert "trust" in res.stderr and "command line" in res.stderr


def _set_first_target(target):
    def change(program):
        program["graph_module"]["graph"]["nodes"][0]["target"] = target
    return change


EDITS = {
    "os_system_target": _set_first_target("torch.os.system"),
    "builtin_target": _set_first_target("builtins.eval"),
    "from_file_op": _set_first_target("torch.ops.aten.from_file.default"),
    "unknown_op": _set_first_target("torch.ops.aten.no_such_op.default"),
    "guards_code": lambda p: p.__setitem__("guards_code", ["__import__('os').system('true')"]),
    "carriage_return_in_stack_trace": lambda p: p["graph_module"]["graph"]["nodes"][0]["metadata"].__setitem__(
        "stack_trace", 'File "x.py", line 1, in f\n    y = 1\rimport os; os.system("true")'),
    "newline_in_module_stack": lambda p: p["graph_module"]["graph"]["nodes"][0]["metadata"].__setitem__(
        "nn_module_stack", "a,b,torch.nn.Conv2d\nimport os"),
    "sympy_eval": lambda p: p["range_constraints"].__setitem__("__import__('os').system('true')", {"min_val": 1, "max_val": 2}),
}


@pytest.mark.parametrize("edit", sorted(EDITS))
def test_pt2_graph_that_could_run_code_is_refused(tmp_path, edit):
    path = P.pt2_edited_program(tmp_path, EDITS[edit], f"{edit}.pt2")
    report = run_check(str(path), CheckOptions(timed=False))
    assert report["verdict"] == "error", edit
    assert report["findings"][0]["code"] == "LIP100"
    assert "refusing" in report["findings"][0]["message"]


def test_pt2_symbolic_expression_grammar():
    from lipaudit.errors import ModelLoadError
    from lipaudit.loaders.pt2_archive import _check_expr

    for ok in ["s0", "2*s0 + 1", "Max(1, s0)", "FloorDiv(s0, 2) <= 5", "Eq(Mod(s12, 4), 0)", "-oo"]:
        _check_expr("x.pt2", ok)
    for bad in ["__import__('os')", "s0.__class__", "preview(s0)", "eval", "lambda: 1", "s0; 1", "'a'", "[1]"]:
        with pytest.raises(ModelLoadError):
            _check_expr("x.pt2", bad)


def test_pt2_compiled_code_and_custom_objects_are_refused(tmp_path):
    from lipaudit.errors import ModelLoadError
    from lipaudit.loaders.pt2_archive import inspect_pt2

    def with_extra(extra):
        def edit(name, data):
            if name == "data/constants/model_constants_config.json" and "config" in extra:
                return extra["config"]
            return data
        edit.extra = {k: v for k, v in extra.items() if k != "config"}
        return edit

    so = P._rewrite_zip(P.SAMPLES / "digits_cnn_bn.pt2", tmp_path / "aoti.pt2",
                        with_extra({"data/aotinductor/model/model.so": b"\x7fELF"}))
    obj = P._rewrite_zip(P.SAMPLES / "digits_cnn_bn.pt2", tmp_path / "obj.pt2",
                         with_extra({"config": b'{"config": {"c": {"path_name": "custom_obj_0", "use_pickle": true}}}'}))
    for path in (so, obj):
        with pytest.raises(ModelLoadError, match="refusing"):
            inspect_pt2(str(path))


def test_trusted_torchscript_still_loads(tmp_path):
    """The trust flag is the only way in, and it works."""
    report = run_check(str(P.SAMPLES / "digits_cnn_bn.torchscript.pt"),
                       CheckOptions(input_shape=(1, 1, 8, 8), trust_pickle=True, timed=False))
    assert report["verdict"] == "pass"
