"""Operators that have no global Lipschitz constant, or are not continuous: a clear refusal."""

from __future__ import annotations

from lipaudit.ops import rule

UNBOUNDED = {
    "Exp": "exp has no global Lipschitz constant on an unbounded input",
    "Log": "log has no global Lipschitz constant (unbounded slope near 0)",
    "Sqrt": "sqrt has an unbounded slope near 0",
    "Reciprocal": "1/x has no global Lipschitz constant",
    "Pow": "x^p has no global Lipschitz constant in general",
    "InstanceNormalization": "divides by an input-dependent standard deviation (no global Lipschitz constant)",
    "LayerNormalization": "divides by an input-dependent standard deviation (no global Lipschitz constant)",
    "GroupNormalization": "divides by an input-dependent standard deviation (no global Lipschitz constant)",
    "LpNormalization": "normalisation by an input-dependent norm has no global Lipschitz constant",
    "MeanVarianceNormalization": "divides by an input-dependent standard deviation",
    "LRN": "no sound Lipschitz rule is implemented for local response normalisation (cross-channel division)",
}
DISCONTINUOUS = {
    "ArgMax", "ArgMin", "TopK", "NonMaxSuppression", "Round", "Floor", "Ceil", "Sign",
    "ThresholdedRelu", "Hardmax", "NonZero", "Equal", "Greater", "Less", "GreaterOrEqual", "LessOrEqual",
    "Not", "And", "Or", "Xor", "QuantizeLinear", "DequantizeLinear", "Mod", "BitShift", "IsNaN", "IsInf",
}


@rule(*UNBOUNDED)
def unbounded(node, ctx):
    ctx.fail(node, UNBOUNDED[node.op] + "; use --output/--until to stop before it")


@rule(*DISCONTINUOUS)
def discontinuous(node, ctx):
    ctx.fail(node, "the op is not continuous in its input, so no Lipschitz constant exists; use --output/--until to stop before it")
