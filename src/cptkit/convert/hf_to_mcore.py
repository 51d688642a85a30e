"""HF safetensors model → megatron-core torch_dist checkpoint, streamed chunk by chunk.

Everything is checked first (`open_hf_model`): architecture, config against weights, shards, TP divisibility. Then
each chunk of each megatron-core tensor — cut as a TP=`tp` trainer would save it — is made from the HF rows it needs
only when the checkpoint writer reaches it, so memory holds one chunk (the largest is a TP slice of the embedding).
The output is written under a temporary sibling name (`.OUT.partial-PID`) and renamed into place when complete, so
a crash never leaves something that looks like a checkpoint. The writer holds `.OUT.lock` (`cptkit.util.lock`): a
second conversion into the same OUT stops at once, and the next run removes the partial directories of writers that
died (killed, pre-empted) before it starts.

On CPU:  cptkit convert hf-to-mcore ./Llama-3.1-8B ./ckpt/llama31-8b-mcore --tp 2
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch

from cptkit.convert.hf_checkpoint import HFModel, asset_files, open_hf_model
from cptkit.convert.layout import chunks, mcore_shape
from cptkit.convert.mcore_io import LazyChunk, save_lazy, sharded_object_key
from cptkit.convert.safetensors_io import read_tensor
from cptkit.errors import UserError

ASSETS_DIR = "hf_assets"


def partial_dir(out_dir: Path) -> Path:
    return out_dir.parent / f".{out_dir.name}.partial-{os.getpid()}"


def remove_stale_partials(out_dir: Path, log=print) -> list[Path]:
    """Remove `.OUT.partial-PID` directories of dead writers. Call while holding `output_lock(out_dir)`: then no
    other hf-to-mcore is writing OUT. A PID alive on this host is left alone (another tool's writer there)."""
    removed = []
    for p in out_dir.parent.glob(f".{out_dir.name}.partial-*"):
        pid = p.name.rsplit("-", 1)[1]
        if pid.isdigit() and int(pid) != os.getpid() and _alive(int(pid)):
            continue
        shutil.rmtree(p, ignore_errors=True)
        if not p.exists():
            removed.append(p)
            log(f"removed {p} (left by a conversion that did not finish)")
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, another user's
        return True
    return True


def check_output_dir(out_dir: Path) -> None:
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise UserError("output exists and is not empty; choose a new directory or delete it", file=str(out_dir))


def finish_output_dir(tmp: Path, out_dir: Path) -> None:
    """Atomically publish `tmp` as `out_dir` (rename replaces an empty directory)."""
    from cptkit.util.atomic import fsync_dir

    os.replace(tmp, out_dir)
    fsync_dir(out_dir.parent)


def output_dtype(model: HFModel, dtype: torch.dtype | None) -> torch.dtype:
    dtypes = {model.tensors[n].dtype for n in model.expected}
    if dtype is None and len(dtypes) > 1:
        raise UserError(f"weights mix dtypes {sorted(map(str, dtypes))}; choose one with --dtype", file=str(model.dir))
    return dtype or dtypes.pop()


def lazy_chunks(model: HFModel, tp: int, dtype: torch.dtype) -> tuple[list[LazyChunk], dict[str, Any]]:
    """Every chunk of the checkpoint, plus megatron-core's per-layer `_extra_state` objects."""
    cfg, layers = model.cfg, model.cfg.num_layers
    out: list[LazyChunk] = []
    objects: dict[str, Any] = {}
    w_kind = {id(model.tensors[n]): w.kind for w, layer in model.plan() for n in model.layer_names(w, layer)}
    # Row-parallel chunks (linear_proj, linear_fc2) are column slices of the whole HF tensor; a small cache of whole
    # tensors saves reading each one `tp` times (DCP's writer threads ask for a tensor's chunks close together).
    cache: OrderedDict[int, torch.Tensor] = OrderedDict()
    lock = threading.Lock()

    for w, layer in model.plan():
        infos = [model.tensors[n] for n in model.layer_names(w, layer)]

        def read_rows(j: int, start: int, stop: int, infos=infos) -> torch.Tensor:
            info = infos[j]
            if not (start == 0 and stop == info.shape[0] and tp > 1 and w_kind[id(info)] == "row"):
                return read_tensor(info, (start, stop)).to(dtype)
            with lock:
                if id(info) not in cache:
                    cache[id(info)] = read_tensor(info).to(dtype)
                    while len(cache) > 4:
                        cache.popitem(last=False)
                return cache[id(info)]

        shape = mcore_shape(w, cfg)
        stacked = layer is not None  # layer tensors get megatron's leading global-layer axis
        global_shape = (layers, *shape) if stacked else shape
        for c in chunks(w, cfg, tp, read_rows):
            make = (lambda c=c: c.make().unsqueeze(0)) if stacked else c.make
            offsets = (layer, *c.offsets) if stacked else c.offsets
            sizes = (1, *c.sizes) if stacked else c.sizes
            out.append(LazyChunk(w.mcore, global_shape, offsets, sizes, dtype, make))
        if w.extra_state and stacked:
            module = w.mcore.rsplit(".", 1)[0]
            objects[sharded_object_key(f"{module}._extra_state", (layer,), (layers,))] = None
    return out, objects


def describe(model: HFModel, tp: int, dtype: torch.dtype, out_dir: Path) -> str:
    cfg = model.cfg
    fields = cfg.model_dump(mode="json", exclude={"hf_config"})
    lines = [f"hf-to-mcore: {model.dir} -> {out_dir}", f"  spec: {model.spec.name}   TP layout: {tp}   dtype: {dtype}"]
    lines += [f"  {k}: {v}" for k, v in fields.items()]
    n_bytes = sum(model.tensors[n].nbytes for n in model.expected) * dtype.itemsize
    n_bytes //= next(iter({model.tensors[n].dtype.itemsize for n in model.expected}))
    lines.append(f"  tensors: {len(model.expected)} HF -> {len(model.plan())} megatron-core, ~{n_bytes / 1e9:.2f} GB")
    lines.append(f"  assets to {ASSETS_DIR}/: {', '.join(p.name for p in asset_files(model.dir)) or '(none)'}")
    return "\n".join(lines)


def convert_hf_to_mcore(
    hf_dir: str | Path,
    out_dir: str | Path,
    *,
    tp: int = 1,
    divisible_by: int = 128,
    dtype: torch.dtype | None = None,
    extra_specs: list[str | Path] = (),
    dry_run: bool = False,
    log=print,
) -> dict[str, Any]:
    """Convert; returns a summary. `tp` sets the chunk layout and the vocabulary padding (divisible_by x tp)."""
    if tp < 1 or divisible_by < 1:
        raise UserError("--tp and --make-vocab-size-divisible-by must be positive")
    out_dir = Path(out_dir)
    model = open_hf_model(hf_dir, tp=tp, divisible_by=divisible_by, extra_specs=extra_specs)
    dtype = output_dtype(model, dtype)
    check_output_dir(out_dir)
    log(describe(model, tp, dtype, out_dir))
    if dry_run:
        return {"dry_run": True, "model_config": model.cfg}

    from cptkit.util.lock import output_lock

    t0 = time.perf_counter()
    with output_lock(out_dir, what=str(out_dir)):
        remove_stale_partials(out_dir, log)
        check_output_dir(out_dir)  # again, under the lock: another run may have finished it meanwhile
        tmp = partial_dir(out_dir)
        try:
            tmp.mkdir(parents=True)
            assets = tmp / ASSETS_DIR
            assets.mkdir()
            for p in asset_files(model.dir):
                shutil.copy2(p, assets / p.name)
            lazy, objects = lazy_chunks(model, tp, dtype)
            save_lazy(tmp, lazy, objects)
            model.cfg.save(tmp)  # last: a directory with cptkit_model.json is a complete checkpoint
            finish_output_dir(tmp, out_dir)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    seconds = time.perf_counter() - t0
    log(f"wrote {out_dir} ({len(lazy)} chunks) in {seconds:.1f} s")
    return {"out_dir": str(out_dir), "chunks": len(lazy), "seconds": seconds, "model_config": model.cfg}
