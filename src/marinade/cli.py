"""Command line: ``python -m marinade <command> ...``.

Commands register themselves in ``COMMANDS`` with ``@command``; each gets an
argparse sub-parser to configure and returns the process exit code.

``inspect FILE [--json]`` reads a payload without running it (see
``marinade.inspect``) and exits 0 when nothing dangerous was found, 1 when
something was flagged (or a signature check failed), 2 when the input is
not a readable pickle.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

EXIT_CLEAN = 0
EXIT_FLAGGED = 1
EXIT_UNREADABLE = 2

# name -> (help, configure(parser), run(args) -> exit code)
COMMANDS: dict[str, tuple[str, Callable, Callable]] = {}


def command(name: str, help: str, configure: Callable[[argparse.ArgumentParser], None]):
    """Register ``run(args) -> int`` as the subcommand ``name``."""
    def register(run: Callable[[argparse.Namespace], int]):
        COMMANDS[name] = (help, configure, run)
        return run
    return register


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m marinade",
                                     description="marinade: pickle Python code by value.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (help_text, configure, run) in COMMANDS.items():
        sub = commands.add_parser(name, help=help_text, description=help_text)
        configure(sub)
        sub.set_defaults(run=run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


# -- inspect ------------------------------------------------------------------------------


def _configure_inspect(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE", help="payload to inspect ('-' for stdin)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--key-file", metavar="PATH",
                        help="verify the payload's signature with the key in this file")


def _fail(args, message: str, code: int, offset: int | None = None) -> int:
    if args.json:
        print(json.dumps({"error": message, "offset": offset, "exit_code": code}))
    else:
        print(f"marinade inspect: {message}", file=sys.stderr)
    return code


@command("inspect", "report what a payload would import, call and run, without loading it",
         _configure_inspect)
def run_inspect(args: argparse.Namespace) -> int:
    from ._errors import SignatureError, UnpicklingError
    from .safety.inspect import inspect

    key = None
    if args.key_file:
        try:
            with open(args.key_file, "rb") as f:
                raw = f.read()
        except OSError as exc:
            return _fail(args, f"cannot read key file {args.key_file}: {exc.strerror or exc}",
                         EXIT_UNREADABLE)
        if not raw:
            return _fail(args, f"key file {args.key_file} is empty", EXIT_UNREADABLE)
        # The bytes as they are (a binary key may end in a newline byte),
        # then without the line end a text editor leaves.
        key = [raw] if raw.strip() in (raw, b"") else [raw, raw.strip()]
    try:
        if args.file == "-":
            report = inspect(sys.stdin.buffer, key=key)
        else:
            report = inspect(Path(args.file), key=key)
    except SignatureError as exc:
        return _fail(args, f"signature check failed: {exc}", EXIT_FLAGGED, exc.offset)
    except UnpicklingError as exc:
        return _fail(args, str(exc), EXIT_UNREADABLE, exc.offset)
    except OSError as exc:
        return _fail(args, f"cannot read {args.file}: {exc.strerror or exc}", EXIT_UNREADABLE)
    code = EXIT_FLAGGED if report.dangerous else EXIT_CLEAN
    if args.json:
        print(json.dumps({**report.as_dict(), "exit_code": code}, indent=2, default=str))
    else:
        print(report)
    return code
