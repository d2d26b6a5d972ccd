"""The figure's title and legend, 5 and 200 layers, and the HTML page for several models."""

from __future__ import annotations

import json
import sys

import pytest
from typer.testing import CliRunner

from lipaudit.cli import app
from lipaudit.report.html import render_html_multi
from tests.cli.test_table_fit import _report
from tests.conftest import ROOT

pytest.importorskip("matplotlib")


def _points_in_legend(fig) -> int:
    """How many plotted points fall inside a legend's box, in display coordinates."""
    fig.canvas.draw()
    inside = 0
    for ax in fig.axes:
        legend = ax.get_legend()
        if legend is None:
            continue
        box = legend.get_window_extent()
        for line in ax.get_lines():
            for x, y in ax.transData.transform(line.get_xydata()):
                inside += box.x0 <= x <= box.x1 and box.y0 <= y <= box.y1
    return inside


@pytest.mark.parametrize("n", [5, 200])
def test_title_has_full_values_and_legend_covers_no_point(n):
    import matplotlib.pyplot as plt

    from lipaudit.report.plot import figure

    report = _report(n, ("exact",), long_names=n > 100)
    report["network"]["certified"]["value"] = 32985.1086
    report["network"]["attained"] = {"value": 1234.5, "kind": "lower"}
    fig = figure(report)
    try:
        title = fig.axes[0].get_title(loc="left")
        assert "certified network bound 32,985.11 (upper)" in title and "attained 1,234.50 (lower)" in title
        assert _points_in_legend(fig) == 0
        labels = [t.get_text() for t in fig.axes[-1].get_xticklabels()]
        assert 0 < len(labels) <= 160  # thinned out at 200 layers, all shown at 5
        if n == 5:
            assert len(labels) == 5
    finally:
        plt.close(fig)


def test_html_several_models_one_page_with_summary(monkeypatch):
    reports = [_report(3), _report(4)]
    reports[1]["model"]["path"] = "second <b>model</b>.onnx"
    page = render_html_multi(reports)
    assert page.count("<section") == 2 and "lipaudit report: 2 models" in page
    assert "href='#model-1'" in page and "second &lt;b&gt;model&lt;/b&gt;.onnx" in page
    assert page.count("<img") == 2
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if matplotlib were not installed
    bare = render_html_multi(reports)
    assert "<img" not in bare and bare.count("The figure was left out: matplotlib is not installed") == 2


def test_cli_html_with_several_models_writes_all(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    out = tmp_path / "report.html"
    res = CliRunner().invoke(app, ["check", "sample_models/digits_cnn_bn.onnx", "sample_models/mnist_spectral_norm.onnx",
                                   "--html", str(out), "-q"])
    assert res.exit_code == 0
    page = out.read_text()
    assert "sample_models/digits_cnn_bn.onnx" in page and "sample_models/mnist_spectral_norm.onnx" in page
    assert page.count("<section") == 2
