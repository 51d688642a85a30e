"""Shared constants of the launcher tests: profiles, and the site variables every shipped profile needs."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROFILES = sorted(p.stem for p in (ROOT / "launch").glob("*.yaml"))
SITE_ENV = {
    "TSUBAME_GROUP": "tga-example",
    "ABCI_GROUP": "gab00000",
    "CPTKIT_VENV": "/home/user/cptkit/.venv",
    "CPTKIT_IMAGE": "/fsx/images/cptkit.sqsh",
    "SLURM_PARTITION": "gpu",
    "CPTKIT_RUNS": "/scratch/cptkit/runs",
    "CPTKIT_CHECKPOINTS": "/scratch/cptkit/checkpoints",
    "RAW_ROOT": "/scratch/raw",  # data_curation/*.yaml
    "CURATE_ROOT": "/scratch/curated",
    "MODEL_ROOT": "/scratch/models",
}
# Variables a profile may default; unset so renders do not depend on the machine.
UNSET = [
    "HYPERPOD_PARTITION",
    "CPTKIT_LOCAL_GPUS",
    "CPTKIT_BIN",
    "CPTKIT_TEST_GPUS_PER_NODE",
    "CPTKIT_TEST_MASTER_PORT",
    "HYPERPOD_GRES",
    "CPTKIT_ALLOW_SOCKET",
    "TSUBAME_MODULES",
]
