"""The `cptkit` command: one entry point, one subcommand per stage.

Each stage lives in `cptkit.<stage>.cli` and exposes `register(subparsers)`, which adds its subcommand(s) and sets
`func` on them. Stage CLI modules import only argparse-level code at import time; torch and megatron-core are
imported inside the handlers, so `cptkit --help`, `cptkit mix` and `cptkit launch` work on a login node instantly.

User mistakes raise `cptkit.errors.UserError`: printed as one line, exit code 2, no traceback. So do OS errors
(a read-only or full disk, a path through a file, a missing directory): one line naming the path, exit code 2.
A stage whose module fails to import (a broken install, a missing dependency) stays listed as UNAVAILABLE in
`--help`; running it prints the import error as one line (exit 2) instead of argparse's "invalid choice".
"""

from __future__ import annotations

import argparse
import importlib
import sys

from cptkit import __version__
from cptkit.errors import UserError

# Order is the order shown in `cptkit --help`: the workflow, stage by stage.
STAGE_MODULES = (
    "cptkit.curate.cli",  # curate (SwallowCode / SwallowMath data pipelines)
    "cptkit.mix.cli",  # mix show | resolve | check
    "cptkit.tokenize.cli",  # tokenize
    "cptkit.convert.cli",  # convert hf-to-mcore | mcore-to-hf | verify
    "cptkit.merge.cli",  # merge (task arithmetic / chat vector)
    "cptkit.train.cli",  # train, plan
    "cptkit.launch.cli",  # launch, status
    "cptkit.eval.cli",  # eval, report
    "cptkit.release.cli",  # release (HF folders + model card, Hub upload)
    "cptkit.selftest.cli",  # selftest [network]
)


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (exit 2) instead of the usage block."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="cptkit",
        description="Continual pre-training on megatron-core: mixture -> tokenize -> train -> convert, on any cluster.",
    )
    parser.add_argument("--version", action="version", version=f"cptkit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="<stage>", parser_class=OneLineParser)
    for name in STAGE_MODULES:
        try:
            module = importlib.import_module(name)
        except Exception as e:  # a broken install or a missing dependency: say so, keep the other stages usable
            _register_broken(sub, name, e)
            continue
        module.register(sub)
    return parser


def _register_broken(sub: argparse._SubParsersAction, module: str, error: Exception) -> None:
    """A stage whose module cannot be imported stays listed; running it is a one-line error naming the cause.

    Silently dropping it would turn "your install is broken" into "invalid choice: 'train'"."""
    stage = module.split(".")[1]
    why = f"cannot import {module}: {type(error).__name__}: {' '.join(str(error).split())}"
    p = sub.add_parser(stage, help=f"UNAVAILABLE ({why})", add_help=False)
    p.add_argument("rest", nargs=argparse.REMAINDER)

    def fail(args: argparse.Namespace) -> int:
        raise UserError(f"{why} (reinstall cptkit, or install what it needs: pip install -e .)")

    p.set_defaults(func=fail)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 0 if args.command is None else 2
    try:
        return int(args.func(args) or 0)
    except UserError as e:
        print(f"cptkit {args.command}: error: {e.one_line()}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"cptkit {args.command}: error: {os_error_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"cptkit {args.command}: interrupted", file=sys.stderr)
        return 130


def os_error_line(e: OSError) -> str:
    """`PATH: what went wrong` from an OSError (its strerror, or its text when it carries no errno)."""
    what = e.strerror or str(e) or type(e).__name__
    paths = [str(p) for p in (e.filename, e.filename2) if p is not None]
    return " ".join(f"{': '.join(paths) + ': ' if paths else ''}{what}".split())


if __name__ == "__main__":
    sys.exit(main())
