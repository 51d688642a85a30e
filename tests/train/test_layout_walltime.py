"""`cptkit plan RECIPE --cluster PROFILE`: the run's duration at an assumed MFU, and `--chain N` when one job of the
profile's walltime cannot finish it (TSUBAME's pay-per-use maximum is 24 h; SwallowCode exp1 is 12,500 iterations)."""

from __future__ import annotations

import pytest

from cptkit.cli import main
from cptkit.train.plan import estimate_walltime, make_plan
from cptkit.train.recipe import load_recipe
from tests.launch.launchtest_util import ROOT, SITE_ENV, UNSET


@pytest.fixture
def site(monkeypatch):
    for k, v in SITE_ENV.items():
        monkeypatch.setenv(k, v)
    for k in UNSET:
        monkeypatch.delenv(k, raising=False)


def exp1():
    return make_plan(load_recipe(ROOT / "recipes" / "swallowcode_exp1.yaml"))


def test_time_at_the_nemo_anchor_is_its_tokens_per_second():
    """At 59% MFU on H100 the plan's FLOPs give NeMo 24.09's ~10.2k tokens/s/GPU for Llama-3.1-8B at seq 8192."""
    plan = exp1()
    est = estimate_walltime(plan, 24 * 3600, mfu=0.59)
    tokens_per_gpu_s = plan.tokens_per_iteration / est.seconds_per_iteration / plan.world_size
    assert 9_500 < tokens_per_gpu_s < 10_800, tokens_per_gpu_s


def test_exp1_on_tsubame_needs_a_chain(site, capsys):
    assert main(["plan", "recipes/swallowcode_exp1.yaml", "--cluster", "launch/tsubame4.yaml"]) == 0
    out = capsys.readouterr().out
    assert "one 24:00:00 job trains 23.6 h -> 2 job(s)" in out
    assert "warning: the run needs about 33.3 h at 40% MFU" in out and "--chain 2" in out
    # Not blind: at the anchor's MFU the same run fits one job, and no warning is printed.
    assert main(["plan", "recipes/swallowcode_exp1.yaml", "--cluster", "launch/tsubame4.yaml", "--mfu", "0.59"]) == 0
    out = capsys.readouterr().out
    assert "-> 1 job(s)" in out and "warning:" not in out


def test_jobs_follow_walltime_and_lead():
    plan = exp1()
    one = estimate_walltime(plan, 168 * 3600)
    assert one.jobs == 1 and one.warning("168:00:00", "abci3") is None
    short = estimate_walltime(plan, 6 * 3600, lead_s=600)
    assert short.jobs == -(-short.run_seconds // (6 * 3600 - 600 - 900))
    assert f"--chain {short.jobs}" in short.warning("06:00:00", "x")


def test_bad_mfu_and_walltime_are_one_line_errors(site, capsys):
    assert main(["plan", "recipes/swallowcode_exp1.yaml", "--cluster", "launch/tsubame4.yaml", "--mfu", "1.5"]) == 2
    assert "--mfu: MFU must be in (0, 1]" in capsys.readouterr().err
    assert main(["plan", "recipes/swallowcode_exp1.yaml", "--cluster", "launch/tsubame4.yaml", "--walltime", "1d"]) == 2
    assert "--walltime" in capsys.readouterr().err
