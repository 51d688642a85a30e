from __future__ import annotations

import os

import pytest

from cptkit.errors import UserError
from cptkit.util.atomic import atomic_open, write_json
from cptkit.util.envvars import expand
from cptkit.util.units import format_tokens, parse_tokens


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("8B", 8_000_000_000),
        ("0.84B", 840_000_000),
        ("850M", 850_000_000),
        ("12k", 12_000),
        (1000, 1000),
        ("1_000_000", 1_000_000),
        ("2.5e9", 2_500_000_000),
        ("50b", 50_000_000_000),
    ],
)
def test_parse_tokens(text, tokens):
    assert parse_tokens(text) == tokens


@pytest.mark.parametrize("bad", ["8X", "B", "-1B", "", "1.2.3M", True])
def test_parse_tokens_rejects(bad):
    with pytest.raises(ValueError):
        parse_tokens(bad)


def test_format_tokens():
    assert format_tokens(50_000_000_000) == "50.00B"
    assert format_tokens(846_000_000) == "846.0M"


def test_expand_env():
    env = {"DATA_ROOT": "/data"}
    assert expand("${DATA_ROOT}/ja", env=env) == "/data/ja"
    assert expand("${NOPE:-/tmp}/x", env=env) == "/tmp/x"
    assert expand("cost $$5", env=env) == "cost $5"
    with pytest.raises(UserError, match=r"f.yaml: sources\[0\]: environment variable \$\{NOPE\} is not set"):
        expand("${NOPE}/x", file="f.yaml", field="sources[0]", env=env)


def test_atomic_open_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.json"
    write_json(target, {"a": 1})
    with pytest.raises(RuntimeError), atomic_open(target) as f:
        f.write("half")
        raise RuntimeError("crash mid-write")
    assert target.read_text() == '{\n  "a": 1\n}\n'  # the old file survives whole
    assert sorted(os.listdir(tmp_path)) == ["out.json"]  # no temporary left behind


def test_atomic_files_get_umask_mode_not_0600(tmp_path, monkeypatch):
    from cptkit.util import atomic

    for umask, mode in ((0o022, 0o644), (0o027, 0o640)):
        old = os.umask(umask)
        monkeypatch.setattr(atomic, "_UMASK", None)  # read once per process, at import: as if imported now
        try:
            write_json(tmp_path / f"m{umask:o}.json", {})
        finally:
            os.umask(old)
        assert (tmp_path / f"m{umask:o}.json").stat().st_mode & 0o777 == mode
