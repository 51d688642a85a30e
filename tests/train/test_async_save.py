"""Async checkpoint save (`checkpoint.async_save`, Megatron-LM's --async-save) on CPU, in gloo ranks.

megatron-core's async path runs on a CPU-only torch: dist_checkpointing.save(async_sharded_save=True) returns its
AsyncRequest, AsyncCallsQueue forks the writer, and finalizes on every rank. test_real_async_save_signal_and_resume
runs it end to end through `cptkit train` (SIGTERM, resume, losses bit-for-bit as synchronous saves).

When the background write finishes is up to the OS, so the ordering tests fake the request at the Checkpointer's
boundary: the shards are written for real (synchronously) into `iter_N.partial/`, and a fake queue reports the
write as finished only after a chosen number of polls (or when the Checkpointer blocks on it), or kills the job
meanwhile. Everything after that - checksums, the rename, the pointer, retention, the order against the next save,
the signal stop and the end of the run - is the real Trainer and Checkpointer.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from train_helpers import cptkit_train, write_recipe
from train_helpers import losses as metrics

from cptkit.backend.spawn import run_spawned

GBS = 8  # tiny_cpu's global batch size


class FakeRequest:
    """Stands in for megatron-core's AsyncRequest: the finalize functions the Checkpointer adds."""

    def __init__(self, iteration: int, commit_early: bool):
        self.iteration, self.finalize_fns, self.commit_early = iteration, [], commit_early

    def add_finalize_fn(self, fn) -> None:
        if self.commit_early:  # a Checkpointer that commits before the write is done (what the checks must catch)
            fn()
        else:
            self.finalize_fns.append(fn)


class FakeQueue:
    """AsyncCallsQueue's interface. The write "finishes" after `delay` polls (None: only when waited for); `die_at`
    (iteration, poll) ends the whole job there, as a kill mid-save would. Rank 0 logs what it sees to `log`."""

    def __init__(self, ckpt_dir: Path, log: Path, delay: int | None, die_at: tuple[int, int] | None):
        self.dir, self.log, self.delay, self.die_at = ckpt_dir, log, delay, die_at
        self.active: FakeRequest | None = None
        self.polls = 0

    def _event(self, **event) -> None:
        import torch

        if torch.distributed.get_rank() == 0:
            with open(self.log, "a") as f:
                f.write(json.dumps(event) + "\n")

    def schedule_async_request(self, request: FakeRequest) -> None:
        assert self.active is None, "a second save was scheduled while one was in flight"
        self.active, self.polls = request, 0
        self._event(kind="schedule", iteration=request.iteration, **snapshot(self.dir, request.iteration))

    def maybe_finalize_async_calls(self, blocking: bool = False, no_dist: bool = False) -> list[int]:
        if self.active is None:
            return []
        self.polls += 1
        it = self.active.iteration
        if self.die_at == (it, self.polls):
            os._exit(3)  # every rank: the job is killed with the write in flight
        if not blocking and (self.delay is None or self.polls <= self.delay):
            self._event(kind="pending", iteration=it, **snapshot(self.dir, it))
            return []
        for fn in self.active.finalize_fns:
            fn()
        self.active = None
        self._event(kind="finalized", iteration=it, blocking=blocking, **snapshot(self.dir, it))
        return [it]

    def get_num_unfinalized_calls(self) -> int:
        return int(self.active is not None)

    def close(self, abort: bool = False) -> None:
        assert self.active is None, "closed with a save still in flight"


def snapshot(ckpt_dir: Path, iteration: int) -> dict:
    pointer = ckpt_dir / "latest_checkpointed_iteration.txt"
    partial = ckpt_dir / f"iter_{iteration:07d}.partial"
    return {
        "pointer": int(pointer.read_text()) if pointer.is_file() else None,
        "dirs": sorted(p.name for p in ckpt_dir.glob("iter_*")),
        "partial_manifest": (partial / "cptkit_checksums.json").is_file(),
    }


def _run(rank, world, recipe, overrides, delay, die_at, stop_at, commit_early, log):
    """One rank of a training run whose Checkpointer saves asynchronously through the fakes."""
    from cptkit.train import checkpoint as ck
    from cptkit.train import checkpointer as cp
    from cptkit.train.loop import train
    from cptkit.train.recipe import load_recipe

    r = load_recipe(recipe, overrides)
    real_write = ck.write_sharded

    def write(partial, iteration, *args, async_save=False, **kwargs):
        real_write(partial, iteration, *args, async_save=False, **kwargs)
        return FakeRequest(iteration, commit_early) if async_save else None

    ck.write_sharded = write
    cp.Checkpointer._new_queue = lambda self: FakeQueue(Path(r.checkpoint_dir), Path(log), delay, die_at)
    if stop_at is not None:  # a SIGTERM seen by every rank after iteration `stop_at`
        calls = {"n": 0}

        def agreed(self):
            calls["n"] += 1
            return calls["n"] >= stop_at

        cp.StopFlag.agreed = agreed
    return train(r)


def events(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def check_ordering(evs: list[dict]) -> None:
    """What a save in flight may never show: its pointer, its final directory, its manifest; and retention acting
    for it. Once finalized: all three, and the pointer names it."""
    committed: int | None = None
    for e in evs:
        it = e["iteration"]
        name = f"iter_{it:07d}"
        if e["kind"] in ("schedule", "pending"):
            assert e["pointer"] == committed, e
            assert name not in e["dirs"] and f"{name}.partial" in e["dirs"], e
            assert not e["partial_manifest"], e
            if committed is not None:
                assert f"iter_{committed:07d}" in e["dirs"], e  # retention waits for the new save
        else:
            assert e["pointer"] == it and name in e["dirs"] and f"{name}.partial" not in e["dirs"], e
            committed = it


def overrides_for(run_dir: Path, world: int, iters: int = 12, keep_last: int = 1) -> list[str]:
    return [
        f"run_dir={run_dir}",
        f"parallel.num_gpus={world}",
        f"training.train_iters={iters}",
        "checkpoint.interval_iters=4",
        f"checkpoint.keep_last={keep_last}",
        "checkpoint.keep_every_iters=null",
        "eval.interval_iters=null",
        "logging.tensorboard=false",
        "checkpoint.async_save=true",
    ]


@pytest.fixture
def recipe(tiny_data, tmp_path):
    return write_recipe(tmp_path / "async.yaml", tiny_data["mixture"], tmp_path / "unused")


@pytest.mark.slow  # spawned ranks / `cptkit train` runs: 20-65 s each on 2 cores
def test_async_save_commits_only_after_the_write_finished(recipe, tmp_path):
    """2 ranks (DP 2): saves at 4, 8, 12 finish two iterations later; each rank hashes its own shards then."""
    from cptkit.model.integrity import find_damage

    run, log = tmp_path / "run", tmp_path / "events.jsonl"
    overrides = overrides_for(run, 2, keep_last=2)
    assert run_spawned(_run, 2, recipe, overrides, 2, None, None, False, str(log)) == [0, 0]
    evs = events(log)
    check_ordering(evs)
    assert [(e["kind"], e["iteration"]) for e in evs] == [
        ("schedule", 4), ("pending", 4), ("pending", 4), ("finalized", 4),
        ("schedule", 8), ("pending", 8), ("pending", 8), ("finalized", 8),
        ("schedule", 12), ("finalized", 12),
    ]  # fmt: skip
    assert evs[-1]["blocking"] is True  # the last save is waited for before the run completes
    ckpts = run / "checkpoints"
    names = ["iter_0000008", "iter_0000012", "latest_checkpointed_iteration.txt"]
    assert sorted(p.name for p in ckpts.iterdir()) == names  # iter_4 removed only once 12 was committed
    assert find_damage(ckpts / "iter_0000012") is None and find_damage(ckpts / "iter_0000008") is None
    assert (run / "COMPLETED").is_file()
    # Save 8 was committed after iteration 11: its cptkit_state.json still holds the schedule of iteration 8.
    state = json.loads((ckpts / "iter_0000008" / "cptkit_state.json").read_text())
    assert state["iteration"] == 8 and state["opt_param_scheduler"]["num_steps"] == 8 * GBS


@pytest.mark.slow  # spawned ranks / `cptkit train` runs: 20-65 s each on 2 cores
def test_the_checks_catch_a_checkpointer_that_commits_before_the_write(recipe, tmp_path):
    run, log = tmp_path / "run", tmp_path / "events.jsonl"
    assert run_spawned(_run, 1, recipe, overrides_for(run, 1, iters=6), 2, None, None, True, str(log)) == [0]
    with pytest.raises(AssertionError):
        check_ordering(events(log))


@pytest.mark.slow  # spawned ranks / `cptkit train` runs: 20-65 s each on 2 cores
def test_pending_save_is_finished_before_the_next_save_and_before_the_signal_exit(recipe, tmp_path):
    """The writes never finish on their own: save 4 is completed when save 8 starts; SIGTERM after iteration 10
    saves 10 and the job exits 0 only once that save is committed."""
    run, log = tmp_path / "run", tmp_path / "events.jsonl"
    rc = run_spawned(_run, 1, recipe, overrides_for(run, 1, iters=20), None, None, 10, False, str(log))
    assert rc == [0]
    evs = events(log)
    check_ordering(evs)
    kinds = [(e["kind"], e["iteration"], e.get("blocking")) for e in evs if e["kind"] != "pending"]
    assert kinds == [
        ("schedule", 4, None), ("finalized", 4, True),
        ("schedule", 8, None), ("finalized", 8, True),
        ("schedule", 10, None), ("finalized", 10, True),
    ]  # fmt: skip
    assert sum(e["kind"] == "pending" for e in evs) == 5  # polls after iterations 5-7 and 9-10
    assert (run / "checkpoints" / "latest_checkpointed_iteration.txt").read_text() == "10\n"
    assert not (run / "COMPLETED").exists()


@pytest.mark.slow  # spawned ranks / `cptkit train` runs: 20-65 s each on 2 cores
def test_kill_mid_async_save_leaves_the_previous_checkpoint_latest(recipe, tmp_path):
    run, log = tmp_path / "run", tmp_path / "events.jsonl"
    with pytest.raises(RuntimeError, match="exited without a result"):
        run_spawned(_run, 1, recipe, overrides_for(run, 1), 1, (8, 2), None, False, str(log))
    ckpts = run / "checkpoints"
    assert (ckpts / "latest_checkpointed_iteration.txt").read_text() == "4\n"
    assert sorted(p.name for p in ckpts.glob("iter_*")) == ["iter_0000004", "iter_0000008.partial"]
    # The next job resumes from 4, clears the unfinished save and completes (real async saves this time).
    rc, out, err = cptkit_train(recipe, *overrides_for(run, 1))
    assert rc == 0, err[-3000:]
    assert "resumed from" in out and "iteration 4" in out
    assert sorted(p.name for p in ckpts.glob("iter_*")) == ["iter_0000012"]


@pytest.mark.slow  # spawned ranks / `cptkit train` runs: 20-65 s each on 2 cores
def test_real_async_save_signal_and_resume(recipe, tmp_path):
    """megatron-core's own async save: SIGTERM mid-run saves (in the background) and exits 0 with that save
    committed; the resumed run (async saves too) gives the synchronous run's losses bit for bit."""
    import signal
    import time

    from cptkit.model.integrity import find_damage

    sync, run = tmp_path / "sync", tmp_path / "async"
    common = ["training.train_iters=16", "checkpoint.interval_iters=4", "eval.interval_iters=null"]
    rc, out, err = cptkit_train(recipe, f"run_dir={sync}", *common)
    assert rc == 0, err[-3000:]
    assert "in the background" not in out

    proc = cptkit_train(recipe, f"run_dir={run}", "checkpoint.async_save=true", *common, wait=False)
    deadline = time.monotonic() + 240
    while not ((run / "logs" / "metrics.jsonl").is_file() and len(metrics(run)) >= 6):
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()[-3000:]
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-3000:]
    assert "in the background" in out and "stopped by signal" in out
    stopped = int((run / "checkpoints" / "latest_checkpointed_iteration.txt").read_text())
    assert 6 <= stopped < 16 and f"saved {run / 'checkpoints' / f'iter_{stopped:07d}'}" in out
    assert find_damage(run / "checkpoints" / f"iter_{stopped:07d}") is None  # manifest written after the write
    assert not list((run / "checkpoints").glob("*.partial"))

    rc, out, err = cptkit_train(recipe, f"run_dir={run}", "checkpoint.async_save=true", *common)
    assert rc == 0, err[-3000:]
    assert f"iteration {stopped}" in out and (run / "COMPLETED").is_file()
    resumed, base = metrics(run), metrics(sync)
    assert sorted(resumed) == list(range(1, 17))
    for i in range(1, 17):
        assert (resumed[i]["loss"], resumed[i]["grad_norm"]) == (base[i]["loss"], base[i]["grad_norm"]), i
    names = sorted(p.name for p in (run / "checkpoints").glob("iter_*"))
    assert names == sorted(p.name for p in (sync / "checkpoints").glob("iter_*"))  # same retention
    assert find_damage(run / "checkpoints" / "iter_0000016") is None


def test_cpu_runs_refuse_tp_comm_overlap(tmp_path, tiny_data):
    import torch

    from cptkit.errors import UserError
    from cptkit.train.recipe import load_recipe
    from cptkit.train.setup import check_cpu_settings
    from cptkit.train.tp_overlap import check_settings

    if torch.cuda.is_available():
        pytest.skip("CPU-only check")
    recipe = write_recipe(tmp_path / "r.yaml", tiny_data["mixture"], tmp_path / "run")
    check_cpu_settings(load_recipe(recipe))  # the tiny recipe itself is fine
    check_cpu_settings(load_recipe(recipe, ["checkpoint.async_save=true"]))  # megatron-core's async path runs on CPU
    with pytest.raises(UserError, match=r"parallel\.tp_comm_overlap=false"):
        check_cpu_settings(load_recipe(recipe, ["parallel.tp_comm_overlap=true"]))
    # Without sequence parallelism it is refused anywhere (megatron-core overlaps the sequence-parallel collectives).
    with pytest.raises(UserError, match=r"needs parallel\.sequence_parallel=true") as e:
        check_settings(load_recipe(recipe, ["parallel.tp_comm_overlap=true"]))
    assert e.value.one_line().count("\n") == 0
    sp = ["parallel.tp_comm_overlap=true", "parallel.sequence_parallel=true", "parallel.tensor_model_parallel_size=2"]
    with pytest.raises(UserError, match="bf16"):
        check_settings(load_recipe(recipe, sp))  # the tiny recipe is fp32
    with pytest.raises(UserError, match="CUDA GPU with Transformer Engine"):
        check_settings(load_recipe(recipe, [*sp, "training.precision=bf16"]))
    check_settings(load_recipe(recipe))  # off: nothing to check


def test_swallow_recipes_turn_both_on_and_megatron_core_gets_tp_comm_overlap():
    from train_helpers import REPO

    from cptkit.model.mcore import transformer_settings
    from cptkit.train.recipe import load_recipe
    from cptkit.train.tp_overlap import ub_shape

    for name in ("swallowcode_exp1", "swallowmath_exp1", "swallow_v05_210b"):
        r = load_recipe(REPO / "recipes" / f"{name}.yaml")
        assert r.checkpoint.async_save and r.parallel.tp_comm_overlap and r.parallel.sequence_parallel, name
        settings = transformer_settings(r)
        assert settings["tp_comm_overlap"] is True and settings["sequence_parallel"] is True
    tiny = load_recipe(REPO / "recipes" / "tiny_cpu.yaml")
    assert transformer_settings(tiny)["tp_comm_overlap"] is False and not tiny.checkpoint.async_save
    # TE's userbuffers hold one micro-batch's tokens on a CP rank: 2 x 8192 for exp1 at CP 1.
    assert ub_shape(load_recipe(REPO / "recipes" / "swallowcode_exp1.yaml"), 4096) == [2 * 8192, 4096]
