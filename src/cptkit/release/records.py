"""What a run recorded, gathered for one checkpoint's model card. Torch-free: every value comes from a file.

    recipe.resolved.yaml                     the recipe (after inheritance and overrides), as trained
    checkpoints/iter_N/cptkit_state.json     consumed tokens and samples, the mixture's name, file and fingerprint
    checkpoints/iter_N/cptkit_model.json     architecture, sizes, the base model's HF config
    the mixture file + its prefixes          sources, targets, shares, epochs (`cptkit mix show`'s summary) and the
                                             tokenization settings each prefix's .manifest.json records
    logs/jobs_env.jsonl                      hardware, cluster profile and software versions of every job
    eval/iter_*/SUITE.json                   `cptkit eval` results (read by `cptkit report`'s loader)

Something the run did not record is returned as None together with a note saying so; nothing is filled in.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cptkit.errors import UserError
from cptkit.eval.report import RunData, load_run
from cptkit.eval.targets import iter_name, saved_iterations
from cptkit.train.jobs_env import read_jobs_env

RESOLVED = "recipe.resolved.yaml"


@dataclass
class RunRecord:
    run_dir: Path
    recipe: Any  # cptkit.train.schema.Recipe
    recipe_file: str
    iterations: list[int]  # saved, ascending
    jobs: list[dict] = field(default_factory=list)
    evals: RunData | None = None

    def checkpoint(self, iteration: int) -> Path:
        return self.run_dir / "checkpoints" / iter_name(iteration)

    def state(self, iteration: int) -> dict[str, Any]:
        return _json(self.checkpoint(iteration) / "cptkit_state.json")

    def model(self, iteration: int) -> dict[str, Any]:
        return _json(self.checkpoint(iteration) / "cptkit_model.json")

    def evaluated_iterations(self) -> list[int]:
        """Saved iterations with at least one `cptkit eval` result, ascending."""
        done = {d["model"]["iteration"] for docs in (self.evals.evals if self.evals else {}).values() for d in docs}
        return [i for i in self.iterations if i in done]


def _json(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except json.JSONDecodeError as e:
        raise UserError(f"not valid JSON: {e}", file=str(path)) from None
    return doc if isinstance(doc, dict) else {}


def _escape(node: Any) -> Any:
    """`$` → `$$`: the resolved file's strings are already expanded; loading it again must not expand them twice."""
    if isinstance(node, str):
        return node.replace("$", "$$")
    if isinstance(node, dict):
        return {k: _escape(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_escape(v) for v in node]
    return node


def load_recipe_record(run_dir: Path, overrides: list[str] = ()) -> tuple[Any, str]:
    """The run's resolved recipe (+ `release.*` overrides), validated by the recipe schema."""
    from cptkit.train.schema import Recipe

    path = run_dir / RESOLVED
    if not path.is_file():
        raise UserError(f"no {RESOLVED}: not a cptkit run directory (or training never started)", file=str(path))
    bad = [o for o in overrides if not o.startswith("release.")]
    if bad:
        raise UserError(f"--set changes release.* keys only, not {bad[0].split('=')[0]!r}", field="--set")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise UserError(f"not valid YAML: {' '.join(str(e).split())}", file=str(path)) from None
    recipe = Recipe.from_data(_escape(data), None, overrides, file=str(path), env={})
    return recipe, str(path)


def load_run_record(run_dir: str | Path, overrides: list[str] = ()) -> RunRecord:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError("no such run directory", file=str(run_dir))
    recipe, recipe_file = load_recipe_record(run_dir, overrides)
    iterations = saved_iterations(run_dir) if (run_dir / "checkpoints").is_dir() else []
    if not iterations:
        raise UserError("no saved checkpoint (checkpoints/latest_checkpointed_iteration.txt)", file=str(run_dir))
    return RunRecord(run_dir, recipe, recipe_file, iterations, read_jobs_env(run_dir), load_run(run_dir, "run"))


# -- base model -------------------------------------------------------------------------------------------------------
def base_model(run: RunRecord, iteration: int, recipe=None) -> str | None:
    """release.base_model, else the `_name_or_path` the base model's HF config recorded when it is a Hub id."""
    recipe = recipe or run.recipe
    if recipe.release.base_model:
        return recipe.release.base_model
    name = (run.model(iteration).get("hf_config") or {}).get("_name_or_path")
    if isinstance(name, str) and name.count("/") == 1 and not name.startswith((".", "/", "~")):
        return name
    return None


# -- hardware and software ---------------------------------------------------------------------------------------------
def jobs_until(run: RunRecord, iteration: int) -> list[dict]:
    """The jobs that trained toward `iteration` (they started before it)."""
    return [j for j in run.jobs if isinstance(j.get("start_iteration"), int) and j["start_iteration"] < iteration]


def hardware(jobs: list[dict]) -> dict[str, Any] | None:
    if not jobs:
        return None
    setups = []
    for j in jobs:
        gpu = j.get("gpu")
        what = (
            f"{gpu['count']} × {gpu['model']} ({gpu['memory_gib']:g} GiB)"
            if gpu
            else f"no GPU: {j.get('world_size', '?')} CPU process(es)"
        )
        what += f" on {j.get('nodes', '?')} node(s)"
        if what not in setups:
            setups.append(what)
    clusters = sorted({j["cluster"] for j in jobs if j.get("cluster")})
    return {"setups": setups, "clusters": clusters, "jobs": len(jobs)}


SOFTWARE = (
    ("megatron_core", "megatron-core"),
    ("torch", "PyTorch"),
    ("transformer_engine", "Transformer Engine"),
    ("cuda", "CUDA"),
    ("nccl", "NCCL"),
    ("cptkit", "cptkit"),
    ("python", "Python"),
)


def software(jobs: list[dict]) -> list[dict[str, str]] | None:
    """One entry per package: every version the jobs ran with (a run that upgraded mid-way shows both)."""
    if not jobs:
        return None
    te_used = any(j.get("transformer_engine_used") for j in jobs)
    out = []
    for key, label in SOFTWARE:
        if key == "transformer_engine" and not te_used:
            continue  # installed but not used (CPU runs use megatron-core's local layers)
        seen = [j.get("versions", {}).get(key) for j in jobs]
        values = list(dict.fromkeys(v for v in seen if v))
        if values:
            out.append({"name": label, "version": " → ".join(values)})
    return out


def eval_software(run: RunRecord, iteration: int) -> list[dict[str, str]]:
    """Evaluation packages as the result files recorded them (`versions` of each SUITE.json)."""
    found: dict[str, list[str]] = {}
    for docs in (run.evals.evals if run.evals else {}).values():
        for d in docs:
            if d["model"].get("iteration", 0) > iteration:
                continue
            for name, version in (d.get("versions") or {}).items():
                if version and name not in ("torch",):
                    found.setdefault(name, [])
                    if version not in found[name]:
                        found[name].append(version)
    return [{"name": k, "version": " / ".join(v)} for k, v in sorted(found.items())]
