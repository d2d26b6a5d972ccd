"""``lipaudit nodes``: every node of a model with its op, values, shapes and source module.

So users can find the names ``--until NODE`` and ``--output VALUE`` take, and see
which PyTorch module a dynamo-exported ``node_Conv_292`` came from.
"""

from __future__ import annotations

import io
import json
from typing import Any

from lipaudit.graph import Graph


def node_rows(graph: Graph) -> list[dict[str, Any]]:
    """One row per node (after constant folding), in graph order."""
    rows = []
    for node in graph.nodes:
        data = [x for x in node.inputs if x and x not in graph.constants]
        rows.append({
            "name": node.name,
            "op": node.op if node.domain in ("", "ai.onnx") else f"{node.domain}::{node.op}",
            "module": node.module,
            "inputs": [{"value": x, "shape": _shape(graph, x)} for x in data],
            "outputs": [{"value": o, "shape": _shape(graph, o)} for o in node.outputs if o],
        })
    return rows


def _shape(graph: Graph, name: str):
    shape = graph.shapes.get(name)
    return list(shape) if shape is not None else None


def render_nodes_json(path: str, graph: Graph) -> str:
    payload = {"model": path, "inputs": [{"value": x, "shape": _shape(graph, x)} for x in graph.inputs],
               "outputs": list(graph.outputs), "nodes": node_rows(graph)}
    return json.dumps(payload, indent=2, sort_keys=True) + "\n"


def render_nodes_table(path: str, graph: Graph, width: int = 200) -> str:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from lipaudit.safe_io import clean_text

    def txt(value) -> Text:
        return Text(clean_text(value))

    rows = node_rows(graph)
    modules = any(r["module"] for r in rows)
    table = Table(title=txt(f"nodes — {path}"), title_justify="left", header_style="bold")
    table.add_column("#", justify="right", style="dim")
    table.add_column("node (--until)", overflow="fold")
    table.add_column("op")
    if modules:
        table.add_column("module", overflow="fold")
    table.add_column("inputs", overflow="fold")
    table.add_column("outputs (--output)", overflow="fold")
    for i, r in enumerate(rows, 1):
        cells = [str(i), txt(r["name"]), txt(r["op"])]
        if modules:
            cells.append(txt(r["module"] or "-"))
        cells.append(txt(", ".join(_value(v) for v in r["inputs"]) or "-"))
        cells.append(txt(", ".join(_value(v) for v in r["outputs"])))
        table.add_row(*cells)
    buf = io.StringIO()
    console = Console(file=buf, width=width, force_terminal=False, no_color=True, color_system=None, highlight=False)
    console.print(table)
    console.print(txt(f"network inputs: {', '.join(_value({'value': x, 'shape': _shape(graph, x)}) for x in graph.inputs)}"
                      f"; outputs: {', '.join(graph.outputs)}"))
    return buf.getvalue()


def _value(v: dict) -> str:
    shape = "x".join(map(str, v["shape"])) if v["shape"] is not None else "?"
    return f"{v['value']} [{shape}]"
