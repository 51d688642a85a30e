"""`cptkit mix show`: the per-source and per-group table of a mixture, and its warnings.

Shares are of the summed targets — what Megatron's normalised blend weights make of them. Available tokens come from
each prefix's `.idx` (numpy only); a prefix not tokenized yet is shown as such, not an error.
"""

from __future__ import annotations

from typing import Any

from cptkit.errors import UserError
from cptkit.mix.resolve import SourcePlan, tokenizer_conflict
from cptkit.mix.schema import WARN_POINTS, Mixture
from cptkit.mix.settings import Settings, declared_vocabulary, effective, prefix_problem
from cptkit.util.units import format_tokens


def summarize(mixture: Mixture, plans: list[SourcePlan]) -> dict[str, Any]:
    """Everything `mix show` prints, as plain data (this is also its `--json` output)."""
    total = sum(sp.target_tokens for sp in plans)
    sources = []
    for sp in plans:
        missing = [p for p in sp.prefixes if p.summary is None]
        # Only a dataset with `input:` can be made by `cptkit tokenize`; the others come from elsewhere.
        with_input = sum(
            1 for p, d in zip(sp.prefixes, sp.source.prefixes(), strict=True) if p.summary is None and d.input
        )
        sources.append(
            {
                "name": sp.source.name,
                "group": sp.source.group,
                "target_tokens": sp.target_tokens,
                "share_percent": 100.0 * sp.target_tokens / total,
                "available_tokens": sp.available_tokens,
                "epochs": sp.epochs,
                "max_prefix_epochs": sp.max_prefix_epochs,
                "max_epochs": sp.max_epochs,
                "prefixes": len(sp.prefixes),
                "prefixes_not_tokenized": len(missing),
                "prefixes_not_tokenized_with_input": with_input,
                "problems": [f"{p.field}: {p.problem}" for p in missing],
                "fim": sp.source.fim.describe() if sp.source.fim else None,
                "tokenization": effective(mixture, sp.source).to_json(),
            }
        )
    groups = []
    names = list(mixture.groups or {}) + sorted({s["group"] for s in sources if s["group"]} - set(mixture.groups or {}))
    for name in names:
        members = [s for s in sources if s["group"] == name]
        target = sum(s["target_tokens"] for s in members)
        avail = [s["available_tokens"] for s in members]
        known = None if any(a is None for a in avail) else sum(avail)
        declared = mixture.groups[name].percent if mixture.groups and name in mixture.groups else None
        groups.append(
            {
                "name": name,
                "sources": [s["name"] for s in members],
                "target_tokens": target,
                "share_percent": 100.0 * target / total,
                "declared_percent": declared,
                "available_tokens": known,
                "epochs": (target / known if known else None),
            }
        )
    return {
        "mixture": mixture.name,
        "file": mixture.file,
        "tokenizer": mixture.tokenizer,
        "tokenization": effective(mixture).to_json(),
        "total_tokens": mixture.total_tokens,
        "target_tokens": total,
        "sources": sources,
        "groups": groups,
        "warnings": warnings(mixture, sources, groups, total)
        + ([c] if (c := tokenizer_conflict(plans)) else [])
        + settings_warnings(mixture, plans),
    }


def settings_warnings(mixture: Mixture, plans: list[SourcePlan]) -> list[str]:
    """What `mix check` and the trainer would refuse: tokenized prefixes made with other settings or vocabulary."""
    if not any(p.summary is not None for sp in plans for p in sp.prefixes):
        return []  # nothing tokenized yet: do not load the tokenizer
    try:
        vocab = declared_vocabulary(mixture)
    except UserError as e:
        return [f"tokenizer: {e.message}"]
    out = []
    for sp in plans:
        want = effective(mixture, sp.source)
        for p in sp.prefixes:
            if p.summary is not None and (problem := prefix_problem(p.path, want, vocab)):
                out.append(f"{p.field}: {p.prefix}: {problem}")
    return out


def warnings(mixture: Mixture, sources: list[dict], groups: list[dict], total: float) -> list[str]:
    out = []
    for s in sources:
        worst = s["max_prefix_epochs"] if s["max_prefix_epochs"] is not None else s["epochs"]
        if worst is not None and worst > s["max_epochs"]:
            out.append(
                f"source '{s['name']}': {worst:.2f} epochs over its data, above max_epochs {s['max_epochs']:g} "
                f"(target {format_tokens(s['target_tokens'])}, available {format_tokens(s['available_tokens'] or 0)})"
            )
    for g in groups:
        if g["declared_percent"] is not None and abs(g["share_percent"] - g["declared_percent"]) > WARN_POINTS:
            out.append(
                f"group '{g['name']}': sources make up {g['share_percent']:.2f}% of the tokens, declared "
                f"{g['declared_percent']:g}% (off by more than {WARN_POINTS} point)"
            )
    budget = mixture.total_tokens
    if budget and abs(total - budget) > WARN_POINTS / 100.0 * budget:
        out.append(
            f"source targets add up to {format_tokens(total)} tokens, total_tokens is {format_tokens(budget)} "
            f"({100.0 * total / budget:.2f}%)"
        )
    with_input = sum(s["prefixes_not_tokenized_with_input"] for s in sources)
    without_input = sum(s["prefixes_not_tokenized"] for s in sources) - with_input
    if with_input:
        out.append(f"{with_input} prefix(es) not tokenized yet: run `cptkit tokenize {mixture.file}`")
    if without_input:
        out.append(
            f"{without_input} prefix(es) not found and without `input:` in the mixture: point ${{DATA_ROOT}} (or the "
            "prefix) at where they were tokenized, or add `input:` so `cptkit tokenize` can make them"
        )
    return out


def _fmt_tokens(n: float | None) -> str:
    return "-" if n is None else format_tokens(n)


def _fmt_epochs(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(r: list[str]) -> str:
        return "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))

    return [line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)]


def render(summary: dict[str, Any]) -> str:
    lines = [f"mixture {summary['mixture']} ({summary['file']}), tokenizer {summary['tokenizer']}"]
    lines.append(f"documents: {Settings(**summary['tokenization']).describe()}")
    for s in summary["sources"]:  # only the sources that override the mixture's settings
        if s["tokenization"] != summary["tokenization"]:
            lines.append(f"  source {s['name']}: {Settings(**s['tokenization']).describe()}")
    budget = summary["total_tokens"]
    lines.append(
        f"targets {format_tokens(summary['target_tokens'])} tokens"
        + (f" of a {format_tokens(budget)} budget" if budget else "")
    )
    lines.append("")
    rows = []
    for s in summary["sources"]:
        avail = _fmt_tokens(s["available_tokens"])
        if s["prefixes_not_tokenized"]:
            avail = (
                "not tokenized"
                if s["prefixes_not_tokenized"] == s["prefixes"]
                else (f"{s['prefixes_not_tokenized']}/{s['prefixes']} missing")
            )
        rows.append(
            [
                s["name"],
                s["group"] or "-",
                _fmt_tokens(s["target_tokens"]),
                f"{s['share_percent']:.2f}%",
                avail,
                _fmt_epochs(s["epochs"]),
                f"{s['max_epochs']:g}",
                str(s["prefixes"]),
            ]
        )
    lines += _table(["source", "group", "target", "share", "available", "epochs", "max", "prefixes"], rows)
    if summary["groups"]:
        lines.append("")
        grows = [
            [
                g["name"],
                str(len(g["sources"])),
                _fmt_tokens(g["target_tokens"]),
                f"{g['share_percent']:.2f}%",
                "-" if g["declared_percent"] is None else f"{g['declared_percent']:g}%",
                _fmt_tokens(g["available_tokens"]),
                _fmt_epochs(g["epochs"]),
            ]
            for g in summary["groups"]
        ]
        lines += _table(["group", "sources", "target", "share", "declared", "available", "epochs"], grows)
    fim = [(s["name"], s["fim"]) for s in summary["sources"] if s.get("fim")]
    if fim:  # applied by the trainer's dataset (docs/fim.md)
        lines.append("")
        lines += [
            f"fim: {name}: rate {f['rate']:g}, SPM {f['spm_rate']:g}, split on {f['split']}"
            + (f", fragment rate {f['fragment_rate']:g}" if f["fragment_rate"] else "")
            + ("" if f["no_newline_start"] else ", middles may start with a newline")
            for name, f in fim
        ]
    if summary["warnings"]:
        lines.append("")
        lines += [f"warning: {w}" for w in summary["warnings"]]
    return "\n".join(lines) + "\n"
