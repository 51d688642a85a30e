"""The model card's data section: the run's mixture as `cptkit mix show` summarizes it, checked against the
fingerprint the checkpoint recorded, and the tokenization each prefix's `.manifest.json` records. Torch-free.

The mixture is read from the file the checkpoint names (`cptkit_state.json` → `mixture.file`, as the trainer resolved
it; relative paths from the current directory, as at training). When every prefix is on disk the blend is resolved
again and its fingerprint must equal the recorded one, else the section is left out: an edited mixture file would
describe data this checkpoint never saw. When prefixes are missing (released on a machine without the data) the
section is shown with a note that it could not be checked.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cptkit.errors import UserError


def _manifest(prefix_path: str) -> dict | None:
    try:
        doc = json.loads(Path(f"{prefix_path}.manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def tokenization(mixture, plans) -> list[dict[str, Any]]:
    """Per distinct setting: which sources, how documents became tokens, and whether manifests recorded it."""
    from cptkit.mix.settings import _recorded, effective

    rows: dict[tuple, dict[str, Any]] = {}
    for sp in plans:
        declared = effective(mixture, sp.source)
        for p in sp.prefixes:
            doc = _manifest(p.path)
            recorded = _recorded(doc) if doc else None
            tok = (doc or {}).get("tokenizer") or {}
            if recorded is not None:
                how, origin = recorded.describe(), "recorded by cptkit tokenize (.manifest.json)"
                tokenizer = f"{tok.get('spec') or tok.get('file')} ({tok.get('vocab_size'):,} ids)"
            elif p.summary is not None:
                how, origin = declared.describe(), "no manifest (made by Megatron-LM's preprocess_data.py): as declared"
                tokenizer = mixture.tokenizer
            else:
                how, origin = declared.describe(), "prefix not on this machine: as declared"
                tokenizer = mixture.tokenizer
            key = (how, origin, tokenizer)
            row = rows.setdefault(key, {"how": how, "origin": origin, "tokenizer": tokenizer, "sources": []})
            if sp.source.name not in row["sources"]:
                row["sources"].append(sp.source.name)
    return list(rows.values())


def data_section(state: dict[str, Any]) -> tuple[dict[str, Any] | None, list[str]]:
    """(section, notes). The section is `mix show`'s summary plus the tokenization rows; None when it cannot be
    stated truthfully (the notes say why)."""
    from cptkit.mix.report import summarize
    from cptkit.mix.resolve import plan, resolve
    from cptkit.mix.schema import load_mixture

    recorded = state.get("mixture") or {}
    file = recorded.get("file")
    if not file:
        return None, ["The data mixture is not described: this checkpoint does not record its mixture file."]
    try:
        mixture = load_mixture(file)
    except UserError as e:
        return None, [f"The data mixture is not described: its file could not be read ({e.one_line()})."]
    if recorded.get("name") and recorded["name"] != mixture.name:
        return None, [
            f"The data mixture is not described: {file} now names mixture {mixture.name!r}, the checkpoint was "
            f"trained on {recorded['name']!r}."
        ]
    plans = plan(mixture)
    summary = summarize(mixture, plans)
    notes = []
    if all(p.summary is not None for sp in plans for p in sp.prefixes):
        try:
            fingerprint = resolve(mixture).fingerprint
        except UserError as e:
            fingerprint, notes = None, [f"The mixture could not be resolved to check it ({e.one_line()})."]
        if fingerprint and recorded.get("fingerprint") and fingerprint != recorded["fingerprint"]:
            return None, [
                f"The data mixture is not described: {file} or its prefixes changed since this checkpoint was "
                "trained (the blend's fingerprint differs from the one in cptkit_state.json)."
            ]
        if fingerprint and recorded.get("fingerprint"):
            notes.append("Mixture checked against the fingerprint recorded in the checkpoint.")
    else:
        notes.append(
            "Some prefixes are not on the machine that wrote this card: targets and shares are the mixture file's, "
            "not checked against the fingerprint recorded in the checkpoint; epochs are shown where known."
        )
    summary["tokenization_rows"] = tokenization(mixture, plans)
    summary["fim_sources"] = [s["name"] for s in summary["sources"] if s.get("fim")]
    return summary, notes
