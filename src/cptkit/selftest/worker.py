"""One rank of `cptkit selftest`: set up the process group and the context, run the checks, report on rank 0."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch


def _local_world(world: int) -> int:
    for name in ("LOCAL_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_SIZE", "SLURM_NTASKS_PER_NODE"):
        value = os.environ.get(name, "").split("(")[0]  # SLURM writes e.g. "8(x2)"
        if value.isdigit():
            return min(int(value), world)
    return min(torch.cuda.device_count() or world, world)


def run_worker(args: argparse.Namespace) -> int:
    from cptkit.backend.dist import destroy, init_distributed
    from cptkit.selftest import checks, report

    info = init_distributed(backend="gloo" if args.cpu_dry else None, timeout_minutes=15)
    device = torch.device("cpu") if args.cpu_dry else torch.device("cuda", torch.cuda.current_device())
    plan = None
    if args.recipe:
        from cptkit.train.plan import make_plan
        from cptkit.train.recipe import load_recipe

        plan = make_plan(load_recipe(args.recipe))
    ctx = checks.Ctx(
        rank=info.rank,
        world=info.world_size,
        local_world=_local_world(info.world_size),
        device=device,
        cpu_dry=args.cpu_dry,
        workdir=Path(args.workdir).absolute(),
        min_busbw_intra=args.min_busbw_intra,
        min_busbw_inter=args.min_busbw_inter,
        allreduce_bytes=(4 if args.cpu_dry else args.allreduce_mib) * 2**20,
    )
    if plan is not None:
        p, t = plan.recipe.parallel, plan.recipe.training
        ctx.plan, ctx.tp, ctx.seq_length, ctx.micro_batch = (
            plan,
            p.tensor_model_parallel_size,
            t.seq_length,
            t.micro_batch_size,
        )
    t0 = time.time()
    rows = checks.run_all(ctx, args.only.split(",") if args.only else None)
    code = report.exit_code(rows)
    if info.rank == 0:
        print(report.table(rows), flush=True)
        meta = {
            "world_size": ctx.world,
            "nodes": ctx.nodes,
            "gpus_per_node": ctx.local_world,
            "cpu_dry": ctx.cpu_dry,
            "recipe": args.recipe,
            "started_unix": t0,
            "seconds": round(time.time() - t0, 1),
            "versions": ctx.meta.get("versions"),
        }
        out = Path(args.json or ctx.workdir / "selftest.json")
        report.write_json(out, rows, meta)
        print(f"wrote {out}", flush=True)
    verdict = torch.tensor([code], device=device)
    torch.distributed.broadcast(verdict, 0)  # every rank exits as rank 0 does: the launcher sees one answer
    destroy()
    return int(verdict.item())
