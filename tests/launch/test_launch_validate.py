"""Validation before anything is submitted: each mistake is one line naming the file and field."""

from __future__ import annotations

from pathlib import Path

import pytest
from launchtest_util import ROOT

from cptkit.cli import main
from cptkit.errors import UserError
from cptkit.launch.profile import load_profile
from cptkit.launch.validate import load_plan, resolve_nodes, validate_train

EXP1 = str(ROOT / "recipes" / "swallowcode_exp1.yaml")


def check(recipe_overrides: list[str], profile: str = "abci3", nodes: int | None = None, walltime: str = "24:00:00"):
    p = load_profile(ROOT / "launch" / f"{profile}.yaml")
    r = load_plan(EXP1, recipe_overrides)
    validate_train(r, p, resolve_nodes(r, p, nodes), walltime)


def test_valid_recipe_passes(site_env):
    check([])  # 64 GPUs = 8 ABCI nodes, TP2, GBS 512 / (2 x 32)
    check([], profile="tsubame4")  # 16 TSUBAME nodes


@pytest.mark.parametrize(
    ("overrides", "nodes", "walltime", "match"),
    [
        ([], 4, "24:00:00", r"parallel.num_gpus: 4 nodes × 8 GPUs per node = 32 GPUs, but the recipe trains on 64"),
        (
            ["parallel.num_gpus=60", "training.global_batch_size=480"],
            None,
            "24:00:00",
            r"60 GPUs is not a whole number of abci3 nodes",
        ),
        # The batch/parallel arithmetic is the Plan's (cptkit.train.plan), so launch says what `cptkit plan` says.
        (
            ["parallel.tensor_model_parallel_size=3"],
            None,
            "24:00:00",
            r"parallel.num_gpus: 64 GPUs is not a multiple of TP x PP x CP = 3",
        ),
        (
            ["training.global_batch_size=500"],
            None,
            "24:00:00",
            r"training.global_batch_size: 500 is not divisible by micro_batch_size x DP = 2 x 32",
        ),
        # ... including what the launcher's own copy never checked: KV heads vs TP, budget vs iterations.
        (
            ["parallel.tensor_model_parallel_size=16"],
            None,
            "24:00:00",
            r"parallel.tensor_model_parallel_size: 8 KV heads \(query groups\) are not divisible by TP 16",
        ),
        (
            ["training.train_tokens=1B"],
            None,
            "24:00:00",
            r"training.train_iters: 12500 iterations x 4,194,304 tokens disagrees with train_tokens",
        ),
        ([], None, "200:00:00", r"--walltime: walltime 200:00:00 exceeds abci3's limit 168:00:00"),
        ([], None, "1 day", r"walltime must be HH:MM:SS"),
        ([], None, "00:05:00", r"leaves no time to train before the checkpoint signal"),
    ],
)
def test_each_mistake_is_a_one_line_error(site_env, overrides, nodes, walltime, match):
    with pytest.raises(UserError, match=match) as e:
        check(overrides, nodes=nodes, walltime=walltime)
    assert "\n" not in e.value.one_line()


def test_unset_site_variable_names_profile_and_field(site_env, monkeypatch):
    monkeypatch.delenv("ABCI_GROUP")
    with pytest.raises(UserError) as e:
        load_profile(ROOT / "launch" / "abci3.yaml")
    assert e.value.one_line().startswith(
        f"{ROOT / 'launch' / 'abci3.yaml'}: site.group: environment variable ${{ABCI_GROUP}}"
    )


def test_profile_schema_errors(tmp_path: Path, site_env):
    base = (ROOT / "launch" / "slurm.yaml").read_text()
    cases = {
        "gpus_per_node: 8": ("gpus_per_node: 0", "gpus_per_node"),
        "kind: srun": ("kind: pdsh", "launcher.kind"),
        'max_walltime: "48:00:00"': ("max_walltime: 48h", "max_walltime"),
        "cpus_per_node: 96": ("cpus_per_node: 96\nno_such_key: 1", "no_such_key"),
    }
    for old, (new, field) in cases.items():
        path = tmp_path / "p.yaml"
        path.write_text(base.replace(old, new))
        with pytest.raises(UserError) as e:
            load_profile(path)
        assert e.value.field == field, e.value.one_line()
    path = tmp_path / "p.yaml"
    path.write_text(base.replace("--nodes={nodes}", "--nodes={node}"))
    with pytest.raises(UserError, match=r"resources.train: unknown placeholder \{node\}"):
        load_profile(path).directives("train", nodes=1, walltime="01:00:00", world_size=8)


def test_cli_error_is_one_line_exit_2(site_env, capsys):
    rc = main(["launch", "train", EXP1, "--cluster", str(ROOT / "launch" / "abci3.yaml"), "--nodes", "3", "--dry-run"])
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "3 nodes × 8 GPUs per node = 24 GPUs" in err
