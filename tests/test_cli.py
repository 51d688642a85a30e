"""The CLI shell: one-line errors with exit code 2, and no torch/megatron import on login-node paths."""

from __future__ import annotations

import subprocess
import sys

import pytest

from cptkit.cli import main
from cptkit.errors import UserError


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cptkit.cli", *args], capture_output=True, text=True, timeout=120)


def test_help_lists_stages_and_exits_0():
    r = run("--help")
    assert r.returncode == 0, r.stderr
    assert "cptkit" in r.stdout


def test_unknown_subcommand_is_one_line_exit_2():
    r = run("no-such-stage")
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "Traceback" not in r.stderr


def test_user_error_one_line_names_file_and_field():
    e = UserError("must be\npositive", file="data_mix/x.yaml", field="sources[0].tokens")
    assert e.one_line() == "data_mix/x.yaml: sources[0].tokens: must be positive"


@pytest.mark.parametrize("argv", [["--help"], ["mix", "--help"], ["launch", "--help"], ["train", "schema"]])
def test_login_node_paths_import_no_torch(argv):
    """`cptkit --help`, `mix` and `launch` must not import torch or megatron-core (login nodes render jobs instantly)."""
    code = (
        "import sys\n"
        "from cptkit.cli import main\n"
        f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
        "bad = sorted(m for m in ('torch', 'megatron', 'transformers') if m in sys.modules)\n"
        "assert not bad, bad\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


def test_main_returns_2_on_user_error(monkeypatch, capsys):
    import argparse

    def register(sub):
        p = sub.add_parser("boom")

        def fail(args: argparse.Namespace) -> int:
            raise UserError("bad value", file="f.yaml", field="x")

        p.set_defaults(func=fail)

    import cptkit.cli as cli

    real = cli.build_parser

    def patched():
        parser = real()
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        register(sub)
        return parser

    monkeypatch.setattr(cli, "build_parser", patched)
    assert main(["boom"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "cptkit boom: error: f.yaml: x: bad value"
