"""`cptkit release`: per checkpoint, the HF export (`convert mcore-to-hf`'s function, verified by logits) plus the
model card, published as OUT/<release name>/ by one rename; then, with `--push`, the upload (`release/push.py`).

    cptkit release runs/swallowcode_exp1                       # latest checkpoint -> runs/swallowcode_exp1/release/
    cptkit release runs/swallowcode_exp1 --every-eval out/     # every evaluated checkpoint
    cptkit release runs/swallowcode_exp1 --iteration 12500 --push my-org --dry-run

A folder that is already released (it has config.json) is not exported again: its README.md is rewritten, so a
rerun after more checkpoints were evaluated brings the evaluation table up to date.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from cptkit.errors import UserError
from cptkit.release.card import card_context, render_card, template_path
from cptkit.release.name import render_name, template_variables
from cptkit.release.records import RunRecord, base_model
from cptkit.util.atomic import write_text


@dataclass
class Planned:
    iteration: int
    name: str
    folder: Path
    repo_id: str | None = None
    revision: str | None = None
    files: list[str] | None = None  # what a dry run would write

    @property
    def exported(self) -> bool:
        return (self.folder / "config.json").is_file()


def name_variables(run: RunRecord, iteration: int, recipe=None) -> dict:
    recipe = recipe or run.recipe
    tokens = run.state(iteration).get("consumed_tokens")
    return template_variables(recipe, iteration, base_model=base_model(run, iteration, recipe), tokens=tokens)


def choose_iterations(run: RunRecord, iteration: int | None, every_eval: bool) -> list[int]:
    if every_eval:
        done = run.evaluated_iterations()
        if not done:
            raise UserError(
                "no evaluated checkpoint (eval/iter_*/SUITE.json) for --every-eval; run `cptkit eval RUN_DIR "
                "--suite ...` first, or pass --iteration N",
                file=str(run.run_dir),
            )
        return done
    if iteration is None:
        return [run.iterations[-1]]
    if iteration not in run.iterations:
        saved = ", ".join(map(str, run.iterations[-8:]))
        raise UserError(f"no saved checkpoint at iteration {iteration} (saved: ...{saved})", field="--iteration")
    return [iteration]


def plan(
    run: RunRecord, iterations: list[int], out: Path, *, push: str | None, revision_per_checkpoint: bool
) -> list[Planned]:
    """Names, folders and (with --push) repository and branch of each checkpoint, all checked before any work."""
    template = run.recipe.release.name
    planned = [
        Planned(i, n, out / n)
        for i in iterations
        for n in [render_name(template, name_variables(run, i), file=run.recipe_file)]
    ]
    seen: dict[str, int] = {}
    for p in planned:
        if p.name in seen:
            raise UserError(
                f"iterations {seen[p.name]} and {p.iteration} get the same release name {p.name!r}: put "
                "{iteration} in the template",
                file=run.recipe_file,
                field="release.name",
            )
        seen[p.name] = p.iteration
    if push is not None:
        _layout(planned, push, revision_per_checkpoint)
    return planned


def _layout(planned: list[Planned], push: str, revision_per_checkpoint: bool) -> None:
    """Repository and branch of each release: `release/push.py`'s plan_uploads is the one owner of the layouts."""
    from cptkit.release.push import plan_uploads

    layout = "revision-per-checkpoint" if revision_per_checkpoint else "repo-per-checkpoint"
    by_folder = {folder: (repo_id, revision) for folder, repo_id, revision in plan_uploads(
        [p.folder for p in planned], push, layout)}  # fmt: skip
    for p in planned:
        p.repo_id, p.revision = by_folder[p.folder]


def card_for(run: RunRecord, p: Planned) -> str:
    context = card_context(run, p.iteration, name=p.name, repo_id=p.repo_id, revision=p.revision)
    return render_card(context, template_path(run.recipe))


def export(run: RunRecord, p: Planned, card: str, *, dtype, verify: bool, verify_tolerance: float, log=print) -> None:
    """The export and the card under a temporary sibling name, renamed to OUT/<name> when both are complete."""
    from cptkit.convert.mcore_to_hf import convert_mcore_to_hf

    p.folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.folder.parent / f".{p.name}.release-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        convert_mcore_to_hf(
            run.run_dir,
            tmp,
            iteration=p.iteration,
            dtype=dtype,
            verify=verify,
            verify_tolerance=verify_tolerance,
            log=log,
        )
        write_text(tmp / "README.md", card)
        if p.folder.exists():
            if any(p.folder.iterdir()):
                raise UserError(
                    "exists and is not an empty release folder; delete it or choose OUT", file=str(p.folder)
                )
            p.folder.rmdir()
        os.replace(tmp, p.folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def license_warning(run: RunRecord, p: Planned) -> str | None:
    """The Llama 3.x licenses ask that a distributed derivative's name begin with "Llama"."""
    from cptkit.release.card import license_for

    lic = license_for(base_model(run, p.iteration), run.recipe.release.license)
    if lic and lic["id"].startswith("llama") and not p.name.startswith("Llama"):
        return f"{lic['name']}: a derived model's name should begin with 'Llama' ({p.name!r} does not)"
    return None
