"""Exit codes that never lie, for every command.

0 passed, 1 a gate failed, 2 anything else that ended the run (bad input, internal error, a
closed or broken stdout/stderr, a dead worker process), 130 Ctrl-C, 143 SIGTERM. Each ends with
at most one line on stderr and never a traceback. click's own handlers would turn Ctrl-C and a
broken pipe into exit 1, so :func:`guarded` catches them inside the command.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import signal
import sys
import warnings

EXIT_ERROR = 2
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143


class Terminated(BaseException):
    """SIGTERM, raised in the main thread so that ``finally`` blocks (temporary files) still run."""


def _on_sigterm(signum, frame):
    raise Terminated()


class _ClosedStream:
    """Stands in for a stream that was closed before Python started (``>&-``): writing to it fails."""

    def write(self, text):
        raise BrokenPipeError(errno.EPIPE, "stream is closed")

    def flush(self):
        pass

    def isatty(self):
        return False

    def fileno(self):
        raise OSError(errno.EBADF, "stream is closed")


def prepare_process() -> None:
    """At the real entry point: closed streams, SIGTERM, and library chatter (warnings, log records)."""
    if sys.stdout is None:
        sys.stdout = _ClosedStream()
    if sys.stderr is None:
        sys.stderr = _ClosedStream()
    try:
        signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # not the main thread
        pass
    quiet_libraries()


def quiet_libraries() -> None:
    """torch, numpy and onnx warnings and log records never reach the user's stderr in normal runs."""
    if not sys.warnoptions and not os.environ.get("PYTHONWARNINGS"):
        warnings.simplefilter("ignore")
    if not os.environ.get("LIPAUDIT_DEBUG"):
        logging.disable(logging.CRITICAL)
        _quiet_onnxruntime()


def _quiet_onnxruntime() -> None:
    """onnxruntime logs from C++ straight to fd 2; lower its default logger to fatal once it is imported
    (importing it here would slow every run that never needs it)."""
    if "onnxruntime" in sys.modules:
        _set_ort_severity(sys.modules["onnxruntime"])
        return
    if any(isinstance(f, _OnnxruntimeHook) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _OnnxruntimeHook())


def _set_ort_severity(module) -> None:
    try:
        module.set_default_logger_severity(4)
    except Exception:
        pass


class _OnnxruntimeHook:
    """A meta-path finder that only watches for ``import onnxruntime`` and then steps aside."""

    def find_spec(self, name, path=None, target=None):
        if name != "onnxruntime":
            return None
        import importlib.util

        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        run = spec.loader.exec_module

        def exec_module(module):
            run(module)
            _set_ort_severity(module)

        spec.loader.exec_module = exec_module
        return spec


def worker_init() -> None:
    """In ``--jobs`` worker processes: Ctrl-C is the parent's to handle; stay quiet."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    quiet_libraries()


def _is_broken_stream(exc: BaseException) -> bool:
    if isinstance(exc, BrokenPipeError):
        return True
    if isinstance(exc, OSError) and exc.errno in (errno.EPIPE, errno.EBADF, errno.ENOSPC, errno.EIO):
        return True
    return isinstance(exc, ValueError) and "closed file" in str(exc)


def say(line: str) -> None:
    """One line on stderr; silently nothing when stderr itself is gone."""
    from lipaudit.safe_io import clean_text

    try:
        sys.stderr.write(clean_text(line) + "\n")
        sys.stderr.flush()
    except Exception:
        _silence(sys.stderr)


def _silence(stream) -> None:
    """Point a broken stream's descriptor at /dev/null, so the interpreter's final flush cannot fail."""
    try:
        fd = stream.fileno()
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, fd)
        os.close(null)
    except Exception:
        pass


def guarded(command):
    """Wrap a CLI command so every way out is one of the documented exit codes."""
    import typer

    @functools.wraps(command)
    def run(*args, **kwargs):
        from lipaudit.errors import LipauditError, first_line

        try:
            result = command(*args, **kwargs)
            sys.stdout.flush()
            return result
        except typer.Exit as done:
            try:
                sys.stdout.flush()
            except Exception as exc:
                if _is_broken_stream(exc):
                    _silence(sys.stdout)
                    raise typer.Exit(EXIT_ERROR) from None
                raise
            raise done
        except KeyboardInterrupt:
            say("interrupted")
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except Terminated:
            say("terminated")
            raise typer.Exit(EXIT_TERMINATED) from None
        except LipauditError as exc:
            say(f"error: {first_line(exc)}")
            raise typer.Exit(EXIT_ERROR) from None
        except Exception as exc:
            if _is_broken_stream(exc):
                _silence(sys.stdout)
                say("error: cannot write the output (stdout closed or broken)")
                raise typer.Exit(EXIT_ERROR) from None
            say(f"error: internal error: {type(exc).__name__}: {first_line(exc)}")
            raise typer.Exit(EXIT_ERROR) from None

    return run
