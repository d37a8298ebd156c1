"""The ``mulinterp`` command line: thin wrappers that parse, call the library, print, save.

Each subcommand lives in a module of this package with a ``register(subparsers)`` function.
Bad input (``ValueError`` from the library or :class:`~mulinterp.cli.common.CLIError`) is one
line on stderr and exit status 2 — never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from mulinterp import __version__

# one module per group of subcommands; each defines register(subparsers)
COMMAND_MODULES = [
    "mulinterp.cli.core",  # show, models
    "mulinterp.cli.training",  # train, eval, multiply
    "mulinterp.cli.dependencies",  # attribute, dla, patch, probe
    "mulinterp.cli.mechanism",  # heads, dag, geometry, dynamics
    "mulinterp.cli.figures",  # figures
    "mulinterp.cli.claims",  # claims (the README's claims table)
    "mulinterp.cli.importer",  # import (the paper's released checkpoints)
    "mulinterp.cli.campaign",  # campaign status / run / cooldown / promote / readme
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mulinterp",
        description="Reverse-engineer small transformers that learn (or fail to learn) multiplication. "
        "Layers and heads are numbered from 1 as in the paper (--layer 2 --head 3 = blocks.1, head 2).",
    )
    parser.add_argument("--version", action="version", version=f"mulinterp {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except ValueError as e:  # includes CLIError
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a file system refusal the library did not anticipate
        where = f" ({e.filename})" if getattr(e, "filename", None) else ""
        print(f"error: {e.strerror or e}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
