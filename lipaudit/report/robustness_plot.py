"""Certified accuracy against the l2 radius eps, from the per-sample certified radii."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from lipaudit.report.plot import _pyplot


def curve_figure(certified_radii: np.ndarray, eps: Sequence[float], clean_accuracy: float, lipschitz: float, title: str):
    plt = _pyplot()
    r = np.sort(np.asarray(certified_radii, dtype=np.float64))
    top = max(max(eps, default=0.0), float(np.quantile(r, 0.99)) if r.size else 0.0) * 1.1 or 1.0
    grid = np.linspace(0.0, top, 400)
    acc = 1.0 - np.searchsorted(r, grid, side="right") / max(r.size, 1)  # fraction with radius > eps
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ax.plot(grid, acc, color="#1f77b4", label="certified accuracy")
    pts = [(e, float(np.mean(r > e))) for e in eps]
    ax.plot([p[0] for p in pts], [p[1] for p in pts], "o", color="#d62728", label="requested eps")
    for e, a in pts:
        ax.annotate(f"{a:.3f}", (e, a), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.axhline(clean_accuracy, color="grey", linestyle=":", label=f"clean accuracy {clean_accuracy:.3f}")
    ax.set_xlabel("l2 radius eps")
    ax.set_ylabel("certified accuracy")
    ax.set_ylim(0, 1.02)
    ax.set_xlim(0, top)
    ax.set_title(f"{title}\nL = {lipschitz:.6g} (certified), radius = margin / (sqrt(2) L)", fontsize=9)
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    return fig


def curve_bytes(fmt: str = "png", **kwargs) -> bytes:
    """The curve as image bytes (``png``, ``svg`` or ``pdf``); the caller writes them (atomically)."""
    import io

    import matplotlib.pyplot as plt

    fig = curve_figure(**kwargs)
    try:
        buf = io.BytesIO()
        fig.savefig(buf, format=fmt, dpi=120)
        return buf.getvalue()
    finally:
        plt.close(fig)
