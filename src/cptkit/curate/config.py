"""The curation pipeline YAML (`data_curation/*.yaml`): typed, strict, loaded by one function.

    from cptkit.curate.config import load_pipeline
    print(load_pipeline("data_curation/swallowcode_exp3.yaml").model_dump_json(indent=2))

A pipeline reads jsonl/parquet shards (`input`), runs `stages` in order and writes new shards under `output`:
`data/NNNNN.jsonl.gz` (kept records), `rejected/<stage>/NNNNN.jsonl.gz` (each dropped record, with its reason), and
the statistics beside them. Every stage keeps its decision and score as fields of the record, so a threshold can be
changed later with a `select` stage over the annotated output, without rerunning pylint or the LLM.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from cptkit.errors import UserError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Input(_Strict):
    paths: list[str] = Field(min_length=1, description="File globs of the input shards; `${VAR}` expands.")
    format: Literal["auto", "jsonl", "parquet"] = Field(
        "auto", description="`jsonl` (also .jsonl.gz/.zst) or `parquet`; `auto` from the extension."
    )
    text_field: str = Field("text", min_length=1, description="Field holding the code / document.")
    id_field: str = Field("id", min_length=1, description="Field holding a record id (else file path + line).")


class _Stage(_Strict):
    name: str | None = Field(None, description="Unique stage name (default: the kind); names the rejected/ folder.")
    action: Literal["filter", "annotate"] = Field(
        "filter", description="`filter` drops failing records; `annotate` only records the decision and score."
    )

    @property
    def label(self) -> str:
        return self.name or self.kind  # type: ignore[attr-defined]


class SyntaxStage(_Stage):
    kind: Literal["syntax"]


class PylintStage(_Stage):
    kind: Literal["pylint"]
    threshold: float = Field(7.0, description="Keep files whose comment-penalised pylint score is >= this.")
    batch_size: int = Field(64, ge=1, description="Files rated by one sandboxed pylint process.")
    timeout_s: float = Field(120.0, gt=0, description="Seconds pylint may spend on one file before it is dropped.")
    memory_mb: int = Field(4096, ge=0, description="Address-space limit of the pylint process (0: none).")
    isolate_network: bool = Field(True, description="Run pylint in a network namespace with no interfaces.")
    astroid_state: Literal["fresh", "cleared", "shared"] = Field(
        "fresh",
        description="How each file of a batch starts: `fresh` (fork per file from a warmed-up worker: the scores of "
        "one pylint process per file), `cleared` (clear astroid's caches between files: same scores), `shared` "
        "(keep them: faster, but a file can change another's score; not for reproducing the paper).",
    )


class LanguageStage(_Stage):
    kind: Literal["language"]


class SelectStage(_Stage):
    """Re-threshold a field an earlier run recorded (e.g. `pylint_score`), without recomputing it."""

    kind: Literal["select"]
    field: str = Field(min_length=1)
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _bounds(self) -> SelectStage:
        if self.min is None and self.max is None:
            raise ValueError("give `min`, `max` or both")
        return self


class Engine(_Strict):
    backend: Literal["auto", "vllm", "transformers"] = Field(
        "auto", description="`auto`: vLLM when installed and a GPU is visible, else transformers on CPU."
    )
    model: str = Field(min_length=1, description="Local model directory (HF format); `${VAR}` expands.")
    tensor_parallel_size: int = Field(1, ge=1, description="vLLM tensor parallelism (4-8 for a 70B model).")
    dtype: str = Field("bfloat16", description="vLLM dtype; transformers on CPU always runs float32.")
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1)
    max_model_len: int = Field(102_688, ge=1, description="vLLM context length.")
    batch_size: int = Field(2048, ge=1, description="Prompts per generate() call (and per journal flush).")


class Sampling(_Strict):
    temperature: float = Field(0.2, ge=0)
    top_p: float = Field(0.7, gt=0, le=1)
    max_new_tokens: int = Field(8192, ge=1)
    seed: int | None = Field(None, description="Fix sampling for a reproducible rerun (vLLM and transformers).")


class _RewriteStage(_Stage):
    engine: Engine
    sampling: Sampling = Sampling()
    min_output_chars: int = Field(51, ge=0, description="Drop generations shorter than this (public: <= 50 dropped).")


class SgcrStage(_RewriteStage):
    kind: Literal["sgcr"]
    min_output_chars: int = 0  # the public SGCR step keeps any output with an improved-code block


class ScorStage(_RewriteStage):
    kind: Literal["scor"]


class MathRewriteStage(_RewriteStage):
    kind: Literal["math_rewrite"]
    max_prompt_chars: int = Field(102_688, ge=1, description="Skip records whose chat prompt is longer.")


Stage = Annotated[
    SyntaxStage | PylintStage | LanguageStage | SelectStage | SgcrStage | ScorStage | MathRewriteStage,
    Field(discriminator="kind"),
]


class Stats(_Strict):
    tokenizer: str | None = Field(
        "llama3", description="Tokenizer for the tokens in/out table (`llama3`, a tokenizer.json, or null: none)."
    )
    bins: int = Field(20, ge=2, le=200, description="Histogram bins.")


class Pipeline(_Strict):
    name: str = Field(min_length=1)
    description: str = ""
    input: Input
    output: str = Field(min_length=1, description="Output directory; `${VAR}` expands.")
    tasks: int = Field(1, ge=1, description="Shards (datatrove tasks); input files are divided among them.")
    workers: int = Field(1, ge=1, description="Tasks run at once on this machine.")
    stats: Stats = Stats()
    stages: list[Stage] = Field(min_length=1)

    @property
    def needs_gpu(self) -> bool:
        """Whether a shard of this pipeline runs an LLM (stages 3-4, math): GPU nodes; else CPU nodes suffice."""
        return any(isinstance(s, _RewriteStage) for s in self.stages)

    @property
    def gpus_per_shard(self) -> int:
        """GPUs one shard's vLLM engine uses (the largest tensor-parallel size of its stages; 0 for CPU-only)."""
        return max((s.engine.tensor_parallel_size for s in self.stages if isinstance(s, _RewriteStage)), default=0)

    @field_validator("stages")
    @classmethod
    def _unique_names(cls, stages: list) -> list:
        seen: set[str] = set()
        for stage in stages:
            if stage.label in seen:
                raise ValueError(f"stage name {stage.label!r} is used twice; give one a `name`")
            seen.add(stage.label)
        return stages


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand_vars(text: str, *, file: str, field: str) -> str:
    def sub(m: re.Match) -> str:
        value = os.environ.get(m.group(1))
        if value is None:
            if m.group(2) is None:
                raise UserError(f"environment variable {m.group(1)} is not set", file=file, field=field)
            return m.group(2)
        return value

    return _VAR.sub(sub, text)


def load_pipeline(path: str | os.PathLike) -> Pipeline:
    """Read, validate and expand a pipeline YAML. The one place that parses it: errors name file and field."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError("pipeline file not found", file=path) from None
    except yaml.YAMLError as e:
        raise UserError(f"not valid YAML: {e}", file=path) from None
    if not isinstance(raw, dict):
        raise UserError("a pipeline is a mapping with `name`, `input`, `output` and `stages`", file=path)
    try:
        pipe = Pipeline.model_validate(raw)
    except ValidationError as e:
        err = e.errors()[0]
        field = ".".join(str(p) for p in err["loc"])
        raise UserError(err["msg"].removeprefix("Value error, "), file=path, field=field) from None
    f = str(path)
    paths = [expand_vars(p, file=f, field=f"input.paths[{i}]") for i, p in enumerate(pipe.input.paths)]
    stages = [
        s.model_copy(
            update={
                "engine": s.engine.model_copy(
                    update={"model": expand_vars(s.engine.model, file=f, field=f"stages[{i}].engine.model")}
                )
            }
        )
        if isinstance(s, _RewriteStage)
        else s
        for i, s in enumerate(pipe.stages)
    ]
    return pipe.model_copy(
        update={
            "input": pipe.input.model_copy(update={"paths": paths}),
            "output": expand_vars(pipe.output, file=f, field="output"),
            "stages": stages,
        }
    )
