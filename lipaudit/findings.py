"""Stable finding codes: what can go wrong in an audit, and what each one means."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


# where docs/findings.md is published; every code has a section there (help links in SARIF)
DOCS_URL = "https://github.com/lipaudit/lipaudit/blob/main/docs/findings.md"

SEVERITY_ORDER = {"error": 0, "warning": 1, "info": 2}


@dataclass(frozen=True)
class Code:
    code: str
    name: str
    severity: str  # error (fails the run) | warning | info
    summary: str
    explanation: str

    @property
    def anchor(self) -> str:
        """The section of docs/findings.md (GitHub's anchor for ``## LIP001 network-bound-exceeded``)."""
        return f"{self.code.lower()}-{self.name}"

    @property
    def help_uri(self) -> str:
        return f"{DOCS_URL}#{self.anchor}"


def findings_markdown() -> str:
    """docs/findings.md: one section per code (generated; a test keeps the file in sync)."""
    lines = ["# Finding codes", "", "Generated from `lipaudit/findings.py` (`lipaudit explain CODE` prints the same text).",
             "Severity `error` fails the run (exit 1), or, for LIP1xx, means it could not decide (exit 2).", ""]
    for c in CODES.values():
        lines += [f"## {c.code} {c.name}", "", f"Severity: `{c.severity}`.", "", c.summary, "", c.explanation, ""]
    return "\n".join(lines)


CODES: dict[str, Code] = {
    c.code: c
    for c in [
        Code("LIP001", "network-bound-exceeded", "error", "The certified network Lipschitz bound is above --max-lipschitz.",
             "The network certificate (every factor a guaranteed upper bound) exceeds the threshold. The true "
             "Lipschitz constant may be lower; the certificate cannot show it is below the threshold."),
        Code("LIP002", "layer-norm-exceeded", "error", "A layer's certified norm is above --max-layer-norm.",
             "The layer's smallest guaranteed upper bound exceeds the threshold. For a layer meant to be "
             "1-Lipschitz (e.g. spectral normalisation) this shows the constraint does not hold for the conv."),
        Code("LIP003", "bound-regressed", "error", "The certified network bound grew by more than --max-increase over the baseline.",
             "Compared with the report given by --baseline, the network certificate increased by more than "
             "the allowed fraction."),
        Code("LIP004", "layer-regressed", "warning", "A layer's certified norm grew by more than --max-increase over the baseline.",
             "Reported per layer (matched by name) to show where a network-level regression comes from."),
        Code("LIP005", "tn-below-exact", "error", "The TN value of a layer is below its exact norm: it is not an upper bound.",
             "HOPM converges from below; if it stopped early the TN value can fall below the true norm. The "
             "certified value never uses an unverified TN, but the TN composition is then not a bound. Raise "
             "--iters or lower --tol."),
        Code("LIP006", "network-value-is-estimate", "info", "The selected method's network number contains estimates.",
             "At least one layer's factor in the selected composition is an estimate (e.g. unverified TN), so that "
             "network number is an estimate, not a certificate. The 'certified' network number is always one."),
        Code("LIP007", "hopm-not-converged", "warning", "HOPM hit its iteration cap before converging.",
             "The TN value of the layer is a lower estimate of the TN bound that may be further from it than the "
             "tolerance. Raise --iters."),
        Code("LIP008", "no-graph", "info", "The file holds weights only: per-layer values, no network certificate.",
             "State dicts and checkpoints store no architecture, so nothing says how layers connect. Use an "
             "ONNX/.pt2/TorchScript file, or --arch module:factory, for a network certificate."),
        Code("LIP009", "stride-assumed", "warning", "Strides and padding were assumed for a layer (state dict).",
             "A state dict does not store strides; stride 1 was assumed unless --stride gave one. The TN value of "
             "a strided conv differs; give the real stride for a true per-layer bound."),
        Code("LIP010", "non-finite-value", "warning", "A weight, constant or bound is NaN or infinite: the bound is inf.",
             "A NaN or infinite weight (or constant, or BatchNorm statistic) leaves no finite bound for that layer; "
             "the layer's values and every certificate through it are reported as inf, never as a finite number "
             "or NaN, and every gate on them fails."),
        Code("LIP011", "dynamic-batch", "info", "The batch dimension is dynamic: certified per sample.",
             "The model declares a dynamic batch (symbolic, -1 or 0). lipaudit certifies the map of one sample and "
             "checks that no op combines samples (the batch stays on axis 0 of every value and no op acts along it), "
             "so the constant holds for every batch size. Give --input-shape to certify a fixed batch instead."),
        Code("LIP012", "domain-certificate", "info", "The network bound holds on the --input-range domain only.",
             "Some factors (products of input-dependent tensors such as squeeze-excite gates or attention, "
             "divisions by input-dependent values, exp/log/sqrt/powers) have no global Lipschitz constant; they were "
             "certified from interval bounds of their operands on the box given by --input-range. The network number "
             "is a guaranteed bound for inputs inside that box only (the report's valid_on), not a global constant."),
        Code("LIP013", "partial-report", "info", "No network certificate; every layer's values are reported.",
             "An op on the way to the outputs has no sound rule for how it is used (see LIP101), so the network "
             "number is unavailable; the per-layer values are complete. The finding says what would make the "
             "network certifiable: --input-range for products of input-dependent tensors and unbounded slopes, or "
             "--until/--output to certify the network up to a value before the refused node (lipaudit nodes MODEL "
             "lists node names and values). The run exits 0 unless a gate that needs the network was asked for."),
        Code("LIP014", "eps-normalisation-constant", "info",
             "A normalisation layer's global constant comes from its eps: 1/sqrt(eps) times the scale.",
             "LayerNormalization, GroupNormalization, InstanceNormalization and their spelled-out form "
             "(x - mean) / sqrt(var + eps) have the exact global Lipschitz constant ||diag(gamma) P|| / sqrt(eps), "
             "attained where a group's entries are all equal. With eps = 1e-5 or 1e-6 it is a factor of several "
             "hundred per layer: the certificate is sound, but it says more about eps than about the trained "
             "network. The message gives the factor; a bound on a stated input domain can be much smaller."),
        Code("LIP020", "certified-accuracy-below", "error", "Certified accuracy at an eps is below --min-certified-accuracy.",
             "lipaudit certify: the fraction of samples that are classified correctly and whose certified l2 radius "
             "margin / (sqrt(2) L) exceeds eps is below the threshold given as ACC@EPS."),
        Code("LIP030", "baseline-settings-differ", "warning", "The baseline was computed differently; compared anyway.",
             "--allow-baseline-mismatch compared the certified bound with a baseline computed with other settings "
             "(method, per-layer methods, input shape, outputs, domain or solver settings). The change in the number "
             "then mixes the model's change with the settings' change."),
        Code("LIP031", "baseline-other-version", "info", "The baseline was written by another lipaudit version.",
             "Bounds can change slightly between versions (e.g. a tighter rule). The comparison was made; "
             "regenerate the baseline with this version to be sure a change comes from the model."),
        Code("LIP032", "waiver-unused", "info", "A [[tool.lipaudit.waive]] entry matched no finding.",
             "A waiver names a layer and a code; none of this run's findings matched it. The layer may have been "
             "renamed (the waiver then silently protects nothing) or the problem is gone. Remove the waiver or "
             "correct its layer: a layer name, a glob over names, or a module path such as stem.0."),
        Code("LIP040", "attained-unavailable", "info", "No attained (lower) value: the model could not be searched.",
             "The attained value is a verified secant found by gradient ascent on the Jacobian norm with torch "
             "autodiff. It needs the torch module (.pt2, TorchScript, --arch) or an ONNX file that onnx2torch "
             "converts and whose conversion agrees with onnxruntime; the message says which step failed. The "
             "certificate is unaffected."),
        Code("LIP041", "attained-above-certificate", "error", "The attained value exceeds the certified bound.",
             "A verified secant ||f(a) - f(b)|| / ||a - b|| above the certified Lipschitz bound means the "
             "certificate is wrong for this model. Please report it with the model."),
        Code("LIP100", "model-unreadable", "error", "The model file could not be read.",
             "Missing, empty, truncated, not the claimed format, failed onnx.checker, or unsafe to load."),
        Code("LIP101", "unsupported-op", "warning", "No network certificate: an op has no sound rule for how it is used.",
             "An op has no Lipschitz rule, no global Lipschitz constant, an attribute or input slot its rule does not "
             "handle, or an input-dependent value where its rule needs a constant. lipaudit never assumes a factor "
             "of 1: the network certificate is reported as unavailable with the node, the slot and the reason, and "
             "every layer's values are still computed. Use --output/--until to certify up to a value before that "
             "node (e.g. raw detection heads before their post-processing)."),
        Code("LIP102", "input-shape-needed", "error", "A static input shape is needed.",
             "A symbolic dimension other than the leading batch dimension needs --input-shape."),
        Code("LIP103", "usage-error", "error", "The command line or settings are invalid.", "See lipaudit check --help."),
        Code("LIP104", "internal-error", "error", "lipaudit failed unexpectedly.",
             "Please report it with the model if possible. The run is marked as an error (exit 2), never as passed."),
        Code("LIP105", "baseline-unreadable", "error", "The --baseline report could not be read.",
             "The baseline must be a JSON report written by lipaudit (--json)."),
        Code("LIP106", "gate-needs-graph", "error", "A gate needs a network certificate, which this audit cannot give.",
             "--max-lipschitz and --baseline compare network certificates; a state dict has no graph, and a graph "
             "with an op lipaudit cannot certify (LIP101) has no certificate. The run exits 2: undecided."),
        Code("LIP120", "data-unusable", "error", "The data given to certify cannot be used.",
             "lipaudit certify needs an .npz with arrays x (inputs as the model takes them) and y (integer labels "
             "in range of the logits), the same number of samples, and finite values."),
        Code("LIP107", "resource-budget-exceeded", "error", "The audit would need more memory than --max-memory allows.",
             "Before computing, lipaudit estimates the memory each step needs from the shapes alone (unpacked "
             "archives, folded constants, every value's size, each method's working set). A step above the budget "
             "(default 4GB) is refused before it starts, naming the node and the estimate. Raise the budget with "
             "--max-memory, e.g. --max-memory 8GB, or choose a cheaper method."),
        Code("LIP130", "baseline-mismatch", "error", "The baseline was computed differently: not compared.",
             "A regression check compares like with like. The baseline report records a different method, "
             "per-layer methods, input shape, outputs, input domain or solver settings, so its certified bound is "
             "not comparable; the message names each difference. Regenerate the baseline with the same settings, "
             "or pass --allow-baseline-mismatch to compare anyway (finding LIP030). The run exits 2: undecided."),
    ]
}


@dataclass
class Finding:
    code: str
    message: str
    node: str | None = None
    value: float | None = None
    threshold: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    waived: bool = False  # a [[tool.lipaudit.waive]] entry matched: reported, never counted
    reason: str | None = None  # the waiver's reason
    module: str | None = None  # the node's source module path (dynamo exporter metadata)

    @property
    def name(self) -> str:
        return CODES[self.code].name

    @property
    def severity(self) -> str:
        return CODES[self.code].severity

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "name": self.name, "severity": self.severity, "message": self.message}
        if self.node is not None:
            out["node"] = self.node
        if self.module is not None:
            out["module"] = self.module
        if self.value is not None:
            out["value"] = float(self.value)
        if self.threshold is not None:
            out["threshold"] = float(self.threshold)
        if self.waived:
            out["waived"] = True
            out["reason"] = self.reason or ""
        return out
