"""Release names: the recipe's `release.name` template → one Hub-valid name per checkpoint.

The default reproduces the Swallow ablations' repositories (seeds 000/001):

    >>> from cptkit.release.name import render_name, DEFAULT_NAME_TEMPLATE
    >>> render_name(DEFAULT_NAME_TEMPLATE, dict(base_model_name="Llama-3.1-8B", ablation="code-ablation-exp1",
    ...     lr=2.5e-5, min_lr=2.5e-6, weight_decay=0.1, iteration=12500))
    'Llama-3.1-8B-code-ablation-exp1-LR2.5e-5-MINLR2.5E-6-WD0.1-iter0012500'

Templates are Python `str.format` strings with three extra format specs: `:sci` (`2.5e-5`: mantissa without trailing
zeros, exponent without padding), `:SCI` (`2.5E-6`) and `:units` (a token count as `50B`). A plain float prints as
`:g` (`0.1`). The rendered name is checked with huggingface_hub's own `validate_repo_id` (imported only then) and the
Hub's 96-character limit. Torch-free: the recipe schema checks a template when a recipe loads.
"""

from __future__ import annotations

import string
from typing import Any

from cptkit.errors import UserError

DEFAULT_NAME_TEMPLATE = "{base_model_name}-{ablation}-LR{lr:sci}-MINLR{min_lr:SCI}-WD{weight_decay}-iter{iteration:07d}"
MAX_NAME_CHARS = 96  # the Hub's limit for the name part of a repo id

# Values a template is tried with when a recipe loads (the real ones exist only at release time).
SAMPLE = {
    "name": "recipe_name",
    "ablation": "recipe-name",
    "base_model": "org/Base-Model",
    "base_model_name": "Base-Model",
    "lr": 2.5e-5,
    "min_lr": 2.5e-6,
    "weight_decay": 0.1,
    "iteration": 12500,
    "tokens": 52_428_800_000,
    "seq_length": 8192,
}


def sci(x: float, *, upper: bool = False) -> str:
    """2.5e-05 -> '2.5e-5' (the Swallow repositories' spelling); upper: '2.5E-5'."""
    mantissa, exponent = f"{float(x):e}".split("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    text = f"{mantissa}e{int(exponent)}"
    return text.upper() if upper else text


class _Formatter(string.Formatter):
    def format_field(self, value: Any, format_spec: str) -> str:
        if format_spec in ("sci", "SCI"):
            return sci(value, upper=format_spec == "SCI")
        if format_spec == "units":
            from cptkit.eval.report import format_tokens  # the token units of `cptkit report`'s tables

            return format_tokens(value)
        if isinstance(value, float) and not format_spec:
            return f"{value:g}"
        return super().format_field(value, format_spec)


def hub_problem(name: str) -> str | None:
    """Why the Hub would refuse `name` as a repository name, or None. Uses huggingface_hub's validator."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if "/" in name:
        return "contains '/' (the organisation is given to --push, not in the name)"
    if len(name) > MAX_NAME_CHARS:
        return f"is {len(name)} characters long; the Hub allows at most {MAX_NAME_CHARS}"
    try:
        validate_repo_id(name)
    except HFValidationError as e:
        return " ".join(str(e).split())
    return None


def _format(template: str, variables: dict[str, Any]) -> str:
    try:
        return _Formatter().format(template, **variables)
    except KeyError as e:
        known = ", ".join(sorted(SAMPLE))
        raise ValueError(f"unknown variable {{{e.args[0]}}} in {template!r} (known: {known})") from None
    except IndexError:
        raise ValueError(f"positional {{}} in {template!r}: name the variable, e.g. {{iteration:07d}}") from None
    except (ValueError, TypeError) as e:
        raise ValueError(f"cannot format {template!r}: {e}") from None


def check_template(template: str) -> None:
    """Raise ValueError (the schema names file and field) if `template` cannot make a valid name."""
    name = _format(template, SAMPLE)
    if problem := hub_problem(name):
        raise ValueError(f"{template!r} gives names the Hub refuses: {name!r} {problem}")


def template_variables(recipe, iteration: int, *, base_model: str | None, tokens: int | None = None) -> dict:
    """The variables a `release.name` template sees for one checkpoint of a run of `recipe`."""
    return {
        "name": recipe.name,
        "ablation": recipe.release.ablation or recipe.name.replace("_", "-"),
        "base_model": base_model,
        "base_model_name": base_model.rsplit("/", 1)[-1] if base_model else None,
        "lr": recipe.optimizer.lr,
        "min_lr": recipe.optimizer.min_lr,
        "weight_decay": recipe.optimizer.weight_decay,
        "iteration": iteration,
        "tokens": tokens,
        "seq_length": recipe.training.seq_length,
    }


def render_name(template: str, variables: dict[str, Any], *, file: str | None = None) -> str:
    """The release name for one checkpoint; a one-line UserError naming `file` and `release.name` otherwise."""
    missing = [k for k in ("base_model_name",) if f"{{{k}" in template and variables.get(k) is None]
    if missing:
        raise UserError(
            "the name template needs {base_model_name} but the run does not record its base model: set "
            "release.base_model (e.g. meta-llama/Llama-3.1-8B), or a release.name without it",
            file=file,
            field="release.base_model",
        )
    try:
        name = _format(template, variables)
    except ValueError as e:
        raise UserError(str(e), file=file, field="release.name") from None
    if problem := hub_problem(name):
        raise UserError(f"release name {name!r} {problem}", file=file, field="release.name")
    return name
