"""Files and text from strangers: regular files only, atomic writes, text that is only text.

- Inputs (model, baseline, report, external data) must be regular files: a FIFO, device or
  socket would block forever or never end.
- Outputs are checked before the audit starts (the folder exists and is writable, the target is
  not a directory or a special file) and written atomically: to a temporary file in the same
  folder, then ``os.replace``. A reader sees the old file or the new one, never half of one.
- Text from a model file (names, producer strings, messages quoting them) is made printable:
  control characters, bidi overrides and line separators are shown as escapes, bytes are decoded
  with replacement, and rich markup is never interpreted (callers wrap it in ``rich.text.Text``).
"""

from __future__ import annotations

import os
import stat
import tempfile
import unicodedata
from pathlib import Path

from lipaudit.errors import LipauditError, ModelLoadError, UsageError

# invisible characters that reorder or hide text (Trojan Source) besides the control category
_INVISIBLE = {0x200E, 0x200F, 0x2028, 0x2029, 0x202A, 0x202B, 0x202C, 0x202D, 0x202E,
              0x2066, 0x2067, 0x2068, 0x2069, 0xFEFF}


class OutputError(LipauditError):
    """An output file cannot be written."""


def clean_text(value: object) -> str:
    """``value`` as printable one-line text: bytes decoded with replacement, control characters escaped."""
    if isinstance(value, (bytes, bytearray)):
        text = bytes(value).decode("utf-8", "replace")
    else:
        text = str(value)
    if text.isprintable():
        return text
    out = []
    for ch in text:
        code = ord(ch)
        if 0xD800 <= code <= 0xDFFF:  # a lone surrogate (undecodable bytes): not text
            out.append("\ufffd")
        elif unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") and (ch != " "):
            if unicodedata.category(ch) == "Cf" and code not in _INVISIBLE:
                out.append(ch)  # harmless format characters (e.g. a zero-width joiner in a name)
            else:
                out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
        else:
            out.append(ch)
    return "".join(out)


def clean_json(obj):
    """A JSON-ready copy with every string (and bytes) decodable: names from files may hold anything."""
    if isinstance(obj, dict):
        return {clean_json_key(k): clean_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean_json(v) for v in obj]
    if isinstance(obj, (bytes, bytearray)):
        return bytes(obj).decode("utf-8", "replace")
    if isinstance(obj, str):
        return obj.encode("utf-8", "replace").decode("utf-8") if not _encodable(obj) else obj
    return obj


def clean_json_key(key) -> str:
    return clean_json(key) if isinstance(key, (str, bytes, bytearray)) else str(key)


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def require_regular_file(path: str | os.PathLike, what: str = "model", error=ModelLoadError) -> None:
    """One clear error unless ``path`` names a non-empty regular file (symlinks are followed)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise error(f"{path}: no such file") from None
    except OSError as exc:
        raise error(f"{path}: cannot read the {what} file ({exc.strerror})") from None
    if stat.S_ISDIR(st.st_mode):
        raise error(f"{path}: is a directory, not a {what} file")
    if not stat.S_ISREG(st.st_mode):
        raise error(f"{path}: not a regular file ({_kind(st.st_mode)}); refusing to read a {what} from it")
    if st.st_size == 0:
        raise error(f"{path}: empty file")


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "a special file"


def check_output_path(path: str | os.PathLike, flag: str) -> None:
    """Before the audit: the report can be written there (else a usage error, exit 2)."""
    p = Path(path)
    if str(path) in ("", "-"):
        raise UsageError(f"{flag} {str(path)!r}: give a file name")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise UsageError(f"{flag} {path}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"{flag} {path}: folder {parent} is not writable")
    if p.exists():  # followed through links: a link to /dev/stdout or a FIFO is refused too
        st = os.stat(p)
        if stat.S_ISDIR(st.st_mode):
            raise UsageError(f"{flag} {path}: is a directory")
        if not stat.S_ISREG(st.st_mode):
            raise UsageError(f"{flag} {path}: not a regular file ({_kind(st.st_mode)})")
    # a link (dangling or to a regular file) is replaced by os.replace, never written through


def check_distinct_paths(outputs: list[tuple[str, str]], inputs: list[str]) -> None:
    """No two outputs share a file, and no output overwrites an input (the model, a baseline, data)."""
    seen: dict[str, str] = {}
    read = {os.path.realpath(p) for p in inputs if p}
    for flag, path in outputs:
        if not path:
            continue
        real = os.path.realpath(path)
        if real in read:
            raise UsageError(f"{flag} {path}: is also an input of this run; it would be overwritten")
        if real in seen:
            raise UsageError(f"{flag} {path}: is also the {seen[real]} file; give each output its own path")
        seen[real] = flag


class StagedWrites:
    """Write several outputs all-or-nothing: each to a temporary file beside its target, then replace all.

    ``stage`` writes a temporary file; ``commit`` renames them over their targets; leaving the
    ``with`` block without ``commit`` (an error, a signal turned into an exception) deletes them.
    """

    def __init__(self):
        self._staged: list[tuple[str, str]] = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.discard()
        return False

    def stage(self, path: str | os.PathLike, data: str | bytes, flag: str = "output") -> None:
        target = os.fspath(path)
        folder = os.path.dirname(os.path.abspath(target))
        payload = data.encode("utf-8") if isinstance(data, str) else data
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(target)}.", suffix=".tmp", dir=folder)
        except OSError as exc:
            raise OutputError(f"{flag} {target}: cannot write ({exc.strerror})") from None
        self._staged.append((tmp, target))
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(payload)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, _mode_for(target))
        except OSError as exc:
            raise OutputError(f"{flag} {target}: cannot write ({exc.strerror})") from None

    def commit(self) -> None:
        try:
            while self._staged:
                tmp, target = self._staged[0]
                os.replace(tmp, target)
                self._staged.pop(0)
        except OSError as exc:
            raise OutputError(f"{target}: cannot write ({exc.strerror})") from None

    def discard(self) -> None:
        for tmp, _ in self._staged:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        self._staged.clear()


def _mode_for(target: str) -> int:
    """The target's current permissions, or what a plain open() would give (0o666 minus the umask)."""
    try:
        return stat.S_IMODE(os.stat(target).st_mode)
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def atomic_write(path: str | os.PathLike, data: str | bytes, flag: str = "output") -> None:
    """Write one file atomically (temporary file in the same folder, fsync, ``os.replace``)."""
    with StagedWrites() as staged:
        staged.stage(path, data, flag)
        staged.commit()


def check_external_data(model, base_dir: str, path: str) -> None:
    """Before onnx reads external weights: each file is a regular file inside the model's folder, and
    the bytes to read fit the run's memory budget (a FIFO or /dev/zero would never end)."""
    from onnx.external_data_helper import ExternalDataInfo, _get_all_tensors, uses_external_data

    from lipaudit.budget import current, require

    total = 0
    base = os.path.realpath(base_dir)
    for tensor in _get_all_tensors(model):
        if not uses_external_data(tensor):
            continue
        info = ExternalDataInfo(tensor)
        location = os.path.realpath(os.path.join(base, info.location or ""))
        if os.path.commonpath([base, location]) != base:
            raise ModelLoadError(f"{path}: external weights of {clean_text(tensor.name)!r} point outside the model's folder")
        try:
            require_regular_file(location, "external weights")
        except ModelLoadError as exc:
            raise ModelLoadError(f"{path}: missing or unreadable external weights ({exc})") from None
        size = os.path.getsize(location)
        offset = int(info.offset or 0)
        length = int(info.length) if info.length else size - offset
        if offset < 0 or length < 0 or offset + length > size:
            raise ModelLoadError(f"{path}: external weights of {clean_text(tensor.name)!r} lie outside {info.location}")
        total += length
    require(f"{path}: reading the external weights", total, current())
