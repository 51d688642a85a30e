"""Mixture schema: fields, units, ${VAR} expansion, and one-line errors naming file and field."""

from __future__ import annotations

import pytest

from cptkit.cli import main
from cptkit.errors import UserError
from cptkit.mix import load_mixture
from cptkit.mix.validate import target_tokens

from .conftest import write_yaml

GOOD = """
name: t
tokenizer: ${TOK_DIR:-llama3}
total_tokens: 10B
groups:
  code: {percent: 20}
  text: {percent: 80}
sources:
  - name: code
    group: code
    tokens: 2B
    input: {paths: ["${DATA_ROOT}/raw/code/*.jsonl.zst"], format: jsonl.zst, text_field: content}
    prefix: ${DATA_ROOT}/code_text_document
  - name: ja
    group: text
    share: 50
    max_epochs: 2
    prefix: ${DATA_ROOT}/ja_text_document
  - name: cc
    group: text
    tokens: 3000M
    datasets:
      - {prefix: "${DATA_ROOT}/cc/a_text_document", tokens: 1B}
      - {prefix: "${DATA_ROOT}/cc/b_text_document", tokens: 2B, input: {paths: [b/*.parquet], format: parquet}}
"""


def test_good_mixture_loads_with_units_shares_and_env(tmp_path, data_root):
    m = load_mixture(write_yaml(tmp_path / "m.yaml", GOOD))
    assert m.tokenizer == "llama3"
    assert m.total_tokens == 10_000_000_000
    code, ja, cc = m.sources
    assert code.tokens == 2_000_000_000 and code.input.format.value == "jsonl.zst"
    assert code.input.paths == [f"{data_root}/raw/code/*.jsonl.zst"]
    assert code.input.text_field == "content"
    assert code.prefix == f"{data_root}/code_text_document"
    assert target_tokens(m, ja) == 5_000_000_000
    assert m.source_max_epochs(ja) == 2 and m.source_max_epochs(code) == 4
    assert [d.tokens for d in cc.datasets] == [1_000_000_000, 2_000_000_000]
    assert cc.datasets[1].input.text_field == "text"


def test_multi_prefix_source_without_target_sums_its_datasets(tmp_path, data_root):
    text = GOOD.replace("    tokens: 3000M\n", "")
    m = load_mixture(write_yaml(tmp_path / "m.yaml", text))
    assert target_tokens(m, m.sources[2]) == 3_000_000_000


def _error(tmp_path, text: str) -> str:
    """The error as the user sees it: `cptkit mix show` exits 2 with one line on stderr naming file and field."""
    path = write_yaml(tmp_path / "bad.yaml", text)
    with pytest.raises(UserError) as e:
        load_mixture(path)
    line = e.value.one_line()
    assert "\n" not in line and line.startswith(str(path) + ": ")
    for command in ("show", "resolve"):
        code, err = _cli(["mix", command, str(path)])
        assert code == 2 and err == f"cptkit mix: error: {line}\n"
    return line


def _cli(argv: list[str]) -> tuple[int, str]:
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(argv)
    return code, err.getvalue()


@pytest.mark.parametrize(
    ("old", "new", "field", "words"),
    [
        ("    tokens: 2B\n", "    tokenz: 2B\n", "sources[0].tokenz", "did you mean 'tokens'"),
        ("text_field: content", "text_feild: content", "sources[0].input.text_feild", "did you mean 'text_field'"),
        ("  code: {percent: 20}", "  code: {percnt: 20}", "groups.code.percnt", "did you mean 'percent'"),
        ("    tokens: 2B\n", "    tokens: 2 bananas\n", "sources[0].tokens", "cannot parse '2 bananas'"),
        ("tokens: 1B}", "tokens: 1X}", "sources[2].datasets[0].tokens", "cannot parse '1X'"),
        ("format: parquet", "format: csv", "sources[2].datasets[1].input.format", "jsonl"),
        ("  - name: ja\n", "  - name: code\n", "sources[1].name", "duplicate source name 'code'"),
        ("    share: 50\n", "    share: 95\n", "sources", "over 100%"),
        ("  code: {percent: 20}", "  code: {percent: 25}", "groups", "add up to 105%"),
        ("    group: code\n", "    group: cod\n", "sources[0].group", "did you mean 'code'"),
        ("    share: 50\n", "    share: 50\n    tokens: 5B\n", "sources[1].share", "not both"),
        (
            "tokenizer: ${TOK_DIR:-llama3}",
            "tokenizer: ${CPTKIT_SURELY_UNSET_VAR}",
            "tokenizer",
            "CPTKIT_SURELY_UNSET_VAR",
        ),
        ("    tokens: 2B\n", "    tokens: 0\n", "sources[0].tokens", "positive"),
        ("tokens: 1B}", "tokens: 0}", "sources[2].datasets[0].tokens", "positive"),
        ("total_tokens: 10B", "total_tokens: 0", "total_tokens", "positive"),
    ],
)
def test_bad_input_names_file_and_field(tmp_path, data_root, old, new, field, words):
    assert old in GOOD
    line = _error(tmp_path, GOOD.replace(old, new, 1))
    assert f": {field}: " in line, line
    assert words in line, line


def test_group_disagreeing_with_its_percent_is_rejected_but_small_drift_is_not(tmp_path, data_root):
    fixed = GOOD.replace("share: 50", "tokens: 5B")
    # code 2.04B of 10.04B = 20.3%: within the default 0.5-point tolerance.
    load_mixture(
        write_yaml(tmp_path / "ok.yaml", fixed.replace("tokens: 2B", "tokens: 2.04B").replace("10B", "10.04B"))
    )
    # code 2.5B of 10.5B = 23.8%: rejected, naming the group.
    line = _error(tmp_path, fixed.replace("tokens: 2B", "tokens: 2.5B").replace("10B", "10.5B"))
    assert ": groups.code.percent: " in line and "23.81%" in line and "declares 20%" in line


def test_unset_variable_in_a_prefix_names_the_field(tmp_path, monkeypatch):
    monkeypatch.delenv("DATA_ROOT", raising=False)
    line = _error(tmp_path, GOOD.replace("tokenizer: ${TOK_DIR:-llama3}", "tokenizer: llama3"))
    assert ": sources[0].input.paths[0]: " in line and "${DATA_ROOT}" in line


def test_missing_required_fields_and_target(tmp_path, data_root):
    assert ": tokenizer: required field is missing" in _error(
        tmp_path, GOOD.replace("tokenizer: ${TOK_DIR:-llama3}\n", "")
    )
    line = _error(tmp_path, GOOD.replace("    tokens: 2B\n", "", 1))
    assert ": sources[0]: no target" in line
    line = _error(tmp_path, GOOD.replace('{prefix: "${DATA_ROOT}/cc/a_text_document", tokens: 1B}', "{prefix: x}"))
    assert ": sources[2].datasets[0]: give `tokens` for every dataset" in line


def test_share_needs_a_budget_and_yaml_errors_are_one_line(tmp_path, data_root):
    assert ": sources[1].share: " in _error(tmp_path, GOOD.replace("total_tokens: 10B\n", ""))
    assert "invalid YAML" in _error(tmp_path, "name: [unclosed\n")
    line = _error(tmp_path, GOOD.replace("    tokens: 2B\n", "    tokens: 2B\n    tokens: 3B\n"))
    assert "line 11: invalid YAML: duplicate key 'tokens'" in line
    with pytest.raises(UserError, match="mixture file not found"):
        load_mixture(tmp_path / "nope.yaml")
