"""Helpers to run rendered job scripts outside a scheduler: a recipe for the stand-in trainer, stub commands."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from launchtest_util import ROOT

FAKE = ROOT / "tests" / "launch" / "fake_cptkit.py"


def write_recipe(tmp: Path, run_dir: Path, **training) -> Path:
    t = {"train_iters": 30, **training}
    lines = "\n".join(f"  {k}: {v}" for k, v in t.items())
    path = tmp / "recipe.yaml"
    path.write_text(
        f"inherit: {ROOT / 'recipes' / 'tiny_cpu.yaml'}\nname: fake\nrun_dir: {run_dir}\ntraining:\n{lines}\n"
        "checkpoint:\n  interval_iters: 10\n"
    )
    return path


def stub(bin_dir: Path, name: str, body: str) -> None:
    bin_dir.mkdir(parents=True, exist_ok=True)
    (bin_dir / name).write_text("#!/bin/bash\n" + body)
    (bin_dir / name).chmod(0o755)


def cptkit_stub(bin_dir: Path) -> None:
    """`cptkit` on PATH that runs the stand-in trainer."""
    stub(bin_dir, "cptkit", f'exec {sys.executable} {FAKE} "$@"\n')


def uninterrupted_loss(tmp: Path, **training) -> float:
    run = tmp / "reference"
    (tmp / "ref").mkdir(exist_ok=True)
    recipe = write_recipe(tmp / "ref", run, **training)
    env = {**os.environ, "FAKE_SECONDS_PER_ITER": "0"}
    subprocess.run([sys.executable, str(FAKE), "train", str(recipe)], check=True, env=env, capture_output=True)
    return json.loads((run / "COMPLETED").read_text())["loss"]


def wait_for_checkpoint(run_dir: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    latest = run_dir / "checkpoints" / "latest_checkpointed_iteration.txt"
    deadline = time.monotonic() + timeout
    while not latest.exists():
        assert proc.poll() is None, f"job ended before its first checkpoint: {proc.communicate()}"
        assert time.monotonic() < deadline, "no checkpoint written"
        time.sleep(0.1)


def preempt(proc: subprocess.Popen, sig: int = signal.SIGUSR1) -> None:
    proc.send_signal(sig)
