"""GitHub Actions workflow commands: one ``::error``/``::warning``/``::notice`` line per finding.

Format (GitHub's "workflow commands" documentation): ``::error file=PATH,title=TITLE::MESSAGE``.
Values are escaped as the Actions toolkit does (``%``, CR, LF in messages; also ``:`` and ``,`` in
properties), so a node name can neither end the line nor inject another command.
"""

from __future__ import annotations

from typing import Any

COMMAND = {"error": "error", "warning": "warning", "info": "notice"}


def _escape_data(text: str) -> str:
    from lipaudit.safe_io import clean_text

    # control characters from a model file (ESC, BEL, ...) become visible escapes, never terminal codes
    return clean_text(text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A"))


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def annotation(finding: dict[str, Any], path: str) -> str:
    waived = finding.get("waived", False)
    command = "notice" if waived else COMMAND[finding["severity"]]
    title = f"{finding['code']} {finding['name']}" + (" (waived)" if waived else "")
    message = finding["message"]
    if finding.get("node"):
        message = f"{message} [node {finding['node']}]" if finding["node"] not in message else message
    if waived:
        message += f" — waived: {finding.get('reason', '')}"
    return f"::{command} file={_escape_property(path)},title={_escape_property(title)}::{_escape_data(message)}"


def _repo_path(path: str) -> str:
    """GitHub places annotations by repository path: relative to the working directory when inside it."""
    import os

    try:
        rel = os.path.relpath(os.path.abspath(path))
    except ValueError:
        return path
    return path if rel.startswith("..") else rel.replace(os.sep, "/")


def render_github(reports: list[dict[str, Any]]) -> str:
    lines = [annotation(f, _repo_path(r["model"]["path"])) for r in reports for f in r["findings"]]
    return "".join(line + "\n" for line in lines)
