"""docs/mixture.md is generated from the schema (`cptkit mix schema`), so it cannot drift from the code."""

from __future__ import annotations

from cptkit.mix import schema
from cptkit.mix.docgen import MODELS, markdown

from .conftest import REPO, run_cli


def test_docs_equal_the_generated_reference():
    assert (REPO / "docs" / "mixture.md").read_text(encoding="utf-8") == markdown(), (
        "docs/mixture.md is stale: run `cptkit mix schema -o docs/mixture.md`"
    )


def test_every_field_is_documented_and_a_changed_description_changes_the_docs(monkeypatch):
    text = markdown()
    for model in MODELS:
        assert f"### {model.__name__}" in text
        for name, info in model.model_fields.items():
            assert info.description, f"{model.__name__}.{name} has no description"
            assert f"| `{name}` |" in text
    assert "| `tokens` | tokens |" in text and "| `percent` | percent | **required** |" in text
    # The comparison above is not blind: editing a description changes the generated text.
    monkeypatch.setattr(schema.Group.model_fields["percent"], "description", "changed")
    assert markdown() != text


def test_cli_schema_prints_the_reference(tmp_path):
    r = run_cli("mix", "schema")
    assert r.returncode == 0, r.stderr
    assert r.stdout == markdown()
    out = tmp_path / "m.md"
    assert run_cli("mix", "schema", "-o", str(out), "--dry-run").returncode == 0 and not out.exists()
    assert run_cli("mix", "schema", "-o", str(out)).returncode == 0 and out.read_text() == markdown()
