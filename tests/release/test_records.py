"""The run records behind the card's hardware and software sections (logs/jobs_env.jsonl), without a run. < 1 s.

pytest tests/release/test_records.py -q
"""

from __future__ import annotations

import json

import pytest

from cptkit.release import records
from cptkit.train.jobs_env import JOBS_ENV, job_env_record, read_jobs_env


def job(start: int, torch: str = "2.6.0", te: bool = True, cluster: str = "tsubame4") -> dict:
    return {
        "start_iteration": start,
        "cluster": cluster,
        "world_size": 64,
        "nodes": 16,
        "gpu": {"model": "NVIDIA H100", "count": 64, "memory_gib": 93.1},
        "transformer_engine_used": te,
        "versions": {"cptkit": "0.1.0", "torch": torch, "megatron_core": "0.16.1", "transformer_engine": "2.1.0"},
    }


def test_jobs_env_lines_are_read_back_and_a_torn_line_is_skipped(tmp_path):
    path = tmp_path / JOBS_ENV
    path.parent.mkdir()
    path.write_text(json.dumps(job(0)) + "\n" + json.dumps(job(500))[:30])  # a crash mid-write
    assert [j["start_iteration"] for j in read_jobs_env(tmp_path)] == [0]
    assert read_jobs_env(tmp_path / "nothing") == []


def test_hardware_and_software_of_the_jobs_before_a_checkpoint():
    run = records.RunRecord(None, None, "", [500, 1000], jobs=[job(0), job(500, torch="2.7.0")])
    assert [j["start_iteration"] for j in records.jobs_until(run, 500)] == [0]  # the second job started at 500
    hw = records.hardware(records.jobs_until(run, 1000))
    assert hw == {"setups": ["64 × NVIDIA H100 (93.1 GiB) on 16 node(s)"], "clusters": ["tsubame4"], "jobs": 2}
    sw = {p["name"]: p["version"] for p in records.software(records.jobs_until(run, 1000))}
    assert sw["PyTorch"] == "2.6.0 → 2.7.0" and sw["Transformer Engine"] == "2.1.0"
    sw = {p["name"]: p["version"] for p in records.software([job(0, te=False)])}
    assert "Transformer Engine" not in sw  # installed but not used: not claimed
    assert records.hardware([]) is None and records.software([]) is None


def test_job_env_record_reads_the_scheduler_and_cluster(monkeypatch):
    env = {"CPTKIT_CLUSTER": "abci3", "PBS_JOBID": "123.pbs"}
    rec = job_env_record(7, env=env)
    assert rec["cluster"] == "abci3" and rec["job_id"] == "123.pbs" and rec["start_iteration"] == 7
    assert rec["world_size"] == 1 and rec["versions"]["torch"] and rec["versions"]["megatron_core"]
    assert job_env_record(0, env={"CPTKIT_JOB_ID": "9", "SLURM_JOB_ID": "8"})["job_id"] == "9"
    assert job_env_record(0, env={})["job_id"] is None and job_env_record(0, env={})["cluster"] is None


def _rank_record(rank: int, world: int) -> dict:
    import tempfile

    from cptkit.train.jobs_env import record_job_env

    with tempfile.TemporaryDirectory() as d:
        rec = record_job_env(d, 3, rank0=rank == 0)
        lines = read_jobs_env(d) if rank == 0 else None
    return {"record": {k: v for k, v in rec.items() if k != "time"}, "lines": lines}


@pytest.mark.slow  # two spawned gloo processes importing megatron-core
def test_every_rank_contributes_and_rank_0_writes_one_line():
    """Two gloo processes: the all-gather of hosts and GPUs, one line from rank 0 (~15 s)."""
    from cptkit.backend.spawn import run_spawned

    a, b = run_spawned(_rank_record, 2)
    assert a["record"] == b["record"] and a["record"]["world_size"] == 2 and a["record"]["nodes"] == 1
    assert a["record"]["gpu"] is None and a["record"]["start_iteration"] == 3
    assert len(a["lines"]) == 1 and a["lines"][0]["world_size"] == 2
