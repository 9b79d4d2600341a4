"""The `autoaug` command line: one sub-command per user job, one module per group of them.

The modules of this package parse arguments and print; the work is done by the layers below
(`autoaug.search`, `autoaug.training`, `autoaug.space`). Each module defines
`add_commands(subparsers)`, which adds its sub-parsers and
sets `func` (a callable taking the parsed `argparse.Namespace` and returning an exit code). The
list below is explicit on purpose: no import-time registries. A user mistake (`AutoaugError`)
is printed as one line and exits with code 2; nothing else is caught.
"""

from __future__ import annotations

import argparse
import os
import select
import sys

from autoaug.cli import compare, data, ensemble, policy, randaugment, search, train
from autoaug.errors import AutoaugError, one_line

# Modules that contribute sub-commands, in the order `--help` lists them.
COMMAND_MODULES = (policy, data, search, compare, train, randaugment, ensemble)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="autoaug",
        description="Learn, export and apply data-augmentation policies.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.add_commands(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a reader that went away shows up here, not at exit
        return code
    except BrokenPipeError:  # `autoaug validate P | head -1`: whoever read stdout stopped reading
        if not _stdout_closed():
            raise  # another pipe (a worker's): a bug, with its traceback
        _silence_stdout()
        print(f"autoaug {args.command}: error: standard output was closed before the command "
              "finished (a broken pipe)", file=sys.stderr)
        return 2
    except AutoaugError as err:
        print(f"autoaug {args.command}: error: {one_line(str(err))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # Ctrl-C: the resumable commands say that nothing finished is lost (issue #22).
        note = getattr(args, "on_interrupt", None)
        print(f"autoaug {args.command}: interrupted" + (f"; {note}" if note else ""), file=sys.stderr)
        return 130


def _stdout_closed() -> bool:
    """Whether stdout is a pipe whose reader has gone (poll reports an error on its write end)."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (OSError, ValueError, AttributeError):  # no descriptor (captured), no poll (Windows)
        return True


def _silence_stdout() -> None:
    """Point stdout at os.devnull, so that Python's flush at exit does not hit the broken pipe
    again (and print a second error)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # stdout without a file descriptor (captured in tests)
        pass


if __name__ == "__main__":
    sys.exit(main())
