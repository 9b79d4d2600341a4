"""The `autoaug` command line: one sub-command per user job.

Each module that owns a job defines `add_commands(subparsers)`, which adds its sub-parsers and
sets `func` (a callable taking the parsed `argparse.Namespace` and returning an exit code). The
list below is explicit on purpose: no import-time registries. A user mistake (`AutoaugError`)
is printed as one line and exits with code 2; nothing else is caught.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from autoaug.errors import AutoaugError

# Modules that contribute sub-commands, in the order `--help` lists them.
COMMAND_MODULES = (
    "autoaug.policy_cli",
    "autoaug.data",
    "autoaug.search",
    "autoaug.train",
    "autoaug.randaugment",
    "autoaug.ensemble",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="autoaug",
        description="Learn, export and apply data-augmentation policies.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_commands(subparsers)
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
