"""Operators with no global Lipschitz constant, or not continuous, or without a rule yet: a clear refusal.

Their contract is empty: the engine refuses them with the reason below before
looking at any slot or attribute.
"""

from __future__ import annotations

from lipaudit.ops import rule

HINT = "use --output/--until to certify up to a value before it"
UNBOUNDED = {
    "LpNormalization": "normalisation by an input-dependent norm has no global Lipschitz constant",
    "MeanVarianceNormalization": "divides by sqrt(var) + 1e-9: its best global constant is 1e9, so no rule is given",
    "LRN": "no sound Lipschitz rule is implemented for local response normalisation (cross-channel division)",
}
DISCONTINUOUS = {
    "ArgMax", "ArgMin", "TopK", "NonMaxSuppression", "Round", "Floor", "Ceil", "Sign",
    "ThresholdedRelu", "Hardmax", "NonZero", "Equal", "Greater", "Less", "GreaterOrEqual", "LessOrEqual",
    "Not", "And", "Or", "Xor", "QuantizeLinear", "DequantizeLinear", "Mod", "BitShift", "IsNaN", "IsInf",
}


@rule(*UNBOUNDED, inputs={}, kind="refused", constant="refused: no global constant (or no rule yet)")
def unbounded(node, ctx):
    ctx.fail(node, UNBOUNDED[node.op], hint=HINT)


@rule(*DISCONTINUOUS, inputs={}, kind="refused", constant="refused: not continuous")
def discontinuous(node, ctx):
    ctx.fail(node, "the op is not continuous in its input, so no Lipschitz constant exists", hint=HINT)
