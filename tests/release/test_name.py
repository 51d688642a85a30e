"""Release names: the default template gives the seeds' repository names, every shipped recipe gets a distinct
Hub-valid name, and bad templates are refused naming the recipe file and field. Torch-free, < 2 s.

    pytest tests/release/test_name.py -q
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cptkit.errors import UserError
from cptkit.release.name import DEFAULT_NAME_TEMPLATE, check_template, render_name, sci, template_variables
from cptkit.train.recipe import load_recipe

REPO = Path(__file__).resolve().parents[2]
RECIPES = sorted((REPO / "recipes").glob("*.yaml"))

# The repository names of seeds 000 and 001 (the checkpoint at iteration 12,500), character for character.
SEED_NAMES = {
    "swallowcode_exp1": "Llama-3.1-8B-code-ablation-exp1-LR2.5e-5-MINLR2.5E-6-WD0.1-iter0012500",
    "swallowmath_exp1": "Llama-3.1-8B-math-ablation-exp1-LR2.5e-5-WD0.1-iter0012500",
}


def name_of(recipe_path: Path, iteration: int = 12500, **overrides) -> str:
    recipe = load_recipe(recipe_path, [f"{k}={v}" for k, v in overrides.items()])
    variables = template_variables(recipe, iteration, base_model=recipe.release.base_model)
    return render_name(recipe.release.name, variables, file=str(recipe_path))


@pytest.mark.parametrize("recipe", sorted(SEED_NAMES))
def test_shipped_recipes_give_the_seeds_names(recipe):
    assert name_of(REPO / "recipes" / f"{recipe}.yaml") == SEED_NAMES[recipe]


def test_the_code_ablation_uses_the_schema_default_and_a_changed_setting_changes_the_name():
    recipe = load_recipe(REPO / "recipes" / "swallowcode_exp1.yaml")
    assert recipe.release.name == DEFAULT_NAME_TEMPLATE  # the default itself reproduces seed 000
    # not blind: the numbers come from the recipe, not from the template
    changed = name_of(REPO / "recipes" / "swallowcode_exp1.yaml", 2500, **{"optimizer.lr": "3.0e-5"})
    assert changed == "Llama-3.1-8B-code-ablation-exp1-LR3e-5-MINLR2.5E-6-WD0.1-iter0002500"


def test_every_shipped_recipe_gets_its_own_valid_name():
    names = {p.name: name_of(p) for p in RECIPES}
    assert len(set(names.values())) == len(names), names  # an inherited `ablation` would repeat a name
    assert all(len(n) <= 96 for n in names.values())


def test_sci_spelling():
    assert [sci(2.5e-5), sci(2.5e-6, upper=True), sci(3e-4), sci(1.25e-10), sci(0.1)] == [
        "2.5e-5",
        "2.5E-6",
        "3e-4",
        "1.25e-10",
        "1e-1",
    ]


@pytest.mark.parametrize(
    "template,error",
    [
        ("{model}-iter{iteration}", "unknown variable {model}"),
        ("{lr:zz}", "cannot format"),
        ("{}", "positional"),
        ("my model {iteration}", "Hub refuses"),
        ("a--b{iteration}", "Hub refuses"),
        ("{base_model}-{iteration}", "contains '/'"),
        ("x" * 97, "at most 96"),
    ],
)
def test_bad_templates_name_the_file_and_field(template, error):
    with pytest.raises(UserError) as e:
        load_recipe(REPO / "recipes" / "swallowcode_exp1.yaml", [f"release.name='{template}'"])
    line = e.value.one_line()
    assert "release.name" in line and "command line" in line and error in line, line
    with pytest.raises(ValueError):
        check_template(template)


def test_a_name_the_hub_refuses_at_release_time_names_the_field(tmp_path):
    recipe = load_recipe(REPO / "recipes" / "swallowcode_exp1.yaml", ["release.ablation=a" + "b" * 40])
    variables = template_variables(recipe, 12500, base_model="org/" + "M" * 40)
    with pytest.raises(UserError, match=r"release\.name.*at most 96"):
        render_name(recipe.release.name, variables, file="runs/x/recipe.resolved.yaml")
    no_base = template_variables(recipe, 12500, base_model=None)
    with pytest.raises(UserError, match=r"release\.base_model"):
        render_name(recipe.release.name, no_base, file="runs/x/recipe.resolved.yaml")
