"""`cptkit curate --dry-run`: the resolved pipeline and what a run would do, without running anything."""

from __future__ import annotations

import os

import yaml

from cptkit.curate.config import Pipeline

_WHAT = {
    "syntax": "compile(code, '<string>', 'exec') under Python {py}; SyntaxError -> drop",
    "pylint": "pylint {pv} (sandboxed, {batch} files/process, {timeout}s/file, {mem} MB), comment penalty, keep score >= {thr}",
    "language": "every string and comment in ASCII / CJK / kana ranges (SwallowCode exp 4)",
    "select": "keep {field} in [{min}, {max}]",
    "sgcr": "LLM style-guided rewrite (SGCR prompt) with {model} on {backend}; keep ### Improved Code",
    "scor": "LLM self-contained optimising rewrite (SCOR prompt) with {model} on {backend}; keep first ``` block > 50 chars",
    "math_rewrite": "LLM SwallowMath rewrite (one-shot prompt) with {model} on {backend}; keep answers > 50 chars",
}


def describe(pipe: Pipeline, file: str, num_shards: int | None, shard_index: int | None) -> str:
    from cptkit.curate.checks import python_version
    from cptkit.curate.run import expand_inputs

    root, rel, fmt = expand_inputs(pipe, file)
    tasks = num_shards or pipe.tasks
    size = sum(os.path.getsize(os.path.join(root, r)) for r in rel)
    lines = [
        "# resolved pipeline",
        yaml.safe_dump(pipe.model_dump(mode="json"), sort_keys=False).rstrip(),
        "",
        "# plan",
        f"input: {len(rel)} {fmt} file(s), {size / 1e6:.1f} MB under {root}",
        f"shards: {tasks} (datatrove tasks; file i goes to shard i mod {tasks})"
        + (
            f"; this invocation runs shard {shard_index} only"
            if shard_index is not None
            else f", {pipe.workers} at a time"
        ),
    ]
    shards = [shard_index] if shard_index is not None else range(min(tasks, 4))
    for r in shards:
        mine = rel[r::tasks]
        lines.append(f"  shard {r}: {len(mine)} file(s)" + (f", first {mine[0]}" if mine else " (nothing to do)"))
    if shard_index is None and tasks > 4:
        lines.append(f"  ... {tasks - 4} more")
    if tasks > len(rel):
        lines.append(f"  note: {tasks - len(rel)} shard(s) get no file (more shards than input files)")
    lines.append(
        f"nodes: GPU, {pipe.gpus_per_shard} GPU(s) per shard (vLLM)" if pipe.needs_gpu else "nodes: CPU (no GPU needed)"
    )
    lines.append("stages:")
    for i, s in enumerate(pipe.stages, 1):
        fields = {"py": python_version(), "thr": getattr(s, "threshold", None)}
        if s.kind == "pylint":
            from importlib.metadata import version

            fields.update(pv=version("pylint"), batch=s.batch_size, timeout=s.timeout_s, mem=s.memory_mb)
        if s.kind == "select":
            fields.update(field=s.field, min=s.min, max=s.max)
        if hasattr(s, "engine"):
            fields.update(model=s.engine.model, backend=s.engine.backend)
        action = "" if s.action == "filter" else " [annotate only: nothing dropped]"
        lines.append(f"  {i}. {s.label}: {_WHAT[s.kind].format(**fields)}{action}")
    out = pipe.output
    lines += [
        f"output: {out}/data/NNNNN.jsonl.gz; dropped records: {out}/rejected/<stage>/NNNNN.jsonl.gz",
        f"statistics: {out}/curate_stats.md, .json, curate_hist.png (tokens: {pipe.stats.tokenizer or 'not counted'})",
        f'feed to cptkit tokenize with  input: {{paths: ["{out}/data/*.jsonl.gz"], format: jsonl.gz}}',
    ]
    return "\n".join(lines)
