"""The `whisper-eas` command line: transcribe, batch, eval, search, bench, profile, serve.

This is the top of the layers: nothing in the package imports it. Each command is one module
here (its parser and what it runs); the flag groups they share are declared once in flags.py.

Errors: a `UserError` (something the user must fix: a file, a model, a flag) is one line on
stderr and exit status 2; argparse's usage errors exit 2 as well. Anything else is a bug: one
line, exit status 1, and the traceback with --verbose or WHISPER_EAS_DEBUG=1. With several
inputs, transcribe writes the good ones and lists the bad ones at the end (exit 1)."""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
import traceback
from typing import List, Optional

from .. import __version__
from ..errors import UserError
from . import batch, bench, eval, profile, search, serve, transcribe

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
COMMANDS = (transcribe, batch, eval, search, bench, profile, serve)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="whisper-eas", description="Fast offline Whisper transcription "
                                     "with early attentive sparsification of the encoder.")
    parser.add_argument("--version", action="version", version=f"whisper-eas {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


class _StderrHandler(logging.Handler):
    """The library's warnings (e.g. a profile skipped) as 'whisper-eas: warning: ...' lines on
    whatever sys.stderr is at the time."""

    def emit(self, record: logging.LogRecord) -> None:
        level = "" if record.levelno < logging.WARNING else f"{record.levelname.lower()}: "
        print(f"whisper-eas: {level}{self.format(record)}", file=sys.stderr)


def _configure_logging() -> None:
    logger = logging.getLogger("whisper_eas")
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        logger.addHandler(_StderrHandler())
        logger.propagate = False
    logger.setLevel(logging.WARNING)


# flags whose value may start with '-' (`--eas -1:0`, `--suppress-tokens -1,50362`): argparse takes
# such a value for a flag unless it is a plain negative number, so it is joined to its flag first
DASH_VALUE_FLAGS = ("--eas", "--suppress-tokens", "--suppress_tokens")


def join_dash_values(argv: List[str]) -> List[str]:
    """['--eas', '-1:0'] -> ['--eas=-1:0'], for the flags in DASH_VALUE_FLAGS and a value that
    starts with '-' and a digit or a dot (no flag does)."""
    out: List[str] = []
    for arg in argv:
        if out and out[-1] in DASH_VALUE_FLAGS and re.match(r"-[0-9.]", arg):
            out[-1] = f"{out[-1]}={arg}"
        else:
            out.append(arg)
    return out


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    argv = join_dash_values(sys.argv[1:] if argv is None else list(argv))
    args = parser.parse_args(argv)  # usage errors: argparse prints them and exits with 2
    if not getattr(args, "handler", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    verbose = bool(getattr(args, "verbose", False))
    _configure_logging()
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        print("whisper-eas: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_OK
    except UserError as e:  # the user's to fix: one line, exit 2
        print(f"whisper-eas: error: {_one_line(str(e) or type(e).__name__)}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as e:  # a bug: one line, exit 1; the traceback with --verbose or WHISPER_EAS_DEBUG=1
        if verbose or os.environ.get("WHISPER_EAS_DEBUG"):
            traceback.print_exc()
        print(f"whisper-eas: error: {_one_line(f'{type(e).__name__}: {e}')}", file=sys.stderr)
        return EXIT_FAILED


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


if __name__ == "__main__":
    sys.exit(main())
