"""Class 2: text from a model file is text: no markup, no terminal codes, valid JSON for any bytes."""

from __future__ import annotations

import json

import pytest

from lipaudit.safe_io import clean_text
from tests.hostile.harness import invoke
from tests.hostile.payloads import HOSTILE_NAMES, named_onnx

ESCAPES = ("\x1b", "\x07", "\x00", "\u202e")


def _no_codes(text: str, color: bool) -> None:
    plain = text
    if color:  # lipaudit's own colour codes are SGR sequences; remove them, then nothing may remain
        import re

        plain = re.sub(r"\x1b\[[0-9;]*m", "", text)
    for ch in ESCAPES:
        assert ch not in plain, repr(text[:400])


@pytest.mark.parametrize("key", sorted(HOSTILE_NAMES) + ["bad_utf8"])
def test_hostile_names_are_printed_as_text(tmp_path, monkeypatch, key):
    model = named_onnx(tmp_path, HOSTILE_NAMES.get(key, ""), bad_utf8=key == "bad_utf8")
    res = invoke(tmp_path, monkeypatch, "check", model.name, "--json", "out.json", code=0, outputs={"out.json"},
                 env={"FORCE_COLOR": "1", "COLUMNS": "200"})
    _no_codes(res.stderr, color=True)
    assert "\x1b]8" not in res.stderr  # no OSC 8 hyperlink
    report = json.loads((tmp_path / "out.json").read_text(encoding="utf-8"))
    if key not in ("bad_utf8", "esc", "newline", "bidi"):
        assert HOSTILE_NAMES[key] in res.stderr  # markup shown literally, not eaten
        assert report["layers"][0]["name"] == HOSTILE_NAMES[key]


@pytest.mark.parametrize("key", ["close", "esc", "link"])
def test_hostile_names_in_one_line_errors(tmp_path, monkeypatch, key):
    """An error quoting a name (here: --until an unknown node named like the hostile one) is one plain line."""
    model = named_onnx(tmp_path, HOSTILE_NAMES[key])
    res = invoke(tmp_path, monkeypatch, "check", model.name, "--until", HOSTILE_NAMES[key] + "?", "--format", "json",
                 env={"FORCE_COLOR": "1"})
    _no_codes(res.stderr, color=True)
    assert json.loads(res.stdout)["verdict"] == "error"


def test_unsupported_op_named_with_markup(tmp_path, monkeypatch):
    model = named_onnx(tmp_path, "[/]", unsupported=True)
    res = invoke(tmp_path, monkeypatch, "check", model.name, "-q", code=0, lines=1)
    assert "[/]" in res.stderr


def test_clean_text():
    assert clean_text("a\x1b[31mb") == "a\\x1b[31mb"
    assert clean_text("x\ny") == "x\\x0ay"
    assert clean_text(b"\xffok") == "\ufffdok"
    assert clean_text("ok\u202e") == "ok\\u202e"
    assert clean_text("[bold]plain[/]") == "[bold]plain[/]"  # markup is escaped by rendering as Text, not here
    assert clean_text("naïve café 層") == "naïve café 層"


@pytest.mark.parametrize("fmt", ["github", "sarif", "junit"])
def test_ci_formats_carry_no_terminal_codes(tmp_path, monkeypatch, fmt):
    import xml.dom.minidom

    model = named_onnx(tmp_path, HOSTILE_NAMES["esc"] + HOSTILE_NAMES["newline"], unsupported=True)
    res = invoke(tmp_path, monkeypatch, "check", model.name, "--format", fmt, "--max-layer-norm", "0.1", code=1, lines=0)
    _no_codes(res.stdout, color=False)
    if fmt == "junit":
        xml.dom.minidom.parseString(res.stdout.encode())
    elif fmt == "sarif":
        json.loads(res.stdout)
    else:
        assert all(line.startswith("::") for line in res.stdout.splitlines())
