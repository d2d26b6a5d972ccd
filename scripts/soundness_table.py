"""Write docs/soundness.md from the rule registry: every rule's slots, constant and the tests that check it.

Run ``python scripts/soundness_table.py`` after adding or changing a rule;
``tests/soundness/test_soundness_doc.py`` fails while the page is out of date.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "soundness.md"

HEADER = """# Soundness: every rule, its contract and its tests

lipaudit's network certificate is only as good as its weakest rule. Every operator rule is registered with a
**declared contract** (`lipaudit/ops/__init__.py`), and the engine checks the contract before the rule runs
(`lipaudit/ops/contract.py`):

- **domain**: rules apply to the default ONNX domain only; `com.example::Conv` is refused, never matched by
  name. Model-local functions are inlined by `onnx.inliner` and their bodies analysed.
- **schema version**: a node whose ONNX schema is newer than the rule was reviewed against (or an opset newer
  than the installed onnx knows) is refused.
- **attributes**: a node carrying an attribute its rule does not read is refused (a new attribute may change
  the mathematics).
- **input slots**, by their ONNX names: `data` slots may depend on the network input and are composed;
  `affine` slots may depend on it and are *added* to the output (the rule adds their constant, e.g. a conv
  bias, Gemm's `C` times `|beta|`, Pad's `constant_value` times the root of the padded count); `const` slots
  must be constants. An input-dependent value in a `const` slot, or any value in an undeclared slot, is a
  refusal naming the node and the slot.
- **outputs**: outputs a rule gives no constant for (MaxPool `Indices`, BatchNorm training outputs) carry a
  refusal, so a node that uses them is refused.
- **batch axis**: with a dynamic batch, an op that combines entries along axis 0 (a reduction over it, a
  Reshape/Transpose that moves it, a MatMul over it) is refused unless `--input-shape` states the batch.

A refusal does not stop the audit: per-layer values are still computed, and the network entry says which node
stopped the certificate and why. Non-finite weights or constants make the certificate `inf` (never NaN, never
a finite number), and every gate on it fails.

## What a certificate is about

- **Exact arithmetic.** The certificate bounds the map the graph defines over the reals. Floating-point
  rounding inside a runtime (every float32 product, and casts between float32 and float64) is not modelled;
  casts to float16/bfloat16 round coarsely enough (relative 1e-3) that lipaudit refuses them rather than
  ignore them. Casts to integers or bool are jumps and are refused.
- **Weights are the file's.** Initializers are constants, also when a graph input of the same name would let a
  runtime caller override them (ONNX's "default value" inputs): the audit certifies the model as shipped.
- **Constant subgraphs** are folded with onnx's reference operators at load time. Where the reference and
  onnxruntime disagree on a constant-only computation, the reference's value is the one certified.
- **Dynamic batch.** With a symbolic (or -1/0) batch the certificate is per sample. Constants computed from the
  batch size are followed symbolically through the folds: plain copies of it may set a Reshape/Expand shape
  (checked at batch 2), any arithmetic on it is refused.

## How the rules are tested

- `tests/soundness/test_contracts.py` enumerates the registry. For every rule it checks that the contract
  covers every slot and attribute of every ONNX schema version the rule accepts, that a basic instance is
  certified at least as high as its brute-force witness, and that feeding an input-dependent value into
  every constant slot is refused (naming the slot) or certified soundly. A rule added without a recipe there
  fails the test.
- `tests/soundness/test_properties.py` builds random small graphs per op family (hypothesis, seeded) with
  edge-case attributes, several outputs, `--output`/`--until` at random values and BatchNorm on every side.
  `python -m pytest tests/soundness --hypothesis-profile=deep` runs hundreds of fresh examples per family.
- `tests/soundness/test_regressions.py` holds one test per class of unsound certificate found so far.
- The **witness** (`tests/soundness/graphs.py`) is a verified lower bound: the model runs in float64 under
  onnx's reference evaluator (onnxruntime where the reference lacks a case), a finite-difference Jacobian
  gives the top singular direction, and the largest secant `||f(x+tu) - f(x-tu)|| / (2t||u||)` along it and
  along random directions is compared with the certificate: `certified >= witness * (1 - 1e-6)` or a refusal.

## The rules

Slot roles: **D** data (composed), **A** affine (added, its constant added), **C** constant only.
"""


def _tests_mentioning(op: str, files: dict[str, str]) -> list[str]:
    found = []
    pattern = re.compile(r'["\']' + re.escape(op) + r'["\']')
    for name, text in files.items():
        if pattern.search(text):
            found.append(name)
    return found


def render() -> str:
    sys.path.insert(0, str(ROOT))
    from lipaudit.ops import load_rules

    rules = load_rules()
    files = {str(p.relative_to(ROOT)): p.read_text() for p in sorted((ROOT / "tests").rglob("test_*.py"))}
    rows = ["| op | kind | slots | attributes read | constant | tests |", "|---|---|---|---|---|---|"]
    refused = []
    for op in sorted(rules):
        r = rules[op]
        if r.kind == "refused":
            refused.append(f"| {op} | {r.constant} |")
            continue
        slots = ", ".join(f"`{s}` {role.value[0].upper()}" for s, role in r.inputs.items())
        attrs = ", ".join(f"`{a}`" for a in sorted(r.attrs)) or "-"
        tests = [f for f in _tests_mentioning(op, files) if f != "tests/soundness/test_contracts.py"]
        tests = ["test_contracts"] + [Path(f).stem for f in tests]
        constant = r.constant.replace("|", "\\|")
        rows.append(f"| {op} | {r.kind} | {slots} | {attrs} | {constant} | {', '.join(tests)} |")
    text = HEADER + "\n" + "\n".join(rows) + "\n"
    if refused:
        text += ("\n## Ops refused on purpose\n\nThese have a rule whose only job is to refuse with a reason "
                 "(no global Lipschitz constant, or not continuous):\n\n| op | reason |\n|---|---|\n"
                 + "\n".join(refused) + "\n")
    return text


def main() -> None:
    DOC.write_text(render())
    print(f"wrote {DOC.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
