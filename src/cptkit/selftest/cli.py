"""`cptkit selftest` (all checks, one table, JSON) and `cptkit selftest network` (the job-start network check).

    cptkit selftest --recipe recipes/swallowcode_exp1.yaml       # on a GPU node: every GPU, a few minutes
    cptkit selftest --cpu-dry --nproc 2                          # CPU/gloo, tiny shapes (what CI runs)
    CPTKIT_NET_EXPECT=efa cptkit selftest network

Started by hand it re-runs itself under torchrun with one process per local GPU; started by a launcher (srun,
mpirun, torchrun: RANK/OMPI_COMM_WORLD_RANK set) every process is one rank, across nodes. Exit 0 all passed, 1 a
check failed, 2 no GPU here (without --cpu-dry) or bad input. Import is argparse-only (`cptkit --help` stays fast).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "selftest",
        help="preflight a GPU node: versions, TE vs local, TP, bf16, dist optimizer resume, NCCL bandwidth, MFU",
        description="Run the GPU preflight checks, print a table, write JSON; exit 1 on any failure, 2 without a GPU. "
        "`cptkit selftest network` only checks which network NCCL will use (EFA/IB plugin or a socket fallback).",
    )
    p.add_argument("what", nargs="?", choices=["all", "network"], default="all", help="all checks (default), network")
    p.add_argument("--recipe", help="recipe whose seq length, micro batch, TP and run the throughput check projects")
    p.add_argument("--json", help="write the results here (default: WORKDIR/selftest.json)")
    p.add_argument("--workdir", default="runs/selftest", help="scratch checkpoints and the JSON (shared across nodes)")
    p.add_argument("--cpu-dry", action="store_true", help="run on CPU/gloo with tiny shapes; GPU-only checks SKIP")
    p.add_argument("--nproc", type=int, help="processes when started by hand (default: GPUs here; --cpu-dry: 2)")
    p.add_argument("--only", help="comma-separated check names (versions, allreduce, te_vs_local, ...)")
    p.add_argument("--min-busbw-intra", type=float, default=100.0, help="all-reduce busbw floor in a node, GB/s")
    p.add_argument("--min-busbw-inter", type=float, default=10.0, help="all-reduce busbw floor across nodes, GB/s")
    p.add_argument("--allreduce-mib", type=int, default=256, help="all-reduce message size, MiB (--cpu-dry: 4)")
    p.set_defaults(func=_main)


def _launched() -> bool:
    from cptkit.backend.dist import rank_info_from_env

    return rank_info_from_env()[2] > 1 or "RANK" in os.environ


def _main(args: argparse.Namespace) -> int:
    from cptkit.errors import UserError

    if args.what == "network":
        from cptkit.selftest.network import run

        return run()
    if args.only:
        from cptkit.selftest.checks import CHECKS

        unknown = sorted(set(args.only.split(",")) - set(CHECKS))
        if unknown:
            raise UserError(f"unknown check(s) {', '.join(unknown)}; known: {', '.join(CHECKS)}", field="--only")
    if args.nproc is not None and args.nproc < 1:
        raise UserError(f"must be at least 1, got {args.nproc}", field="--nproc")
    import torch

    if not args.cpu_dry and not torch.cuda.is_available():
        print(
            "cptkit selftest: no GPU on this machine (torch.cuda.is_available() is False, torch "
            f"{torch.__version__}, CUDA {torch.version.cuda}); run it on a GPU node, or `cptkit selftest --cpu-dry` "
            "for the CPU/gloo code paths",
            file=sys.stderr,
        )
        return 2
    if args.recipe:  # bad input fails here, before any process starts
        from cptkit.train.plan import make_plan
        from cptkit.train.recipe import load_recipe

        make_plan(load_recipe(args.recipe))
    if _launched():
        from cptkit.selftest.worker import run_worker

        return run_worker(args)
    nproc = args.nproc or (2 if args.cpu_dry else torch.cuda.device_count())
    return subprocess.run(_torchrun(args, nproc), check=False).returncode


def _torchrun(args: argparse.Namespace, nproc: int) -> list[str]:
    """This command again under torchrun, one process per GPU. The options are rebuilt rather than copied from
    sys.argv: torchrun's parser would take an abbreviation like `--nproc` for its own `--nproc-per-node`."""
    child = ["selftest", "--workdir", args.workdir]
    for flag, value in (("--recipe", args.recipe), ("--json", args.json), ("--only", args.only)):
        if value:
            child += [flag, value]
    child += ["--min-busbw-intra", str(args.min_busbw_intra), "--min-busbw-inter", str(args.min_busbw_inter)]
    child += ["--allreduce-mib", str(args.allreduce_mib)] + (["--cpu-dry"] if args.cpu_dry else [])
    run = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"]
    return [*run, "-m", "cptkit.cli", *child]
