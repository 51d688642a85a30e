#!/usr/bin/env python3
"""A stand-in for `cptkit` inside job scripts: emulates the trainer's contract without torch.

`fake_cptkit.py train RECIPE [key=value ...]` reads the recipe (run_dir, train_iters, checkpoint interval) and runs
"iterations" of a deterministic loss recurrence whose state lives in the checkpoint, so a resumed run ends on the same
loss as an uninterrupted one only if it resumed from the right checkpoint. Like `cptkit train` it saves on SIGUSR1 /
SIGTERM and exits 0, writes `checkpoints/latest_checkpointed_iteration.txt` after each save and `COMPLETED` at the
end. Each rank records the distributed environment it saw in `RUN_DIR/env/rank-N.json`.
Other subcommands (tokenize, convert, eval) record their argv in `$FAKE_CPTKIT_LOG`.

Env: FAKE_SECONDS_PER_ITER (default 0.05).
"""

import json
import os
import signal
import sys
import time
from pathlib import Path


def rank_env() -> dict:
    keys = [
        "RANK",
        "LOCAL_RANK",
        "WORLD_SIZE",
        "MASTER_ADDR",
        "MASTER_PORT",
        "OMPI_COMM_WORLD_RANK",
        "OMPI_COMM_WORLD_LOCAL_RANK",
        "OMPI_COMM_WORLD_SIZE",
    ]
    return {k: os.environ.get(k) for k in keys}


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def train(recipe_path: str, overrides: list[str]) -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))
    from cptkit.train.recipe import load_recipe

    r = load_recipe(recipe_path, overrides)
    run_dir, iters, every = Path(r.run_dir), r.training.train_iters, r.checkpoint.interval_iters
    env = rank_env()
    rank = int(env["RANK"] or env["OMPI_COMM_WORLD_RANK"] or 0)
    write(run_dir / "env" / f"rank-{rank}.json", json.dumps(env))
    (run_dir / "logs").mkdir(parents=True, exist_ok=True)
    stop = {"flag": False}
    for sig in (signal.SIGUSR1, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.__setitem__("flag", True))
    ckpt = run_dir / "checkpoints"
    latest = ckpt / "latest_checkpointed_iteration.txt"
    it, loss = 0, 10.0
    if latest.exists():
        it = int(latest.read_text())
        loss = json.loads((ckpt / f"iter_{it:07d}" / "state.json").read_text())["loss"]

    def save() -> None:
        if rank == 0:
            write(ckpt / f"iter_{it:07d}" / "state.json", json.dumps({"loss": loss}))
            write(latest, str(it))

    delay = float(os.environ.get("FAKE_SECONDS_PER_ITER", "0.05"))
    while it < iters:
        if stop["flag"]:
            save()
            if rank == 0:  # the ranks of the stand-in are not in lockstep; rank 0's checkpoint is the one
                print(f"fake trainer: saved iteration {it} on signal", flush=True)
            return 0
        time.sleep(delay)
        it += 1
        loss = 0.9 * loss + 0.37 * ((it * 7919) % 13) / 13  # depends on the whole history
        if rank == 0:
            with open(run_dir / "logs" / "metrics.jsonl", "a") as f:
                f.write(json.dumps({"iteration": it, "loss": loss}) + "\n")
        if it % every == 0 or it == iters:
            save()
    if rank == 0:
        write(run_dir / "COMPLETED", json.dumps({"iteration": it, "loss": loss}))
    print(f"fake trainer: done at iteration {it}, loss {loss!r}", flush=True)
    return 0


def main(argv: list[str]) -> int:
    if argv and argv[0] == "train":
        return train(argv[1], argv[2:])
    log = os.environ.get("FAKE_CPTKIT_LOG")
    if log:
        with open(log, "a") as f:
            f.write(json.dumps({"argv": argv, "env": rank_env()}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
