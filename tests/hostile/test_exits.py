"""Class 4: exit codes and reports never lie; outputs are atomic; special files are refused."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from lipaudit.safe_io import StagedWrites, atomic_write
from tests.conftest import SAMPLES
from tests.hostile.harness import ENV, hostile_run, invoke, lipaudit_cmd

SAMPLE = str(SAMPLES / "digits_cnn_bn.onnx")
SLOW = [str(SAMPLES / "mnist_resnet.onnx"), "--compare", "exact", "--iters", "100000", "--tol", "0"]


# -- wrong input to other commands, config ------------------------------------------------------

@pytest.mark.parametrize("content", ['{"layers": 5}', "[]", '{"model": {}, "layers": [{"values": 3}]}', "{",
                                     '{"reports": []}', '{"model": {"path": "x"}, "layers": [{"name": "a", "values": {"tn": {"value": "abc"}}}]}'])
def test_plot_of_a_wrong_schema_is_exit_2(tmp_path, monkeypatch, content):
    (tmp_path / "r.json").write_text(content)
    invoke(tmp_path, monkeypatch, "plot", "r.json", "-o", "p.png")


@pytest.mark.parametrize("line", ['seed = "abc"', 'jobs = "many"', "max-lipschitz = nan", 'max-lipschitz = "abc"',
                                  "max-layer-norm = -1", 'max-memory = "lots"', "iters = 0", "[tool.lipaudit.x]",
                                  "arch = 'evil:make'", "trust-pickle = true", 'format = "xml"'])
def test_mistyped_config_is_exit_2(tmp_path, monkeypatch, line):
    (tmp_path / "pyproject.toml").write_text(f"[tool.lipaudit]\n{line}\n")
    invoke(tmp_path, monkeypatch, "check", SAMPLE)


# -- output paths ------------------------------------------------------------------------------

def test_no_pass_report_when_an_output_path_is_bad(tmp_path, monkeypatch):
    res = invoke(tmp_path, monkeypatch, "check", SAMPLE, "--format", "json", "--json", "missing/x.json")
    assert res.stdout == ""
    (tmp_path / "ok.json").write_text("old")
    invoke(tmp_path, monkeypatch, "check", SAMPLE, "--json", "ok.json", "--html", "missing/x.html")
    assert (tmp_path / "ok.json").read_text() == "old"
    (tmp_path / "folder").mkdir()
    invoke(tmp_path, monkeypatch, "check", SAMPLE, "--json", "folder")
    invoke(tmp_path, monkeypatch, "plot", "ok.json", "-o", "missing/p.png")


def test_special_files_are_refused(tmp_path, monkeypatch):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    (tmp_path / "zero.onnx").symlink_to("/dev/zero")
    for args in (["check", "pipe"], ["check", "zero.onnx"], ["check", SAMPLE, "--json", "pipe"],
                 ["check", SAMPLE, "--html", "pipe"], ["check", SAMPLE, "--baseline", "pipe"], ["plot", "pipe", "-o", "p.png"]):
        res = invoke(tmp_path, monkeypatch, *args, timeout=30)
        assert "FIFO" in res.stderr or "device" in res.stderr, args


def test_staged_writes_are_all_or_nothing(tmp_path):
    (tmp_path / "a.json").write_text("old a")
    with pytest.raises(RuntimeError), StagedWrites() as staged:
        staged.stage(tmp_path / "a.json", "new a")
        raise RuntimeError("killed between two outputs")
    assert (tmp_path / "a.json").read_text() == "old a"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]  # no temporary file left
    atomic_write(tmp_path / "a.json", "new a")
    assert (tmp_path / "a.json").read_text() == "new a"
    assert oct((tmp_path / "a.json").stat().st_mode & 0o777) != oct(0o600)  # a normal file, not mkstemp's mode


# -- streams, signals, workers (real processes) --------------------------------------------------

def test_closed_and_broken_stdout_are_exit_2(tmp_path):
    res = subprocess.run(["bash", "-c", " ".join(lipaudit_cmd("check", SAMPLE, "--format", "json")) + " >&-"],
                         capture_output=True, text=True, env=ENV, cwd=tmp_path, timeout=90)
    assert res.returncode == 2 and len(res.stderr.splitlines()) == 1 and "Traceback" not in res.stderr
    with open("/dev/full", "w") as full:
        res = subprocess.run(lipaudit_cmd("check", SAMPLE, "--format", "json"), stdout=full, stderr=subprocess.PIPE,
                             text=True, env=ENV, cwd=tmp_path, timeout=90)
    assert res.returncode == 2 and len(res.stderr.splitlines()) == 1 and "Traceback" not in res.stderr
    res = subprocess.run(["bash", "-c", " ".join(lipaudit_cmd("check", SAMPLE)) + " 2>&-"],
                         capture_output=True, text=True, env=ENV, cwd=tmp_path, timeout=90)
    assert res.returncode == 2 and res.stdout == "", (res.returncode, res.stdout)  # the table had nowhere to go
    proc = subprocess.Popen(lipaudit_cmd("check", SAMPLE, "--format", "json"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=ENV, cwd=tmp_path)
    proc.stdout.close()  # the reader went away before lipaudit wrote
    err = proc.stderr.read()
    assert proc.wait(timeout=90) == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err


def _wait_until_auditing(proc, limit: float = 60.0) -> None:
    """Past the imports, inside the audit: onnx's native module is mapped once the model is being read."""
    maps = f"/proc/{proc.pid}/maps"
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with open(maps) as fh:
                if "onnx_cpp2py_export" in fh.read():
                    time.sleep(0.5)
                    return
        except OSError:
            break  # no /proc: fall back to a fixed wait
        time.sleep(0.1)
    time.sleep(3)


def _start_and_signal(tmp_path, sig, extra=()):
    proc = subprocess.Popen(lipaudit_cmd("check", *SLOW, *extra), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=ENV, cwd=tmp_path)
    _wait_until_auditing(proc)
    proc.send_signal(sig)
    start = time.monotonic()
    out, err = proc.communicate(timeout=60)
    return proc.returncode, err, time.monotonic() - start


def test_ctrl_c_is_130_and_sigterm_leaves_old_outputs(tmp_path):
    code, err, took = _start_and_signal(tmp_path, signal.SIGINT)
    assert code == 130 and err.strip() == "interrupted" and took < 30, (code, err)
    (tmp_path / "out.json").write_text("old")
    code, err, took = _start_and_signal(tmp_path, signal.SIGTERM, ["--json", "out.json"])
    assert code == 143 and err.strip() == "terminated", (code, err)
    assert (tmp_path / "out.json").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


def test_concurrent_runs_never_corrupt_the_report(tmp_path):
    procs = [subprocess.Popen(lipaudit_cmd("check", SAMPLE, "--json", "out.json", "-q", "--seed", str(i)),
                              stderr=subprocess.PIPE, stdout=subprocess.PIPE, env=ENV, cwd=tmp_path) for i in range(2)]
    assert [p.wait(timeout=90) for p in procs] == [0, 0]
    assert json.loads((tmp_path / "out.json").read_text())["verdict"] == "pass"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


def _die(*_args, **_kwargs):
    os.kill(os.getpid(), signal.SIGKILL)


def test_killed_worker_is_exit_2(tmp_path, monkeypatch):
    """A worker killed mid-run (the OOM killer, a user) ends the run with 2 and writes no report."""
    import multiprocessing

    if multiprocessing.get_start_method() != "fork":
        pytest.skip("the planted crash reaches workers through fork")
    monkeypatch.setattr("lipaudit.runner.run_check", _die)
    res = invoke(tmp_path, monkeypatch, "check", SAMPLE, SAMPLE, "--jobs", "2", "--json", "out.json")
    assert "worker" in res.stderr and not (tmp_path / "out.json").exists()


def test_jobs_are_capped_at_the_cpu_count(tmp_path, monkeypatch):
    started = []
    import concurrent.futures

    def spy(max_workers=None, **kw):
        started.append(max_workers)
        raise RuntimeError("no pool needed to see the worker count")

    monkeypatch.setattr(concurrent.futures, "ProcessPoolExecutor", spy)
    invoke(tmp_path, monkeypatch, "check", SAMPLE, SAMPLE, SAMPLE, "--jobs", "1000", "-q")
    assert started == [min(os.cpu_count() or 1, 3)]


def test_library_warnings_never_reach_stderr(tmp_path):
    """TorchScript goes through torch.jit.load and the ONNX exporter, which warn a lot: -q prints the verdict only."""
    res = hostile_run(tmp_path, "check", str(SAMPLES / "digits_cnn_bn.torchscript.pt"), "--trust-pickle",
                      "--input-shape", "1,1,8,8", "-q", code=0, lines=1)
    assert res.stderr.startswith("PASS")


def test_broken_stdout_leaves_no_pass_report_file(tmp_path):
    """The streams are written before the files are renamed into place: exit 2 never leaves a pass file."""
    with open("/dev/full", "w") as full:
        res = subprocess.run(lipaudit_cmd("check", SAMPLE, "--format", "json", "--json", "out.json"), stdout=full,
                             stderr=subprocess.PIPE, text=True, env=ENV, cwd=tmp_path, timeout=90)
    assert res.returncode == 2 and not (tmp_path / "out.json").exists(), res.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_links_to_special_files_are_refused_as_outputs(tmp_path, monkeypatch):
    (tmp_path / "out.json").symlink_to("/dev/null")
    invoke(tmp_path, monkeypatch, "check", SAMPLE, "--json", "out.json")
    assert (tmp_path / "out.json").is_symlink()


def test_usage_errors_are_one_line(tmp_path):
    for args in (["check", SAMPLE, "--bogus"], ["check"], ["check", SAMPLE, "--jobs", "abc"], ["no-such-command"]):
        res = hostile_run(tmp_path, *args, timeout=60)
        assert res.stderr.startswith("error: "), res.stderr


def test_onnxruntime_logs_never_reach_stderr(tmp_path):
    """onnxruntime writes warnings from C++ to fd 2; a lipaudit process lowers its logger once it is imported."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
                              [numpy_helper.from_array(np.ones(3, np.float32), "unused")])  # ORT warns about it
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "m.onnx"))
    code = ("import sys; from lipaudit.exits import quiet_libraries; quiet_libraries(); "
            "import onnxruntime; onnxruntime.InferenceSession(sys.argv[1])")
    import sys

    res = subprocess.run([sys.executable, "-c", code, str(tmp_path / "m.onnx")], capture_output=True, text=True,
                         env=ENV, timeout=60)
    assert res.returncode == 0 and res.stderr == "", res.stderr


def test_outputs_never_overwrite_an_input_or_each_other(tmp_path, monkeypatch):
    import shutil

    shutil.copy(SAMPLE, tmp_path / "m.onnx")
    before = (tmp_path / "m.onnx").read_bytes()
    res = invoke(tmp_path, monkeypatch, "check", "m.onnx", "--json", "m.onnx")
    assert "input" in res.stderr and (tmp_path / "m.onnx").read_bytes() == before
    res = invoke(tmp_path, monkeypatch, "check", "m.onnx", "--json", "same.out", "--html", "same.out")
    assert "own path" in res.stderr and not (tmp_path / "same.out").exists()


@pytest.mark.parametrize("stride", ["*=0", "*=-1", "*=3000"])
def test_absurd_strides_are_usage_errors(tmp_path, monkeypatch, stride):
    res = invoke(tmp_path, monkeypatch, "check", SAMPLE, "--stride", stride)
    assert "stride" in res.stderr.lower() and "internal" not in res.stderr


def test_negative_seed_is_a_usage_error(tmp_path):
    res = hostile_run(tmp_path, "check", SAMPLE, "--seed", "-1", lines=1)
    assert "seed" in res.stderr


def test_data_declaring_gigabytes_is_refused_before_it_is_read(tmp_path, monkeypatch):
    import io
    import zipfile

    import numpy as np

    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (10**6, 3, 64, 64)})
    with zipfile.ZipFile(tmp_path / "bomb.npz", "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("x.npy", b"\x93NUMPY" + header.getvalue()[6:] + b"\0" * 1024)
        buf = io.BytesIO()
        np.save(buf, np.zeros(3, dtype=np.int64))
        archive.writestr("y.npy", buf.getvalue())
    res = invoke(tmp_path, monkeypatch, "certify", SAMPLE, "--data", "bomb.npz", "--eps", "0.1")
    assert "GB" in res.stderr and "budget" in res.stderr
