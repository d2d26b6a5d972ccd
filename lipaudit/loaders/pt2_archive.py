"""Reading ``torch.export`` archives (``.pt2``) without running anything from them.

``torch.export.load`` trusts its archive: it unpickles weights and constants marked
``use_pickle`` with ``weights_only=False``, unpickles custom and opaque objects, loads compiled
AOTInductor libraries, compiles the archive's ``guards_code`` and evaluates every symbolic shape
expression with ``sympy.sympify`` (an ``eval``); node targets are resolved by attribute lookup from
``torch``, so ``torch.os.system`` would be a valid target. We therefore inspect the archive first
and refuse anything that could be code:

- compiled code (``data/aotinductor/``, ``data/executorch/``) and non-empty ``guards_code``;
- custom or opaque objects among the constants;
- node targets other than registered ``torch.ops.aten`` operators and ``_operator`` arithmetic,
  and aten operators that touch files or streams (``from_file``, ``save``, ``_print``, ...);
- symbolic expressions outside a small arithmetic grammar (names, integers, operators, the
  functions torch itself writes).

What remains is loaded by torch with every ``torch.load`` forced to ``weights_only=True`` and the
raw unpicklers disabled, so a pickled weight is read as a tensor or refused. The graph is never
run: it is converted to ONNX by tracing with fake tensors.
"""

from __future__ import annotations

import contextlib
import json
import re
import zipfile
from typing import Any, Iterator

from lipaudit.errors import ModelLoadError

# aten operators that read or write files or streams: an exported graph holding one is refused
IO_OPS = frozenset({"from_file", "save", "load", "_print", "print", "warn", "_test_warn_in_autograd"})
OPERATOR_FUNCS = frozenset({
    "getitem", "add", "sub", "mul", "floordiv", "truediv", "mod", "neg", "pos", "pow", "abs",
    "eq", "ne", "lt", "le", "gt", "ge", "and_", "or_", "not_", "xor",
})
# the functions torch's serializer writes into symbolic expressions (and sympy's basic ones)
EXPR_FUNCS = frozenset({
    "FloorDiv", "ModularIndexing", "Where", "PythonMod", "Mod", "CleanDiv", "CeilToInt", "FloorToInt",
    "CeilDiv", "LShift", "RShift", "PowByNatural", "FloatPow", "FloatTrueDiv", "IntTrueDiv",
    "IsNonOverlappingAndDenseIndicator", "TruncToFloat", "TruncToInt", "RoundToInt", "RoundDecimal",
    "ToFloat", "Identity", "Max", "Min", "Abs", "Eq", "Ne", "Lt", "Le", "Gt", "Ge", "And", "Or", "Not",
    "oo", "zoo", "nan", "True", "False", "sqrt", "floor", "ceiling", "Integer", "Rational", "Float",
})
_EXPR_TOKEN = re.compile(r"\s*(?:([A-Za-z_][A-Za-z0-9_]*)|(\d+(?:\.\d+)?(?:e[+-]?\d+)?)|(\*\*|//|==|!=|<=|>=|[-+*/%(),<>&|~]))")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\x85\u2028\u2029]")
_SYMBOL = re.compile(r"^[a-z]{1,3}\d+$")  # s0, u12, ps3: the symbols torch creates


def inspect_pt2(path: str, max_bytes: int | None = None) -> None:
    """Refuse an archive holding anything torch would execute, import or unpickle unsafely."""
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            root = _root(infos)
            from lipaudit.budget import current, require

            max_bytes = current() if max_bytes is None else max_bytes
            require(f"{path}: unpacking the archive", sum(i.file_size for i in infos), max_bytes)
            outside = [i.filename for i in infos if not i.filename.startswith(root)]
            if outside:
                raise ModelLoadError(f"{path}: not a torch.export archive (entries outside {root!r}: {outside[0]!r})")
            names = {i.filename[len(root):]: i.filename for i in infos}
            for rel in names:
                if rel.startswith(("data/aotinductor/", "data/executorch/", "data/mtia")):
                    raise _unsafe(path, f"it holds compiled code ({rel})")
            models = [rel for rel in names if rel.startswith("models/") and rel.endswith(".json")]
            if not models:
                raise ModelLoadError(f"{path}: not a torch.export archive (no models/*.json)")
            for rel in models:
                # parsed JSON takes many times its text's size in Python objects
                require(f"{path}: parsing {rel}", 16 * zf.getinfo(names[rel]).file_size, max_bytes)
                _check_program(path, rel, _json(zf, names[rel], path))
            for rel in names:
                if rel.startswith("data/constants/") and rel.endswith("_constants_config.json"):
                    config = _json(zf, names[rel], path).get("config", {})
                    for fqn, meta in (config.items() if isinstance(config, dict) else []):
                        kind = str(meta.get("path_name", "")) if isinstance(meta, dict) else ""
                        if not kind.startswith("tensor_"):
                            raise _unsafe(path, f"constant {fqn!r} is a pickled Python object ({kind or 'unknown'})")
    except zipfile.BadZipFile as exc:
        raise ModelLoadError(f"{path}: not a readable torch.export archive ({exc})") from None


def _root(infos) -> str:
    first = infos[0].filename if infos else ""
    return first.split("/", 1)[0] + "/" if "/" in first else ""


def _json(zf: zipfile.ZipFile, name: str, path: str) -> dict[str, Any]:
    try:
        data = json.loads(zf.read(name))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelLoadError(f"{path}: {name} is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path}: {name} is not a JSON object")
    return data


def _unsafe(path: str, why: str) -> ModelLoadError:
    return ModelLoadError(f"{path}: refusing this .pt2 archive because {why}; loading it could run code from the file")


def _check_program(path: str, rel: str, program: dict[str, Any]) -> None:
    for key, value in _walk(program):
        # torch turns graphs back into Python source (FX codegen) with stack traces in comments:
        # a carriage return there would end the comment and start code
        for text in (key, value):
            if isinstance(text, str) and (_CONTROL.search(text) or ("\n" in text and key != "stack_trace")):
                raise _unsafe(path, f"{rel} holds control characters in {str(key)[:40]!r}")
    if program.get("guards_code"):
        raise _unsafe(path, f"{rel} carries guards_code (Python source)")
    for key in (program.get("range_constraints") or {}):
        _check_expr(path, str(key))
    for key, value in _walk(program):
        if key == "target":
            _check_target(path, value)
        elif key == "expr_str":
            _check_expr(path, value)


def _walk(obj: Any) -> Iterator[tuple[str, Any]]:
    stack = [obj]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for k, v in item.items():
                yield k, v
                stack.append(v)
        elif isinstance(item, list):
            stack.extend(item)


def _check_target(path: str, target: Any) -> None:
    if not isinstance(target, str):
        raise _unsafe(path, f"a node target is not a string ({type(target).__name__})")
    parts = target.split(".")
    if len(parts) == 2 and parts[0] == "_operator" and parts[1] in OPERATOR_FUNCS:
        return
    if len(parts) in (4, 5) and parts[:3] == ["torch", "ops", "aten"]:
        name = parts[3]
        if name in IO_OPS or "file" in name:
            raise _unsafe(path, f"its graph calls aten.{name}, an operator that reads or writes files")
        import torch

        if _registered_aten(torch, name, parts[4] if len(parts) == 5 else "default"):
            return
        raise _unsafe(path, f"node target {target!r} is not a registered aten operator")
    raise _unsafe(path, f"node target {target!r} is not an aten operator")


def _registered_aten(torch, name: str, overload: str) -> bool:
    try:
        packet = getattr(torch.ops.aten, name)
        return isinstance(getattr(packet, overload), torch._ops.OpOverload)
    except (AttributeError, RuntimeError):
        return False


def _check_expr(path: str, text: Any) -> None:
    """A symbolic shape expression: identifiers from EXPR_FUNCS or symbol names, numbers, operators."""
    if not isinstance(text, str) or len(text) > 2000:
        raise _unsafe(path, "a symbolic expression is not a short string")
    pos = 0
    while pos < len(text):
        m = _EXPR_TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            if text[pos:].strip() == "":
                break
            raise _unsafe(path, f"symbolic expression {text[:60]!r} is not plain arithmetic")
        ident = m.group(1)
        if ident is not None and ident not in EXPR_FUNCS and not _SYMBOL.match(ident):
            raise _unsafe(path, f"symbolic expression {text[:60]!r} names {ident!r}")
        pos = m.end()


def load_exported_program(path: str, max_bytes: int | None = None):
    """The archive's ExportedProgram, after :func:`inspect_pt2`, with unpickling restricted to tensors."""
    inspect_pt2(path, max_bytes)
    # load_pt2 rather than torch.export.load: the latter falls back to an older, uninspected layout
    from torch.export.pt2_archive._package import load_pt2

    with weights_only_unpickling():
        programs = load_pt2(path).exported_programs
    if len(programs) != 1:
        raise ModelLoadError(f"{path}: expected one exported program, found {len(programs)}")
    return next(iter(programs.values()))


@contextlib.contextmanager
def weights_only_unpickling() -> Iterator[None]:
    """Inside, every ``torch.load`` is ``weights_only=True`` and torch's raw unpicklers refuse."""
    import pickle

    import torch
    from torch.export.pt2_archive import _package

    real_load = torch.load

    def safe_load(*args, **kwargs):
        kwargs["weights_only"] = True
        return real_load(*args, **kwargs)

    def refuse(*_args, **_kwargs):
        raise pickle.UnpicklingError("refusing to unpickle a Python object from a .pt2 archive")

    class _NoPickle:
        UnpicklingError = pickle.UnpicklingError
        loads = staticmethod(refuse)
        load = staticmethod(refuse)

    saved = (torch.load, torch._C._pickle_load_obj, _package.pickle)
    torch.load, torch._C._pickle_load_obj, _package.pickle = safe_load, refuse, _NoPickle
    try:
        yield
    finally:
        torch.load, torch._C._pickle_load_obj, _package.pickle = saved
