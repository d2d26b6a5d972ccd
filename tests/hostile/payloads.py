"""Planted payloads: files that create or change a marker file when something runs code from them.

Each builder returns the hostile file's path. The payloads only touch the marker paths they are
given (inside the test's tmp_path), so a failing test damages nothing.
"""

from __future__ import annotations

import io
import json
import pickle
import shutil
import zipfile
from pathlib import Path

from tests.conftest import SAMPLES


class Touch:
    """Unpickling this opens ``path`` for writing: creates it, or truncates an existing one."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def markers(tmp_path: Path) -> tuple[Path, Path]:
    """A marker that must stay absent and one that must keep its content."""
    new, old = tmp_path / "created.marker", tmp_path / "existing.marker"
    old.write_text("untouched")
    return new, old


def untouched(new: Path, old: Path) -> bool:
    return not new.exists() and old.read_text() == "untouched"


def evil_pickle_bytes(new: Path, old: Path) -> bytes:
    return pickle.dumps([Touch(str(new)), Touch(str(old))], protocol=2)


def raw_pickle(tmp_path: Path, new: Path, old: Path) -> Path:
    path = tmp_path / "raw.pt"
    path.write_bytes(evil_pickle_bytes(new, old))
    return path


def zip_pickle(tmp_path: Path, new: Path, old: Path) -> Path:
    """A torch.save zip whose data.pkl holds the payload next to a real state dict."""
    import torch

    buf = io.BytesIO()
    torch.save({"w": torch.zeros(2, 2)}, buf)
    path = tmp_path / "zip.pt"
    with zipfile.ZipFile(io.BytesIO(buf.getvalue())) as src, zipfile.ZipFile(path, "w") as dst:
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename.endswith("/data.pkl"):
                data = evil_pickle_bytes(new, old)
            dst.writestr(info, data)
    return path


def _rewrite_zip(src: Path, dst: Path, edit) -> Path:
    """Copy a zip archive, passing each (name, bytes) through ``edit`` (None drops it); extra entries may be added."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        root = zin.namelist()[0].split("/", 1)[0]
        for info in zin.infolist():
            data = edit(info.filename.split("/", 1)[1], zin.read(info.filename))
            if data is not None:
                zout.writestr(info, data)
        for name, data in getattr(edit, "extra", {}).items():
            zout.writestr(f"{root}/{name}", data)
    return dst


def pt2_pickled_weight(tmp_path: Path, new: Path, old: Path, where: str = "weights") -> Path:
    """The sample .pt2 with one weight (or a planted constant) stored as a pickle holding the payload."""

    def edit(name, data):
        if where == "weights" and name == "data/weights/model_weights_config.json":
            config = json.loads(data)
            config["config"]["features.0.weight"]["use_pickle"] = True
            return json.dumps(config).encode()
        if where == "weights" and name == "data/weights/weight_0":
            return evil_pickle_bytes(new, old)
        if where == "sample_inputs" and name == "data/sample_inputs/model.pt":
            return evil_pickle_bytes(new, old)
        return data

    return _rewrite_zip(SAMPLES / "digits_cnn_bn.pt2", tmp_path / f"pickled_{where}.pt2", edit)


def pt2_edited_program(tmp_path: Path, change, name: str) -> Path:
    """The sample .pt2 with its models/model.json passed through ``change(dict)``."""

    def edit(n, data):
        if n == "models/model.json":
            program = json.loads(data)
            change(program)
            return json.dumps(program).encode()
        return data

    return _rewrite_zip(SAMPLES / "digits_cnn_bn.pt2", tmp_path / name, edit)


def torchscript_setstate(tmp_path: Path, new: Path, old: Path) -> Path:
    """A TorchScript archive whose ``__setstate__`` writes both markers when torch.jit.load runs it."""
    import torch

    class Planted(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 1, 3)
            self.new = str(new)
            self.old = str(old)

        def forward(self, x):
            return self.conv(x)

        @torch.jit.export
        def __getstate__(self):
            return (self.new, self.old, self.training)

        @torch.jit.export
        def __setstate__(self, state: tuple[str, str, bool]):
            self.new, self.old, self.training = state[0], state[1], state[2]
            torch.save(torch.zeros(1), self.new)
            torch.save(torch.zeros(1), self.old)

    path = tmp_path / "planted.torchscript.pt"
    torch.jit.save(torch.jit.script(Planted()), str(path))
    new.unlink(missing_ok=True)
    old.write_text("untouched")
    return path


def copy_sample(tmp_path: Path, name: str) -> Path:
    dst = tmp_path / name
    shutil.copy(SAMPLES / name, dst)
    return dst


HOSTILE_NAMES = {
    "link": "[link=https://example.invalid]click[/link]",
    "close": "[/]",
    "bold": "[bold red]x[/bold red]",
    "esc": "\x1b[31mRED\x1b]8;;https://example.invalid\x07link\x1b]8;;\x07\x1b[0m",
    "newline": "two\nlines\r\x00nul",
    "bidi": "abc\u202edcba",
}
BAD_UTF8_MARK = b"BADUTF8NAMEXXXX"  # replaced by invalid UTF-8 of the same length in the serialized model


def named_onnx(tmp_path: Path, name: str, unsupported: bool = False, bad_utf8: bool = False) -> Path:
    """Conv -> Relu (or an unsupported Exp) whose node and output names are ``name``."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    if bad_utf8:
        name = BAD_UTF8_MARK.decode()
    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((2, 1, 3, 3)).astype(np.float32), "w")
    second = helper.make_node("Exp" if unsupported else "Relu", [f"{name}:conv"], [name], name=f"{name}:act")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], [f"{name}:conv"], name=name, pads=[1, 1, 1, 1]), second],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 8, 8])],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, 2, 8, 8])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name=name)
    data = model.SerializeToString()
    if bad_utf8:
        data = data.replace(BAD_UTF8_MARK, b"\xff\xfe\xc3(bad\x80\x1b[31m.."[:len(BAD_UTF8_MARK)])
    path = tmp_path / "named.onnx"
    path.write_bytes(data)
    return path
