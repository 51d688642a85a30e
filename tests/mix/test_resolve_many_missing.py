"""`mix resolve` on a mixture of 210 untokenized prefixes: one short line (how many, the first few, where the full
list is), and the full list in a file — not a 64,000-character line (issue #13 point 6)."""

from __future__ import annotations

from .conftest import run_cli, write_yaml

N = 210


def _mixture(tmp_path):
    datasets = "\n".join(f"      - {{prefix: '${{DATA_ROOT}}/cc/dump_{i:03d}_text_document'}}" for i in range(N))
    text = f"name: many\ntokenizer: llama3\nsources:\n  - name: cc\n    tokens: 1B\n    datasets:\n{datasets}\n"
    return write_yaml(tmp_path / "many.yaml", text)


def test_resolve_counts_names_five_and_writes_the_full_list(tmp_path, data_root):
    path, out = _mixture(tmp_path), tmp_path / "out"
    r = run_cli("mix", "resolve", str(path), "-o", str(out))
    assert r.returncode == 2 and len(r.stderr.splitlines()) == 1, r.stderr
    line = r.stderr
    listing = out / "many.unusable-prefixes.txt"
    assert f"{N} of {N} prefixes are not usable" in line and f"all {N} listed in {listing}" in line
    assert "dump_004_text_document" in line and "dump_005_text_document" not in line  # the first five only
    assert len(line) < 3000, len(line)  # five long pytest paths; 210 made 64,000 characters
    rows = listing.read_text().splitlines()
    assert len(rows) == N and rows[0].startswith("sources[0].datasets[0].prefix\t")
    assert rows[-1].split("\t")[1].endswith(f"dump_{N - 1:03d}_text_document")


def test_dry_run_writes_nothing_and_says_how_to_get_the_list(tmp_path, data_root):
    path, out = _mixture(tmp_path), tmp_path / "out"
    r = run_cli("mix", "resolve", str(path), "-o", str(out), "--dry-run")
    assert r.returncode == 2 and f"and {N - 5} more (`cptkit mix resolve {path}` lists them all" in r.stderr
    assert not out.exists()
