"""The statistics of a finished curation run, like the paper's: per stage records and tokens in/out, drop reasons,
and histograms of the pylint score and comment ratio (and SGCR's own score), as JSON, a Markdown table and a PNG,
written beside the output (`curate_stats.json`, `curate_stats.md`, `curate_hist.png`).

    python -c "from cptkit.curate.report import render_table; import json; \
print(render_table(json.load(open('OUT/curate_stats.json'))))"

It also checks the accounting: for every stage, records in = records out + records dropped, and each stage's input
is the previous stage's output. A mismatch means records were lost or duplicated, and is an error, not a footnote.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np

from cptkit.curate.steps import HISTOGRAMS
from cptkit.util.atomic import atomic_open, write_json, write_text


def merge(out: Path) -> list[dict]:
    merged: list[dict] = []
    for path in sorted((out / ".curate" / "stats").glob("*.json")):
        for i, stage in enumerate(json.loads(path.read_text())):
            if len(merged) <= i:
                merged.append({**stage, "counts": Counter(), "histograms": {}})
            m = merged[i]
            m["counts"].update(stage["counts"])
            for field, hist in stage["histograms"].items():
                prev = m["histograms"].get(field)
                m["histograms"][field] = hist if prev is None else (np.add(prev, hist)).tolist()
    for m in merged:
        m["counts"] = dict(m["counts"])
    return merged


def check_accounting(stages: list[dict]) -> None:
    previous_out = None
    for s in stages:
        c = s["counts"]
        dropped = sum(v for k, v in c.items() if k.startswith("dropped:"))
        if c.get("records_in", 0) != c.get("records_out", 0) + dropped:
            raise RuntimeError(
                f"stage {s['stage']}: {c.get('records_in', 0)} in != {c.get('records_out', 0)} out + {dropped} dropped"
            )
        if previous_out is not None and c.get("records_in", 0) != previous_out:
            raise RuntimeError(
                f"stage {s['stage']}: {c.get('records_in', 0)} in, but the previous stage kept {previous_out}"
            )
        previous_out = c.get("records_out", 0)


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "-"


def render_table(stats: dict, *, histograms: bool = True) -> str:
    lines = [
        f"# Curation statistics: {stats['pipeline']}",
        "",
        "| stage | records in | records out | kept | tokens in | tokens out | dropped (reason: records) |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for s in stats["stages"]:
        c = s["counts"]
        n_in, n_out = c.get("records_in", 0), c.get("records_out", 0)
        reasons = ", ".join(
            f"{k.split(':', 1)[1]}: {v:,}" for k, v in sorted(c.items()) if k.startswith(("dropped:", "flagged:"))
        )
        lines.append(
            f"| {s['stage']} | {n_in:,} | {n_out:,} | {_pct(n_out, n_in)} | {c.get('tokens_in', 0):,} | "
            f"{c.get('tokens_out', 0):,} | {reasons or '-'} |"
        )
    for s in stats["stages"] if histograms else []:
        for field, hist in s["histograms"].items():
            lo, hi = HISTOGRAMS[field]
            edges = np.linspace(lo, hi, len(hist) + 1)
            lines += [
                "",
                f"## {s['stage']}: {field} (records entering the stage)",
                "",
                "| bin | records |",
                "|---|---:|",
            ]
            lines += [
                f"| [{edges[i]:.2f}, {edges[i + 1]:.2f}{']' if i == len(hist) - 1 else ')'} | {n:,} |"
                for i, n in enumerate(hist)
            ]
    params = [
        f"- {s['stage']}: " + ", ".join(f"{k}={v}" for k, v in s["params"].items())
        for s in stats["stages"]
        if s["params"]
    ]
    if params:
        lines += ["", "## Settings", "", *params]
    return "\n".join(lines) + "\n"


def plot(stats: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(s["stage"], f, h) for s in stats["stages"] for f, h in s["histograms"].items()]
    if not panels:
        return
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.5), squeeze=False)
    for ax, (stage, field, hist) in zip(axes[0], panels, strict=True):
        lo, hi = HISTOGRAMS[field]
        edges = np.linspace(lo, hi, len(hist) + 1)
        ax.bar(edges[:-1], hist, width=np.diff(edges), align="edge", edgecolor="black")
        ax.set_title(f"{stage}: {field}")
        ax.set_xlabel(field)
        ax.set_ylabel("records")
        threshold = next((s["params"].get("threshold") for s in stats["stages"] if s["stage"] == stage), None)
        if field == "pylint_score" and threshold is not None:
            ax.axvline(threshold, color="red", linestyle="--", label=f"threshold {threshold}")
            ax.legend()
    fig.suptitle(stats["pipeline"])
    fig.tight_layout()
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png", dpi=100)
    plt.close(fig)


def write_report(out: Path, pipe) -> dict:
    stages = merge(out)
    check_accounting(stages)
    stats = {"pipeline": pipe.name, "output": str(out), "stages": stages}
    write_json(out / "curate_stats.json", stats)
    write_text(out / "curate_stats.md", render_table(stats))
    plot(stats, out / "curate_hist.png")
    return stats
