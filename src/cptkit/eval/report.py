"""`cptkit report RUN_DIR...`: the seed-style results tables and curves for one or more runs (ablations).

For every suite found in the runs' `eval/iter_*/SUITE.json`:
    SUITE.md, SUITE.csv      rows = (run, iteration, tokens trained) per evaluated checkpoint, columns = the suite's
                             benchmarks in the suite's (the seed table's) order and the seed's average columns
                             (Ja Avg, En Avg, ...), its decimals (3 in seed 003, 4 in 000/001/004); tokens in
                             adaptive units (2.1M, 50B) so a short run does not read "0.00"; runs side by side
                             `--reference`: the seed's published rows first (reference_scores.yaml, from the
                             seed files), marked "(published)". Layout (decimals, averages, tables): the suite's
                             `report:` section, see cptkit.eval.report_table
    SUITE_<column>.png       each benchmark and average against tokens trained, one line per run; the y axis
                             names the metric (the suite's label, e.g. "4-shot Char-F1"), no offset notation on either axis
and from each run's `logs/metrics.jsonl`:
    loss.png, grad_norm.png  training loss (lm_loss when logged, else loss) and grad norm against tokens, one line per run

Every run keeps one colour in every plot (`run_colors`), so a reader can follow an ablation across figures. When a job
resumed, `metrics.jsonl` repeats iterations; the last record of an iteration wins (it is the one the run continued
from). On a CPU:  cptkit report runs/exp_a runs/exp_b --output report/
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from cptkit.errors import UserError
from cptkit.eval.report_table import csv_table, layout_for, markdown_table, suite_columns
from cptkit.util.atomic import atomic_open, write_text

# matplotlib's tab10, fixed so a run's colour is the same in every figure (and testable in the PNGs).
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]
_ITER = re.compile(r"^iter_(\d+)$")


@dataclass
class RunData:
    name: str
    path: Path
    metrics: list[dict] = field(default_factory=list)  # one per iteration, ascending
    evals: dict[str, list[dict]] = field(default_factory=dict)  # suite -> results docs, ascending tokens


def _tokens_b(doc: dict) -> float | None:
    tokens = doc.get("model", {}).get("consumed_tokens")
    return tokens / 1e9 if isinstance(tokens, int | float) else None


_UNITS = ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K"))


def format_tokens(tokens: float | None) -> str:
    """50_000_000_000 -> "50B", 2_097_152 -> "2.097M": 4 significant digits, the largest unit below the count."""
    if tokens is None:
        return "–"
    for scale, unit in _UNITS:
        if abs(tokens) >= scale:
            return f"{tokens / scale:.4g}{unit}"
    return f"{tokens:.0f}"


def token_axis(values: list[float]) -> tuple[float, str]:
    """(divisor, label) for plotting token counts: the unit of the largest value."""
    top = max((abs(v) for v in values), default=0.0)
    for scale, unit in _UNITS:
        if top >= scale:
            return scale, f"tokens trained ({unit})"
    return 1.0, "tokens trained"


def load_run(path: Path, name: str) -> RunData:
    if not path.is_dir():
        raise UserError(f"{path} is not a run directory", field="RUN_DIR")
    run = RunData(name, path)
    metrics_file = path / "logs" / "metrics.jsonl"
    if metrics_file.is_file():
        by_iter: dict[int, dict] = {}
        for line in metrics_file.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by a crash
            if isinstance(row, dict) and isinstance(row.get("iteration"), int):
                by_iter[row["iteration"]] = row
        run.metrics = [by_iter[i] for i in sorted(by_iter)]
    for results in sorted((path / "eval").glob("iter_*/*.json")):
        m = _ITER.match(results.parent.name)
        if not m:
            continue
        try:
            doc = json.loads(results.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise UserError(f"not valid JSON: {e}", file=str(results)) from None
        doc.setdefault("model", {}).setdefault("iteration", int(m.group(1)))
        run.evals.setdefault(doc.get("suite", results.stem), []).append(doc)
    for docs in run.evals.values():
        docs.sort(key=lambda d: (d["model"].get("consumed_tokens") or 0, d["model"]["iteration"]))
    return run


def run_names(paths: list[Path]) -> list[str]:
    """Directory names, made unique with their parent's name when two runs share one."""
    names = [p.resolve().name for p in paths]
    return [f"{p.resolve().parent.name}/{n}" if names.count(n) > 1 else n for p, n in zip(paths, names, strict=True)]


def run_colors(runs: list[RunData]) -> dict[str, str]:
    return {r.name: PALETTE[i % len(PALETTE)] for i, r in enumerate(runs)}


def _x_tokens(row: dict) -> float | None:
    tokens = row.get("consumed_tokens")
    return float(tokens) if isinstance(tokens, int | float) else None


def training_series(run: RunData, key: str) -> tuple[list[float], list[float], str]:
    """(x, y, x label) of one metric; x is tokens trained, or iterations when tokens are not logged."""
    if key == "loss" and any("lm_loss" in r for r in run.metrics):
        key = "lm_loss"
    rows = [r for r in run.metrics if isinstance(r.get(key), int | float)]
    if rows and all(_x_tokens(r) is not None for r in rows):
        return [_x_tokens(r) for r in rows], [float(r[key]) for r in rows], "tokens"
    return [float(r["iteration"]) for r in rows], [float(r[key]) for r in rows], "iteration"


def _figure(title: str, ylabel: str):
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend

    fig = Figure(figsize=(7, 4.2), dpi=100)
    ax = fig.add_subplot()
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    # plain tick labels: an offset ("+0.3" in a corner) or "1e10" hides the actual values a reader compares
    ax.ticklabel_format(axis="both", style="plain", useOffset=False)
    return fig, ax


def plot_training(runs: list[RunData], key: str):
    fig, ax = _figure(f"training {key.replace('_', ' ')}", key)
    colors = run_colors(runs)
    series = {run.name: training_series(run, key) for run in runs}
    by_tokens = all(kind == "tokens" for x, _, kind in series.values() if x)
    scale, xlabel = token_axis([v for x, _, _ in series.values() for v in x]) if by_tokens else (1.0, "iteration")
    for run in runs:
        x, y, _ = series[run.name]
        if x:
            ax.plot([v / scale for v in x], y, color=colors[run.name], label=run.name, linewidth=1.2)
    ax.set_xlabel(xlabel)
    if ax.lines:
        ax.legend()
    return fig


def _score(doc: dict, column: str, averages: dict[str, list[str]]) -> float | None:
    """A benchmark's score, or an average's mean over its columns (None unless all of them are present)."""
    scores = doc.get("scores", {})
    if column not in averages:
        return scores.get(column)
    values = [scores.get(c) for c in averages[column]]
    return sum(values) / len(values) if values and all(v is not None for v in values) else None


def plot_benchmark(runs: list[RunData], suite: str, column: str):
    """One benchmark (or average) of a suite against tokens trained, one line per run; the y axis names the metric."""
    columns, labels = suite_columns(runs, suite)
    layout = layout_for(runs, suite)
    averages = {a.name: layout.average_columns(a, columns) for a in layout.averages}
    if column in averages:
        metric = f"mean of {len(averages[column])} columns"
    else:
        metric = labels.get(column) or "score"
    covered = averages.get(column, [column])
    flagged = any((d.get("not_comparable") or {}).get(c) for r in runs for d in r.evals.get(suite, []) for c in covered)
    note = "\n(not comparable with the seed's table: see the footnotes of SUITE.md)".replace("SUITE", suite)
    fig, ax = _figure(f"{suite}: {column}" + (note if flagged else ""), f"{column}: {metric}")
    colors = run_colors(runs)
    points = {
        run.name: [
            (d["model"]["consumed_tokens"], _score(d, column, averages))
            for d in run.evals.get(suite, [])
            if _tokens_b(d) is not None and _score(d, column, averages) is not None
        ]
        for run in runs
    }
    scale, xlabel = token_axis([x for p in points.values() for x, _ in p])
    for run in runs:
        if points[run.name]:
            xs, ys = zip(*points[run.name], strict=True)
            ax.plot([x / scale for x in xs], ys, color=colors[run.name], label=run.name, marker="o", linewidth=1.5)
    ax.set_xlabel(xlabel)
    if ax.lines:
        ax.legend()
    return fig


def save_png(fig, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    fig.tight_layout()
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png")


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "x"


def make_report(
    paths: list[Path], out_dir: Path, *, suites: list[str] | None = None, reference: bool = False
) -> list[Path]:
    runs = [load_run(p, n) for p, n in zip(paths, run_names(paths), strict=True)]
    found = sorted({s for r in runs for s in r.evals})
    chosen = [s for s in found if not suites or s in suites]
    if not chosen and not any(r.metrics for r in runs):
        raise UserError("no evaluation results (eval/iter_*/SUITE.json) and no logs/metrics.jsonl", field="RUN_DIR")
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for suite in chosen:
        written.append(out_dir / f"{_safe(suite)}.md")
        write_text(written[-1], markdown_table(runs, suite, reference=reference))
        written.append(out_dir / f"{_safe(suite)}.csv")
        write_text(written[-1], csv_table(runs, suite, reference=reference))
        averages = [a.name for a in layout_for(runs, suite).averages]
        for column in [*suite_columns(runs, suite)[0], *averages]:
            fig = plot_benchmark(runs, suite, column)
            if not fig.axes[0].lines:
                continue  # a column no run has evaluated (yet): no empty figure
            written.append(out_dir / f"{_safe(suite)}_{_safe(column)}.png")
            save_png(fig, written[-1])
    for key in ("loss", "grad_norm"):
        if any(training_series(r, key)[0] for r in runs):
            written.append(out_dir / f"{key}.png")
            save_png(plot_training(runs, key), written[-1])
    for path in written:
        print(path)
    return written
