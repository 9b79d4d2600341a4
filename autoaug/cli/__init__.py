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
import sys

from autoaug.cli import compare, data, ensemble, policy, randaugment, search, train
from autoaug.errors import AutoaugError

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
        return int(args.func(args) or 0)
    except AutoaugError as err:
        print(f"autoaug {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"autoaug {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
