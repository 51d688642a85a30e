"""Run a curation pipeline on datatrove's LocalPipelineExecutor, one task per shard, resumable.

    cptkit curate data_curation/swallowcode_exp3.yaml                      # all shards here
    cptkit curate data_curation/swallowcode_exp3.yaml --shard-index 3 --num-shards 64   # one array-job element

Layout of `output/`:
    data/NNNNN.jsonl.gz               kept records of shard NNNNN (top-level `text`: `cptkit tokenize` reads it)
    rejected/<stage>/NNNNN.jsonl.gz   records <stage> dropped, with `drop_reason` and the stage's fields
    curate_stats.{json,md,png}        the statistics, once every shard is done
    .curate/plan.json                 the resolved pipeline; a rerun with a different one is refused
    .curate/logs/                     datatrove's logs, per-task stats and completion markers
    .curate/journal/<stage>/          finished pylint ratings and LLM answers per shard (resume)
    .curate/staging/                  a task's files while it runs; renamed into place when it ends

A task writes into staging and renames its files into place only when all of its records went through, then
datatrove marks it complete: a killed task leaves nothing under the final names and is rerun from its start
(its journals spare the pylint and LLM work already done); a completed task is skipped.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
from pathlib import Path

from cptkit.curate.config import Pipeline
from cptkit.errors import UserError
from cptkit.util.atomic import write_json
from cptkit.util.lock import output_lock


def expand_inputs(pipe: Pipeline, file: str) -> tuple[str, list[str], str]:
    """(common folder, sorted relative paths, format) of the input files."""
    files: list[str] = []
    for i, pattern in enumerate(pipe.input.paths):
        matched = sorted(glob.glob(pattern, recursive=True))
        if not matched:
            raise UserError(f"no file matches {pattern!r}", file=file, field=f"input.paths[{i}]")
        files += [os.path.abspath(m) for m in matched]
    files = sorted(dict.fromkeys(files))
    formats = {("parquet" if f.endswith(".parquet") else "jsonl") for f in files}
    if pipe.input.format != "auto":
        formats = {pipe.input.format}
    if len(formats) > 1:
        raise UserError(
            "input mixes jsonl and parquet files; use one format per pipeline", file=file, field="input.paths"
        )
    root = os.path.commonpath([os.path.dirname(f) for f in files])
    return root, [os.path.relpath(f, root) for f in files], formats.pop()


def plan(pipe: Pipeline, file: str, num_shards: int | None) -> dict:
    root, rel, fmt = expand_inputs(pipe, file)
    tasks = num_shards or pipe.tasks
    return {
        "pipeline": pipe.name,
        "input_root": root,
        "input_files": rel,
        "input_format": fmt,
        "tasks": tasks,
        "stages": [s.model_dump() for s in pipe.stages],
        "stats": pipe.stats.model_dump(),
        "text_field": pipe.input.text_field,
        "id_field": pipe.input.id_field,
    }


def check_plan(out: Path, the_plan: dict, file: str) -> None:
    path = out / ".curate" / "plan.json"
    if path.exists():
        old = json.loads(path.read_text())
        if old != the_plan:
            changed = sorted(k for k in the_plan if old.get(k) != the_plan[k])
            raise UserError(
                f"{out} was made by a different pipeline (changed: {', '.join(changed)}); "
                "use a new output directory, or delete this one to start over",
                file=file,
            )
    else:
        write_json(path, the_plan)


def build_pipeline(pipe: Pipeline, the_plan: dict, out: Path) -> tuple[list, list]:
    from cptkit.curate.readers import StrictJsonlReader, StrictParquetReader
    from cptkit.curate.steps import build_step, jsonl_writer
    from cptkit.curate.tokens import TokenCounter

    meta = out / ".curate"
    paths_file = meta / "inputs.txt"
    if not paths_file.exists():
        from cptkit.util.atomic import write_text

        write_text(paths_file, "".join(p + "\n" for p in the_plan["input_files"]))
    reader_cls = StrictParquetReader if the_plan["input_format"] == "parquet" else StrictJsonlReader
    reader = reader_cls(
        the_plan["input_root"], paths_file=str(paths_file), text_key=pipe.input.text_field, id_key=pipe.input.id_field
    )
    tokens = TokenCounter(pipe.stats.tokenizer)
    staging = str(meta / "staging")
    steps = [
        build_step(s, staging=staging, journal_dir=str(meta / "journal"), tokens=tokens, bins=pipe.stats.bins)
        for s in pipe.stages
    ]
    writer = jsonl_writer(staging, "data/${rank}.jsonl.gz")
    return [reader, _drop_token_cache, *steps, writer, Finalize(out, steps)], steps


def _drop_token_cache(data, rank: int = 0, world_size: int = 1):
    """A `token_count` read from the input may come from another tokenizer: count again."""
    for doc in data:
        doc.metadata.pop("token_count", None)
        yield doc


class Finalize:
    """Last step: drain the pipeline (closing every writer), then move this rank's files into place."""

    def __init__(self, out: Path, steps: list):
        self.out = out
        self.steps = steps

    def __call__(self, data, rank: int = 0, world_size: int = 1):
        for _ in data:
            pass
        staging = self.out / ".curate" / "staging"
        name = f"{rank:05d}.jsonl.gz"
        targets = [Path("data") / name] + [Path("rejected") / s.label / name for s in self.steps]
        for rel in targets:
            src, dst = staging / rel, self.out / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            if src.exists():
                os.replace(src, dst)
            elif dst.exists():  # an earlier attempt of this rank wrote one; this attempt had nothing to write
                dst.unlink()
        write_json(self.out / ".curate" / "stats" / f"{rank:05d}.json", [s.summary() for s in self.steps])
        return iter(())


def run(pipe: Pipeline, file: str, *, shard_index: int | None, num_shards: int | None, workers: int | None) -> dict:
    from datatrove.executor import LocalPipelineExecutor

    out = Path(pipe.output)
    the_plan = plan(pipe, file, num_shards)
    tasks = the_plan["tasks"]
    if shard_index is not None and not 0 <= shard_index < tasks:
        raise UserError(f"--shard-index {shard_index} is outside 0..{tasks - 1}", field="--shard-index")
    check_plan(out, the_plan, file)
    steps_pipeline, _ = build_pipeline(pipe, the_plan, out)
    executor = LocalPipelineExecutor(
        pipeline=steps_pipeline,
        tasks=tasks,
        workers=workers or pipe.workers,
        logging_dir=str(out / ".curate" / "logs"),
        local_tasks=1 if shard_index is not None else -1,
        local_rank_offset=shard_index or 0,
        start_method="fork",
    )
    with contextlib.ExitStack() as locks:
        # Two copies of one task (an array resubmitted while the first still runs) would write the same staging
        # files: the second stops at once with one line. A run of every task here excludes any array element.
        run_lock = out / ".curate" / "run"
        if shard_index is None:
            locks.enter_context(output_lock(run_lock, what=f"the curation of {out}"))
        else:
            locks.enter_context(output_lock(run_lock, what=f"the curation of {out}", shared=True))
            task = out / ".curate" / f"task-{shard_index:05d}"
            locks.enter_context(output_lock(task, what=f"curate task {shard_index} of {out}"))
        executor.run()
    done = [r for r in range(tasks) if (out / ".curate" / "stats" / f"{r:05d}.json").exists()]
    result = {"tasks": tasks, "done": len(done)}
    if len(done) == tasks:
        from cptkit.curate.report import write_report

        shutil.rmtree(out / ".curate" / "staging", ignore_errors=True)
        result["report"] = write_report(out, pipe)
    return result
