"""Walk a :class:`Graph` and compose per-layer bounds into network Lipschitz constants.

For every value the engine keeps its Lipschitz constant with respect to the
network input, once per *composition* (the selected method, e.g. ``tn``, and
``certified``, where every factor is a guaranteed upper bound; ``exact`` too
with ``--compare exact``). The network number of a composition is the
root-sum-square over the selected outputs (the map to all of them jointly).
It is a guaranteed bound (kind ``upper``) only when every layer factor in it is.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable

import numpy as np

from lipaudit.bounds import CONV_METHODS, BoundSettings
from lipaudit.errors import UnsupportedOpError, UsageError
from lipaudit.fold import plan_bn_folds
from lipaudit.graph import Graph
from lipaudit.ops import load_rules
from lipaudit.ops.box import node_boxes, start_boxes
from lipaudit.ops.context import LayerRecord, Refusal, RuleContext, finite_or_inf
from lipaudit.ops.contract import DEFAULT_DOMAINS, HINT_STOP, NON_DETERMINISTIC, check_node, undeclared_outputs, unknown_op
from lipaudit.values import Kind

METHODS = ("tn", "f4", "fro", "certified")
COMPARE_METHODS = ("exact", "f4", "fro", "fft", "symbol", "tn")
MEASURED_OPS = {"Conv", "ConvTranspose", "Gemm", "MatMul", "BatchNormalization"}

Progress = Callable[[int, int, str], None]


@dataclass(frozen=True)
class AuditSettings:
    """What to compute.

    Attributes:
        method: per-layer method composed into the main network number
            (``tn``, ``f4``, ``fro``, or ``certified``).
        compare: extra per-layer methods (``exact``, ``f4``, ``fro``, ``fft``, ``symbol``).
        outputs: certify the map to these values only (default: all graph outputs).
        until: certify the map to this node's outputs.
        bounds: solver settings.
        jobs: threads computing independent layers at once (0: one per CPU core).
        input_range: an :class:`~lipaudit.domain.InputDomain` (``--input-range``): values get interval
            bounds on it, and products of input-dependent tensors are certified on it (the network
            number then holds on that domain only). ``None``: global constants only.
        expansion: the expansion certificate's work budget (GMAC) for the ``certified``
            composition; ``None``: on with ``--method certified`` at the default budget, 0: off.
    """

    method: str = "tn"
    compare: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    until: str | None = None
    bounds: BoundSettings = field(default_factory=BoundSettings)
    jobs: int = 0
    input_range: Any = None
    expansion: float | None = None

    @property
    def expansion_budget(self) -> float:
        if self.expansion is None:
            return 5.0 if self.method == "certified" else 0.0
        return max(float(self.expansion), 0.0)

    def __post_init__(self):
        if self.method not in METHODS:
            raise UsageError(f"unknown method {self.method!r}; choose from {', '.join(METHODS)}")
        bad = [c for c in self.compare if c not in COMPARE_METHODS]
        if bad:
            raise UsageError(f"unknown --compare method(s) {', '.join(bad)}; choose from {', '.join(COMPARE_METHODS)}")

    @property
    def compositions(self) -> list[str]:
        comps = [] if self.method == "certified" else [self.method]
        comps.append("certified")
        if "exact" in self.compare:
            comps.append("exact")
        return comps

    @property
    def conv_methods(self) -> tuple[str, ...]:
        # fro is free and always computed; tn and certified are in every default report
        wanted = {"fro": ["fro"], "f4": ["f4", "fro"], "tn": ["tn", "f4", "fro"]}.get(self.method, ["tn", "f4", "fro"])
        if self.method == "certified":
            wanted.append("fft")  # tighter than f4 at the model's own input size
        wanted += [m for m in self.compare if m in CONV_METHODS]
        return tuple(dict.fromkeys(wanted))


@dataclass
class NetworkValue:
    """A network Lipschitz constant for one composition."""

    value: float
    kind: Kind
    per_output: dict[str, float]
    estimate_layers: list[str]  # layers whose factor is only an estimate
    valid_on: Any = None  # the input domain it holds on (InputDomain.to_json()), None: every input
    product: float | None = None  # the product walk's value, when a tighter composition replaced it
    expansion: dict | None = None  # what the expansion certificate did (lipaudit.certificate.expansion)
    detail: dict | None = None  # extra report fields (e.g. the attained value's gap and search)


@dataclass
class AuditResult:
    """Per-layer values and network constants.

    ``network`` is empty when no certificate exists for the selected outputs;
    ``refusals`` then says why (every root cause on the way to them, in graph
    order), while ``layers`` still holds every measured layer.
    """

    layers: list[LayerRecord]
    factors: list[dict]
    network: dict[str, NetworkValue]
    inputs: list[str]
    outputs: list[str]
    settings: AuditSettings
    elapsed_s: float
    timings: dict[str, float] = field(default_factory=dict)  # wall: bounds_s (per-layer), certificate_s (the walk)
    refusals: list[Refusal] = field(default_factory=list)
    node_notes: list[tuple[str, str, str]] = field(default_factory=list)  # (code, node, message) for findings
    dynamic_batch: bool = False
    domain: Any = None  # the InputDomain given (--input-range), or None
    domain_uses: list[dict] = field(default_factory=list)  # factors that hold on the domain only
    boxes: dict = field(default_factory=dict)  # value -> Box | NoBox on the domain (empty without one)
    modules: dict[str, str] = field(default_factory=dict)  # node -> source module path (dynamo exporter metadata)


# ops that may hold an infinite constant (masks, open clamps) and still be finite functions of the input
_INF_CONSTANTS_OK = {"Where", "Clip", "Max", "Min"}


def audit(graph: Graph, settings: AuditSettings = AuditSettings(), progress: Progress | None = None) -> AuditResult:
    """Compute per-layer values and network constants for ``graph``.

    A node whose rule refuses it (or that has no rule, or breaks its rule's
    contract) does not stop the audit: its outputs carry the refusal, layers
    downstream are still measured, and the network certificate is reported as
    unavailable with the reason.

    Raises:
        UsageError: an unknown ``--output``/``--until`` name.
        InputShapeError: a rule needs a shape that is unknown.
    """
    t0 = time.perf_counter()
    rules = load_rules()
    outputs = _select_outputs(graph, settings)
    needed = graph.needed_nodes(outputs)
    ctx = RuleContext(graph, settings.compositions, settings.conv_methods, settings)
    intervals = start_boxes(graph, ctx, settings.input_range)
    plan_bn_folds(graph, ctx, observed=set(outputs))
    for name in graph.inputs:
        ctx.lips[name] = {c: 1.0 for c in ctx.compositions}
    dynamic_batch = graph.batch_shapes is not None
    total = sum(1 for n in graph.nodes if n.name in needed and n.op in MEASURED_OPS)
    t_pre = time.perf_counter()
    done = _precompute_convs(graph, ctx, needed, settings, progress, total)
    precomputed_names = set(ctx.precomputed)
    t_walk = time.perf_counter()
    t_pre = t_walk - t_pre
    in_walk_bounds = 0.0  # time of layer rules (their bounds) during the walk
    roots: list[Refusal] = []
    for node in graph.nodes:
        if node.name not in needed:
            continue
        if not any(ctx.depends(x) for x in node.inputs):
            refusal = _not_a_constant(node, ctx)
            for o in node.outputs:
                ctx.lips[o] = refusal  # None: a function of constants only
            if refusal is not None:
                roots.append(refusal)
            continue
        t_rule = time.perf_counter()
        results, refusal, contract_ok = _apply(node, rules, ctx, dynamic_batch)
        if node.op in MEASURED_OPS:
            in_walk_bounds += time.perf_counter() - t_rule
        if refusal is not None:
            if node.module and refusal.module is None:
                refusal = replace(refusal, module=node.module)
            roots.append(refusal)
            results = [refusal] * len(node.outputs)
        else:  # an output without a constant (e.g. MaxPool Indices) is a root cause too, once something uses it
            roots.extend(r for i, r in enumerate(results) if isinstance(r, Refusal) and r.node == node.name
                         and r not in results[:i])
        for o, lip in zip(node.outputs, results):
            if o:
                ctx.lips[o] = lip
        if intervals is not None:
            node_boxes(node, ctx, intervals, contract_ok)
        if node.op in MEASURED_OPS and not (node.op in ("Conv", "ConvTranspose") and node.name in precomputed_names):
            done += 1
            if progress is not None:
                progress(done, total, node.name)
    t_walk = time.perf_counter() - t_walk
    timings = {"bounds_s": t_pre + in_walk_bounds, "certificate_s": max(t_walk - in_walk_bounds, 0.0)}
    network: dict[str, NetworkValue] = {}
    final = [ctx.lips.get(o) for o in outputs]
    refused = [v for v in final if isinstance(v, Refusal)]
    if not refused:
        for c in ctx.compositions:
            per_output = {o: (v or {}).get(c, 0.0) for o, v in zip(outputs, final)}
            # over the outputs list, not the dict: an output listed twice is two copies in the output vector
            value = finite_or_inf(math.hypot(*(per_output[o] for o in outputs)))
            estimates = ctx.unsound.get(c, [])
            network[c] = NetworkValue(value, Kind.ESTIMATE if estimates else Kind.UPPER, per_output, estimates,
                                      valid_on=ctx.domain.to_json() if ctx.domain_uses else None)
    if "certified" in network and settings.expansion_budget > 0:
        t_exp = time.perf_counter()
        network["certified"] = _with_expansion(graph, ctx, outputs, network["certified"], settings, progress)
        timings["expansion_s"] = time.perf_counter() - t_exp
        timings["certificate_s"] += timings["expansion_s"]
    layer_shares(ctx.layers, ctx.compositions[0])
    return AuditResult(
        layers=ctx.layers, factors=ctx.factors, network=network, inputs=list(graph.inputs), outputs=outputs,
        settings=settings, elapsed_s=time.perf_counter() - t0, timings=timings,
        refusals=roots if refused else [], node_notes=list(ctx.notes), dynamic_batch=dynamic_batch,
        domain=ctx.domain, domain_uses=list(ctx.domain_uses), boxes=ctx.boxes,
        modules={n.name: n.module for n in graph.nodes if n.module},
    )


def _with_expansion(graph: Graph, ctx: RuleContext, outputs: list[str], product: NetworkValue,
                    settings: AuditSettings, progress: Progress | None = None) -> NetworkValue:
    """The certified network value: per output, the smaller of the product and the expansion certificate."""
    if product.kind is not Kind.UPPER:
        return product
    from lipaudit.certificate.expansion import ExpansionSettings, expansion_bound

    try:
        with _single_threaded_blas():  # many small batched products: threads only add overhead
            result = expansion_bound(graph, ctx.lips, outputs, ctx.bn_scales,
                                     ExpansionSettings(budget=settings.expansion_budget),
                                     shifted=_fold_shifted(graph, ctx),
                                     progress=(lambda i, n, v: progress(i, n, f"expansion segment {i}/{n}"))
                                     if progress is not None else None)
    except (ArithmeticError, ValueError, IndexError, TypeError, KeyError) as exc:
        # the expansion only ever tightens the product; a graph it cannot handle keeps the product
        logging.getLogger("lipaudit.certificate").info("expansion certificate skipped: %s: %s",
                                                          type(exc).__name__, exc)
        return product
    per_output = {o: min(product.per_output.get(o, math.inf), result.per_output.get(o, math.inf)) for o in outputs}
    value = finite_or_inf(math.hypot(*(per_output[o] for o in outputs)))  # repeated outputs count twice
    # cut outputs carry the product walk's constants, so the result holds where they hold (valid_on)
    return NetworkValue(min(value, product.value), product.kind, per_output, product.estimate_layers,
                        valid_on=product.valid_on, product=product.value, expansion=result.to_json())


def _fold_shifted(graph: Graph, ctx: RuleContext) -> set[str]:
    """Values whose product constant is not their own because of a BatchNorm fold.

    A BN folded *after* a layer puts its scale into the layer's output (and the bias additions up to
    the BN); one folded *before* a conv leaves its own output without its scale.
    """
    producers = graph.producers()
    shifted: set[str] = set()
    for bn_name, _ in (item for folds in ctx.fold_before.values() for item in folds):
        bn = graph.node(bn_name)
        if bn is not None:
            shifted.update(o for o in bn.outputs if o)
    for bn_name, _ in (item for folds in ctx.fold_after.values() for item in folds):
        bn = graph.node(bn_name)
        value = bn.inputs[0] if bn is not None else None
        while value is not None and value not in shifted:
            node = producers.get(value)
            if node is None:
                break
            shifted.add(value)
            value = next((i for i in node.inputs if i not in graph.constants), None) if node.op in ("Add", "Sub") else None
    return shifted


def _apply(node, rules, ctx: RuleContext, dynamic_batch: bool):
    """Check the node against its rule's contract, run the rule, and make its outputs sound.

    Returns ``(results, refusal, contract_ok)``; exactly one of the first two is meaningful;
    ``contract_ok`` says whether the rule accepted the node (its contract and its own checks), so that its
    attributes and slots are understood and its interval rule may run.
    """
    rule = rules.get(node.op) if node.domain in DEFAULT_DOMAINS else None
    if rule is None:
        return None, unknown_op(node), False
    if rule.kind != "refused":
        refusal = check_node(rule, node, ctx, dynamic_batch) or (_batch_refusal(node, ctx) if dynamic_batch else None)
        if refusal is not None:
            return None, refusal, False
    empty = [v for v in [i for i in node.inputs if ctx.depends(i)] + [o for o in node.outputs if o]
             if 0 in tuple(ctx.graph.shapes.get(v, (1,)))]
    if empty:
        return None, Refusal(node.name, node.op, f"{empty[0]!r} is an empty tensor (a zero-size axis): the model is "
                                                 f"malformed or the input shape is wrong"), False
    try:
        results = list(rule.fn(node, ctx))
    except UnsupportedOpError as exc:
        return None, Refusal(node.name, node.op, exc.reason, slot=exc.slot, hint=exc.hint), False
    except (ArithmeticError, ValueError, IndexError, TypeError, KeyError) as exc:
        # a rule that cannot handle this instance (often a malformed model): no certificate, never a guess
        return None, Refusal(node.name, node.op, f"lipaudit's rule cannot handle this node "
                                                 f"({type(exc).__name__}: {str(exc)[:120]})"), False
    results += [None] * (len(node.outputs) - len(results))
    for index, value in enumerate(node.outputs):
        if value in (marks := undeclared_outputs(rule, node, ctx)):
            results[index] = marks[value]
    if _nonfinite_constant(node, ctx):
        ctx.note("LIP010", node, f"node {node.name} ({node.op}) uses a constant that holds NaN or inf")
        results = [({c: math.inf for c in ctx.compositions} if isinstance(r, dict) else r) for r in results]
    return results, None, True


def _not_a_constant(node, ctx: RuleContext) -> Refusal | None:
    """Why a node without input-dependent inputs still cannot be taken as a constant, or None."""
    from lipaudit.ops.structural import dropout_training_reason

    if node.op == "Dropout" and node.domain in DEFAULT_DOMAINS:
        reason = dropout_training_reason(node, ctx.const, ctx.opset())
        if reason:
            return Refusal(node.name, node.op, reason, hint=HINT_STOP)
    if node.domain not in DEFAULT_DOMAINS:
        return unknown_op(node)  # a custom op's output may be anything, even without inputs
    if node.op in NON_DETERMINISTIC:
        return Refusal(node.name, node.op, "draws random numbers: its output is not a function of the network input",
                       hint=HINT_STOP)
    return None


def _nonfinite_constant(node, ctx: RuleContext) -> bool:
    """A constant operand holds NaN (or inf, outside ops where inf is a mask or an open bound)."""
    for name in node.inputs:
        c = ctx.const(name)
        if c is None or not np.issubdtype(np.asarray(c).dtype, np.floating):
            continue
        c = np.asarray(c)
        if np.isnan(c).any() or (node.op not in _INF_CONSTANTS_OK and np.isinf(c).any()):
            return True
    return False


def _batch_refusal(node, ctx: RuleContext) -> Refusal | None:
    """With a dynamic batch, every input-dependent value must keep the batch on axis 0 (size doubling at batch 2)."""
    graph = ctx.graph
    for o in node.outputs:
        if not o:
            continue
        s1, s2 = graph.shapes.get(o), graph.batch_shapes.get(o)
        if s1 is None or s2 is None:
            return Refusal(node.name, node.op, f"the shape of {o!r} is unknown at batch 1 or batch 2, so lipaudit "
                                               f"cannot check that samples stay separate",
                           hint="give --input-shape with your batch size")
        if len(s1) != len(s2) or not s1 or s2[0] != 2 * s1[0] or tuple(s2[1:]) != tuple(s1[1:]):
            return Refusal(node.name, node.op, f"the batch does not stay on axis 0 of {o!r} (shape {list(s1)} at "
                                               f"batch 1, {list(s2)} at batch 2): samples are mixed, so a per-sample "
                                               f"certificate would not hold for a batch",
                           hint="give --input-shape with your batch size")
    return None


def _precompute_convs(graph: Graph, ctx: RuleContext, needed: set[str], settings: AuditSettings, progress, total) -> int:
    """Compute the conv layers' values on ``jobs`` threads before the walk; returns how many were done.

    Layers are independent, and numpy's BLAS releases the GIL; each worker's BLAS
    runs single-threaded, so the threads do not oversubscribe the cores.
    """
    import os

    jobs = settings.jobs or (os.cpu_count() or 1)
    if jobs <= 1:
        return 0
    from concurrent.futures import ThreadPoolExecutor, as_completed

    from lipaudit.ops.conv import conv_layer, layer_values

    work = []
    for node in graph.nodes:
        if node.name in needed and node.op in ("Conv", "ConvTranspose") and node.domain in DEFAULT_DOMAINS:
            if node.inputs[0] in graph.constants:
                continue
            try:
                spec, _ = conv_layer(node, ctx)
            except Exception:
                continue  # the walk reports it, in graph order
            if spec is not None:
                work.append((node.name, spec))
    if len(work) < 2:
        return 0
    if "exact" in ctx.conv_methods:
        import torch  # noqa: F401  (imported here so its thread count is limited below)
    # biggest first: the pool stays busy until the end
    work.sort(key=lambda item: -item[1].weight.size)
    done = 0
    with _single_threaded_blas(), ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {pool.submit(layer_values, spec, ctx): name for name, spec in work}
        for future in as_completed(futures):
            ctx.precomputed[futures[future]] = future.result()
            done += 1
            if progress is not None:
                progress(done, total, futures[future])
    return done


class _single_threaded_blas:
    """Limit BLAS (and torch) to one thread per worker while layers run in parallel."""

    def __enter__(self):
        import sys

        self._limits = None
        try:
            from threadpoolctl import threadpool_limits

            self._limits = threadpool_limits(1)
        except ImportError:
            pass
        self._torch = sys.modules.get("torch")
        if self._torch is not None:
            self._torch_threads = self._torch.get_num_threads()
            self._torch.set_num_threads(1)
        return self

    def __exit__(self, *exc):
        if self._limits is not None:
            self._limits.restore_original_limits()
        if self._torch is not None:
            self._torch.set_num_threads(self._torch_threads)
        return False


def _select_outputs(graph: Graph, settings: AuditSettings) -> list[str]:
    if settings.until:
        node = graph.node(settings.until)
        if node is None:
            raise UsageError(f"--until: no node named {settings.until!r}")
        return [o for o in node.outputs if o][:1]
    if not settings.outputs:
        return list(graph.outputs)
    known = set(graph.inputs) | {o for n in graph.nodes for o in n.outputs} | set(graph.constants)
    missing = [o for o in settings.outputs if o not in known]
    if missing:
        raise UsageError(f"--output: no value named {', '.join(map(repr, missing))}; graph outputs are {graph.outputs}")
    return list(settings.outputs)


def layer_shares(layers: list[LayerRecord], composition: str) -> None:
    """Each layer's share of the growth of the bound: its positive log factor over the total."""
    logs = []
    for layer in layers:
        r = layer.values.get(composition) or layer.values["certified"]
        logs.append(max(math.log(r.value), 0.0) if r.value > 0 else 0.0)
    total = sum(logs)
    for layer, lg in zip(layers, logs):
        layer.share = lg / total if total > 0 else 0.0
