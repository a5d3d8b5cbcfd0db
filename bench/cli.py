"""The `bench` command line.

Each subcommand lives in its own module under ``bench/commands/`` and defines
``register(subparsers)``, which adds its parser and sets ``func`` (taking the parsed args and
returning an exit code). Errors meant for users (``BenchError``) print one line and exit with
their code (2 for usage errors), never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys

from bench.errors import BenchError, UsageError


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
    return parser


def _version() -> str:
    from bench import __version__

    return f"bench {__version__}"


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        args = build_parser().parse_args(argv)
        code = args.func(args)
    except BenchError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("bench: interrupted; results written so far are kept, rerun to resume",
              file=sys.stderr)
        return 130
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
