"""The `cptkit` command: one entry point, one subcommand per stage.

Each stage lives in `cptkit.<stage>.cli` and exposes `register(subparsers)`, which adds its subcommand(s) and sets
`func` on them. Stage CLI modules import only argparse-level code at import time; torch and megatron-core are
imported inside the handlers, so `cptkit --help`, `cptkit mix` and `cptkit launch` work on a login node instantly.

User mistakes raise `cptkit.errors.UserError`: printed as one line, exit code 2, no traceback.
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
    "cptkit.train.cli",  # train, plan
    "cptkit.launch.cli",  # launch, status
    "cptkit.eval.cli",  # eval, report
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
        except ModuleNotFoundError as e:  # a stage not built yet; anything else is a real bug
            if e.name is not None and name.startswith(e.name):
                continue
            raise
        module.register(sub)
    return parser


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
    except KeyboardInterrupt:
        print(f"cptkit {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
