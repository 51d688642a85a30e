"""The model card (README.md of a release folder): a context built only from the run's records, rendered by Jinja2.

Template: `release.card_template` (resolved when the recipe loaded: the recipe's field, else `model_card.md.j2` beside
the recipe), else the packaged `templates/model_card.md.j2`. Templates see the context `card_context` returns and the
filters `tokens` (50B, as `cptkit report`), `sci` (2.5e-5) and `thousands` (8,192); an undefined name is an error, so
a typo in a template fails instead of printing nothing.

    from cptkit.release.records import load_run_record
    from cptkit.release.card import card_context, render_card
    run = load_run_record("runs/swallowcode_exp1")
    print(render_card(card_context(run, 12500, name="Llama-3.1-8B-...-iter0012500")))
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from cptkit.errors import UserError
from cptkit.eval import report
from cptkit.release import records
from cptkit.release.data import data_section
from cptkit.release.name import sci

DEFAULT_TEMPLATE = Path(__file__).parent / "templates" / "model_card.md.j2"

# The license of a base model family, by its Hub id (first match wins): (pattern, Hub license id, name, URL).
# Only what the families' own model cards state; anything else is left to `release.license`.
_LLAMA = "https://github.com/meta-llama/llama-models/blob/main/models"
LICENSES = (
    (r"llama-?3\.3", "llama3.3", "Llama 3.3 Community License", f"{_LLAMA}/llama3_3/LICENSE"),
    (r"llama-?3\.2", "llama3.2", "Llama 3.2 Community License", f"{_LLAMA}/llama3_2/LICENSE"),
    (r"llama-?3\.1", "llama3.1", "Llama 3.1 Community License", f"{_LLAMA}/llama3_1/LICENSE"),
    (r"llama-?3\b", "llama3", "Meta Llama 3 Community License", f"{_LLAMA}/llama3/LICENSE"),
    (r"qwen2\.5-3b", "other", "Qwen Research License", None),
    (r"qwen2\.5-72b", "other", "Qwen License", None),
    (r"qwen2-72b", "other", "Tongyi Qianwen License", None),
    (r"qwen2", "apache-2.0", "Apache License 2.0", "https://www.apache.org/licenses/LICENSE-2.0"),
    (r"gemma", "gemma", "Gemma Terms of Use", "https://ai.google.dev/gemma/terms"),
    (r"mistral-7b", "apache-2.0", "Apache License 2.0", "https://www.apache.org/licenses/LICENSE-2.0"),
)


def license_for(base_model: str | None, override: str | None) -> dict[str, Any] | None:
    if override:
        return {"id": override, "name": override, "url": None, "source": "the recipe's release.license"}
    if not base_model:
        return None
    for pattern, hub_id, name, url in LICENSES:
        if re.search(pattern, base_model, re.IGNORECASE):
            return {"id": hub_id, "name": name, "url": url, "source": f"the license of {base_model}'s family"}
    return None


def eval_tables(run: records.RunRecord, iteration: int) -> list[dict[str, Any]]:
    """The seed-style tables of `cptkit report` (its layout per suite: columns, averages, decimals, sub-tables,
    footnoted not-comparable scores), one row per evaluated checkpoint up to this one, tokens first."""
    from cptkit.eval import report_table as rt

    if run.evals is None:
        return []
    out = []
    for suite in sorted(run.evals.evals):
        layout = rt.layout_for([run.evals], suite)
        columns, labels = rt.suite_columns([run.evals], suite)
        for table in rt.tables_of(layout, columns):
            header, rows = rt.table_rows([run.evals], suite, table, layout)
            kept = [r for r in rows if r[1] is not None and r[1] <= iteration]
            if not kept:
                continue
            notes = rt._Footnotes()
            cells = [[rt._cell(v, layout.decimals, notes) for v in r[3:]] for r in kept]
            out.append(
                {
                    "suite": suite if table.title == "all" else f"{suite}: {table.title}",
                    "columns": header[3:],
                    "metrics": [f"{c}: {labels[c]}" for c in table.columns if labels.get(c)],
                    "rows": [{"iteration": r[1], "tokens": r[2], "cells": c} for r, c in zip(kept, cells, strict=True)],
                    "not_comparable": notes.lines(),
                    "decimals": layout.decimals,
                }
            )
    return out


def _training(recipe, state: dict, model: dict, plan_tokens: int | None) -> dict[str, Any]:
    cfg = model or {}
    hf = cfg.get("hf_config") or {}
    t, o, s, p = recipe.training, recipe.optimizer, recipe.schedule, recipe.parallel
    return {
        "architecture": cfg.get("architecture"),
        "hf_architecture": (hf.get("architectures") or [None])[0],
        "num_layers": cfg.get("num_layers"),
        "hidden_size": cfg.get("hidden_size"),
        "num_attention_heads": cfg.get("num_attention_heads"),
        "num_query_groups": cfg.get("num_query_groups"),
        "vocab_size": cfg.get("vocab_size"),
        "consumed_tokens": state.get("consumed_tokens"),
        "consumed_samples": state.get("consumed_samples"),
        "iteration": state.get("iteration"),
        "train_iters": state.get("train_iters"),
        "planned_tokens": plan_tokens,
        "seq_length": state.get("seq_length") or t.seq_length,
        "global_batch_size": state.get("global_batch_size") or t.global_batch_size,
        "precision": {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}[t.precision],
        "lr": o.lr,
        "min_lr": o.min_lr,
        "weight_decay": o.weight_decay,
        "adam": (o.adam_beta1, o.adam_beta2, o.adam_eps),
        "clip_grad": o.clip_grad,
        "lr_decay_style": s.lr_decay_style,
        "lr_warmup_iters": s.lr_warmup_iters,
        "z_loss_coef": t.z_loss_coef,
        "parallel": {
            "num_gpus": p.num_gpus,
            "tp": p.tensor_model_parallel_size,
            "pp": p.pipeline_model_parallel_size,
            "cp": p.context_parallel_size,
        },
        "tokenizer": (state.get("mixture") or {}).get("tokenizer"),
    }


def card_context(
    run: records.RunRecord,
    iteration: int,
    *,
    name: str,
    repo_id: str | None = None,
    revision: str | None = None,
    recipe=None,
) -> dict[str, Any]:
    """Everything the card may say about checkpoint `iteration`, from the run's files. `recipe` (default: the run's
    resolved recipe) supplies the recipe-side fields: tests render every shipped recipe's card over one tiny run."""
    from cptkit import __version__

    recipe = recipe or run.recipe
    state, model = run.state(iteration), run.model(iteration)
    notes: dict[str, str | None] = dict.fromkeys(("base_model", "license", "hardware", "evaluation"))
    base = records.base_model(run, iteration, recipe)
    if base is None:
        notes["base_model"] = (
            "The base model is not recorded (random initialisation, or an initial checkpoint whose HF config names "
            "no Hub id); set release.base_model."
        )
    lic = license_for(base, recipe.release.license)
    if lic is None:
        notes["license"] = (
            "No license is stated: the base model family's license is not known to cptkit (set release.license)."
        )
    data, data_notes = data_section(state)
    jobs = records.jobs_until(run, iteration)
    if not jobs:
        notes["hardware"] = (
            "Hardware and software versions are not stated: this run has no logs/jobs_env.jsonl record for the jobs "
            "that trained this checkpoint (written by cptkit's trainer since release support)."
        )
    evals = eval_tables(run, iteration)
    if not evals:
        notes["evaluation"] = (
            "No evaluation results: no `cptkit eval` results (eval/iter_*/SUITE.json) for this checkpoint or an "
            "earlier one."
        )
    planned = state.get("train_iters") and state["train_iters"] * (state.get("global_batch_size") or 0) * (
        state.get("seq_length") or 0
    )
    return {
        "name": name,
        "repo_id": repo_id,
        "revision": revision,
        "iteration": iteration,
        "final": iteration == run.iterations[-1] and (run.run_dir / "COMPLETED").exists(),
        "recipe": {"name": recipe.name, "description": recipe.description},
        "base_model": base,
        "license": lic,
        "training": _training(recipe, state, model, planned or None),
        "data": data,
        "data_notes": data_notes,
        "hardware": records.hardware(jobs),
        "software": records.software(jobs),
        "eval_software": records.eval_software(run, iteration),
        "evals": evals,
        "citation": (recipe.release.citation or "").strip() or None,
        "notes": notes,
        "cptkit_version": __version__,
    }


def _environment(search: Path):
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(search)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,  # Markdown, not HTML
    )
    env.filters["tokens"] = report.format_tokens
    env.filters["sci"] = sci
    env.filters["thousands"] = lambda n: f"{n:,}"
    return env


def template_path(recipe) -> Path:
    path = recipe.release.card_template
    return Path(path) if path else DEFAULT_TEMPLATE


def render_card(context: dict[str, Any], template: str | Path = DEFAULT_TEMPLATE) -> str:
    """The card's Markdown; a missing or broken template is a one-line UserError naming the file (and line)."""
    import jinja2

    template = Path(template)
    if not template.is_file():
        raise UserError("model card template not found", file=str(template), field="release.card_template")
    try:
        text = _environment(template.parent).get_template(template.name).render(**context)
    except jinja2.TemplateSyntaxError as e:
        raise UserError(f"line {e.lineno}: {e.message}", file=str(template), field="release.card_template") from None
    except jinja2.TemplateError as e:
        raise UserError(f"{type(e).__name__}: {e}", file=str(template), field="release.card_template") from None
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"
