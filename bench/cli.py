"""The `bench` command line.

Each subcommand lives in its own module under ``bench/commands/`` and defines
``register(subparsers)``, which adds its parser and sets ``func`` (taking the parsed args and
returning an exit code). Errors meant for users (``BenchError``) print one line and exit with
their code (2 for usage errors), never a traceback. Anything unexpected prints one line too,
``bench: internal error: ...``, with the path of a file holding the full traceback (exit 1).

Keep this module and the commands' ``register`` functions free of heavy imports (torch,
open_clip, matplotlib): `bench --help`, `ls`, `report` and `status` must start in well
under a second (tests/test_cli_startup.py).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import pkgutil
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

from bench.base.errors import BenchError, Terminated, UsageError


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse's own usage errors: same format, exit 2
        self.print_usage(sys.stderr)
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    import bench.commands as commands

    parser = _Parser(prog="bench", description="Few-shot adaptation benchmark for CLIP models.")
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda i: i.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"bench.commands.{info.name}").register(sub)
    for name in INCLUDE_COMMANDS:
        if name in sub.choices:
            add_include_argument(sub.choices[name])
    return parser


# Commands where method and dataset names matter: they take --include (bench.base.plugins).
INCLUDE_COMMANDS = ("run", "ls", "report", "status", "plot")


def add_include_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--include", action="append", default=None, metavar="PATH",
                        help="a plugin: a .py file or a folder of modules and YAML method "
                             "configs registering methods or datasets; repeatable (also "
                             "BENCH_INCLUDE; see docs/extending.md)")


def _version() -> str:
    from bench import __version__

    return f"bench {__version__}"


# --- warnings: one line each, once ----------------------------------------------------------

_warned: set[str] = set()


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """``bench: warning: <message>``, once per distinct message; no source line."""
    text = " ".join(str(message).split())
    if text in _warned:
        return
    _warned.add(text)
    try:
        print(f"bench: warning: {text}", file=file or sys.stderr)
    except (OSError, ValueError):  # stderr closed: a warning is not worth a crash
        pass


def install_warning_format():
    """Route warnings through ``_show_warning``; returns the previous ``showwarning``."""
    previous, warnings.showwarning = warnings.showwarning, _show_warning
    return previous


class LogWarnings(logging.Handler):
    """Log records of WARNING and above as bench's one-line warnings, instead of logging's
    ``WARNING:root:<message>`` (open_clip logs through the root logger, and a first
    ``logging.warning()`` call installs that format when the root logger has no handler)."""

    def __init__(self):
        super().__init__(logging.WARNING)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed log call must not break the command
            text = str(record.msg)
        source = _log_source(record)
        _show_warning(f"{source}: {text}" if source else text, UserWarning, "", 0)


def _log_source(record: logging.LogRecord) -> str:
    """The package that logged ``record`` ("open_clip"), or "" for bench's own loggers."""
    name = record.name
    if name == "root":  # logging.warning(...): the package from the file that called it
        parts = Path(record.pathname).parts
        if "site-packages" in parts and parts.index("site-packages") + 1 < len(parts):
            name = parts[parts.index("site-packages") + 1]
        else:
            return ""
    top = name.split(".")[0]
    return "" if top in ("bench", "methods", "datasets_registry", "results") else top


# --- the last resort ------------------------------------------------------------------------

def _save_traceback(exc: BaseException, argv) -> Path | None:
    """Write the full traceback of ``exc`` to a file; its path, or None if nothing could be
    written anywhere."""
    text = (f"bench {' '.join(map(str, argv))}\n{time.strftime('%Y-%m-%d %H:%M:%S')} "
            f"pid {os.getpid()}\n\n"
            + "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
    for folder in (os.environ.get("BENCH_CRASH_DIR"), tempfile.gettempdir(), os.getcwd()):
        if not folder:
            continue
        try:
            fd, path = tempfile.mkstemp(prefix="bench-crash-", suffix=".txt", dir=folder)
            with os.fdopen(fd, "w") as fh:
                fh.write(text)
            return Path(path)
        except OSError:
            continue
    return None


def _internal_error(exc: BaseException, argv) -> int:
    path = _save_traceback(exc, argv)
    where = (f"full traceback saved to {path}" if path is not None
             else "the traceback could not be saved anywhere")
    message = " ".join(str(exc).split()) or "(no message)"
    print(f"bench: internal error: {type(exc).__name__}: {message}; {where}", file=sys.stderr)
    return 1


def _os_error(exc: OSError, argv) -> int:
    """Full disk and permission problems are the environment's, not bugs: one clear line."""
    from results.atomic import DiskFull, NotWritable, is_disk_full, is_not_writable

    if is_disk_full(exc):
        target = exc.path if isinstance(exc, DiskFull) else Path(exc.filename or ".")
        print(f"bench: error: {DiskFull(target, exc).advice()}", file=sys.stderr)
        return 1
    if isinstance(exc, NotWritable):
        print(f"bench: error: {exc.advice()}", file=sys.stderr)
        return NotWritable.exit_code
    if is_not_writable(exc) and exc.filename:
        print(f"bench: error: permission denied: {exc.filename} ({exc.strerror}): fix its "
              f"permissions, or choose a folder you can write to (--output, --cache-dir or "
              f"--out)", file=sys.stderr)
        return NotWritable.exit_code
    return _internal_error(exc, argv)


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    argv = sys.argv[1:] if argv is None else list(argv)
    _warned.clear()  # once per command (tests call main() many times in one process)
    previous_showwarning = install_warning_format()
    log_handler = LogWarnings()
    logging.getLogger().addHandler(log_handler)
    try:
        return _run(argv)
    finally:
        warnings.showwarning = previous_showwarning
        logging.getLogger().removeHandler(log_handler)


def _run(argv: list[str]) -> int:
    try:
        args = build_parser().parse_args(argv)
        if getattr(args, "include", None):
            from bench.base.plugins import include

            include(args.include)
        code = args.func(args)
    except BenchError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr.close()
        return 0
    except Terminated:
        print("bench: terminated (SIGTERM); results written so far are kept, rerun to resume",
              file=sys.stderr)
        return Terminated.exit_code
    except KeyboardInterrupt:
        print("bench: interrupted; results written so far are kept, rerun to resume",
              file=sys.stderr)
        return 130
    except OSError as exc:
        return _os_error(exc, argv)
    except Exception as exc:  # noqa: BLE001 - the last resort: never a bare traceback
        return _internal_error(exc, argv)
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
