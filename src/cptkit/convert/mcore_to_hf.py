"""megatron-core torch_dist checkpoint (converted or trained, any TP/PP) → HF release folder, one layer at a time.

Input: a checkpoint directory, or a RUN_DIR (its `checkpoints/latest_checkpointed_iteration.txt`, or `--iteration`).
Output: `model-0000K-of-0000N.safetensors` (≤ 5 GB each) + `model.safetensors.index.json`, `config.json` (the base
model's, with dtype set), `generation_config.json` and the tokenizer files from the checkpoint's `hf_assets/`.
Vocabulary padding is removed; bf16 by default. Each layer's tensors are read (whatever chunks they were saved in),
unfused, cast and appended to the shard being written while the next layer is read, so memory holds about two
layers. The folder is written under
a temporary sibling name and renamed when complete.

Before anything is written, the checkpoint's checksums are verified; a tensor with inf/NaN values is refused. After
the folder is written (under its temporary name), `convert verify` runs on it by default: HF logits of the export
against megatron-core logits of the checkpoint with its weights rounded to the release dtype (fp32 math, both models
in memory: ~8 bytes per parameter twice; `--no-verify` skips it).

On CPU:  cptkit convert mcore-to-hf runs/cpt-code16 ./release/cpt-code16-hf --iteration 5000
"""

from __future__ import annotations

import json
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch

from cptkit.convert.fim_tokens import apply_fim_tokens, checkpoint_used_fim
from cptkit.convert.hf_to_mcore import ASSETS_DIR, check_output_dir, finish_output_dir, partial_dir
from cptkit.convert.layout import hf_shapes, mcore_shape, to_hf
from cptkit.convert.mcore_io import CheckpointReader
from cptkit.convert.safetensors_io import HF_SHARD_BYTES, PlannedTensor, ShardedWriter
from cptkit.convert.spec import ArchSpec, WeightSpec, load_specs
from cptkit.errors import UserError
from cptkit.model.config import ModelConfig
from cptkit.model.integrity import verify_checkpoint
from cptkit.model.keys import checkpoint_names

LATEST = "latest_checkpointed_iteration.txt"


def resolve_checkpoint(path: str | Path, iteration: int | None = None) -> Path:
    """A checkpoint directory from a checkpoint dir or a RUN_DIR (Megatron-LM's `iter_%07d` naming)."""
    path = Path(path)
    if not path.is_dir():
        raise UserError("no such directory", file=str(path))
    root = path / "checkpoints" if (path / "checkpoints").is_dir() else path
    iters = sorted(p.name for p in root.glob("iter_*") if p.is_dir())
    if not iters and not (root / LATEST).exists():
        if iteration is not None:
            raise UserError("--iteration needs a RUN_DIR or its checkpoints/ directory", file=str(path))
        return path
    if iteration is None:
        latest = root / LATEST
        if not latest.is_file():
            raise UserError(f"no {LATEST} (no completed save); pass --iteration", file=str(root))
        text = latest.read_text().strip()
        if not text.isdigit():
            raise UserError(f"expected an iteration number, found {text!r}", file=str(latest))
        iteration = int(text)
    ckpt = root / f"iter_{iteration:07d}"
    if not ckpt.is_dir():
        raise UserError(f"no checkpoint for iteration {iteration}; have: {', '.join(iters) or 'none'}", file=str(root))
    return ckpt


class McoreModel:
    """A checkpoint, its ModelConfig and spec, with every tensor's key resolved and its shape checked."""

    def __init__(self, ckpt: Path, extra_specs: list[str | Path] = ()):
        self.dir = ckpt
        self.cfg = ModelConfig.load(ckpt)
        specs = load_specs(extra_specs)
        if self.cfg.architecture not in specs:
            raise UserError(
                f"no mapping spec {self.cfg.architecture!r} (have: {', '.join(sorted(specs))})",
                file=str(ckpt / "cptkit_model.json"),
                field="architecture",
            )
        self.spec: ArchSpec = specs[self.cfg.architecture]
        self.reader = CheckpointReader(ckpt)
        self.plan = self.spec.plan(self.cfg)
        self.keys: dict[str, str] = {}
        for w, layer in self.plan:
            names = dict.fromkeys((*checkpoint_names(w.mcore), *w.aliases))  # cptkit.model.keys owns the names
            key = next((k for k in names if k in self.reader.tensors), None)
            if key is None:
                raise UserError(f"checkpoint has no tensor {w.mcore}", file=str(ckpt))
            expected = mcore_shape(w, self.cfg)
            if layer is not None:
                expected = (self.cfg.num_layers, *expected)
            if self.reader.shape(key) != expected:
                raise UserError(
                    f"checkpoint and cptkit_model.json disagree: {key} has shape {list(self.reader.shape(key))}, "
                    f"the config implies {list(expected)}",
                    file=str(ckpt),
                )
            self.keys[w.mcore] = key

    def read(self, items: list[tuple[WeightSpec, int | None]]) -> list[torch.Tensor]:
        """One pass over the files for several tensors (a layer's worth); layer tensors lose the layer axis."""
        boxes = []
        for w, layer in items:
            key = self.keys[w.mcore]
            shape = self.reader.shape(key)
            if layer is None:
                boxes.append((key, (0,) * len(shape), shape))
            else:
                boxes.append((key, (layer,) + (0,) * (len(shape) - 1), (1, *shape[1:])))
        out = self.reader.read(boxes)
        return [t[0] if layer is not None else t for t, (_, layer) in zip(out, items, strict=True)]


def hf_config_for_release(m: McoreModel, dtype: torch.dtype) -> dict[str, Any]:
    """The base model's config.json with the sizes of this checkpoint and the release dtype."""
    config = dict(m.cfg.hf_config)
    fields = m.cfg.model_dump()
    for name, keys in m.spec.config.items():
        key = keys if isinstance(keys, str) else keys[0]
        if name in ("rope_scaling", "rotary_base") or "." in key:
            continue  # RoPE is kept in whichever form (rope_scaling / rope_parameters) the base model used
        if key in config or name not in m.spec.defaults:
            config[key] = fields[name]
    if not config.get("architectures") and m.spec.hf_architectures:
        config["architectures"] = [m.spec.hf_architectures[0]]
    if "model_type" not in config and m.spec.hf_model_types:
        # A model trained from random init has no base config.json: name its type (and its RoPE base, which the
        # base model's file would have carried), so transformers can load the release.
        config["model_type"] = m.spec.hf_model_types[0]
        # The legacy form (`rope_theta`, `rope_scaling`) every transformers version reads. Without it transformers
        # would load RoPE base 10,000 and no Llama-3 scaling: a release whose logits are not the trained model's.
        for name in ("rotary_base", "rope_scaling"):
            keys = m.spec.config.get(name)
            key = keys if isinstance(keys, str) else (keys or [None])[0]
            if key and "." not in key and fields[name] is not None:
                config.setdefault(key, fields[name])
    dtype_name = str(dtype).removeprefix("torch.")
    config["torch_dtype"] = dtype_name
    if "dtype" in config:
        config["dtype"] = dtype_name
    return config


def convert_mcore_to_hf(
    ckpt_or_run: str | Path,
    out_dir: str | Path,
    *,
    iteration: int | None = None,
    dtype: torch.dtype = torch.bfloat16,
    hf_assets: str | Path | None = None,
    extra_specs: list[str | Path] = (),
    max_shard_bytes: int = HF_SHARD_BYTES,
    dry_run: bool = False,
    verify: bool = False,
    verify_tolerance: float = 1e-3,
    log=print,
    fim_tokens: bool | None = None,
) -> dict[str, Any]:
    """Export a checkpoint (or a RUN_DIR's latest) to an HF folder. The checkpoint's checksums are verified first,
    non-finite weights are refused, and with `verify` (the CLI's default) the folder's logits are compared with the checkpoint's (its
    weights rounded to `dtype`, fp32 math) before the folder is published under `out_dir`."""
    ckpt = resolve_checkpoint(ckpt_or_run, iteration)
    out_dir = Path(out_dir)
    verify_checkpoint(ckpt, log=log)
    m = McoreModel(ckpt, extra_specs)
    cfg = m.cfg
    assets = Path(hf_assets) if hf_assets is not None else ckpt / ASSETS_DIR
    if not assets.is_dir():
        raise UserError(
            f"no {ASSETS_DIR}/ with the base model's tokenizer; pass --hf-assets HF_BASE_MODEL_DIR", file=str(ckpt)
        )
    check_output_dir(out_dir)
    if not any(p.name.startswith("tokenizer") for p in assets.iterdir()):
        log(f"  warning: {assets} has no tokenizer files; the release will have none (pass --hf-assets)")

    planned: list[PlannedTensor] = []
    for w, layer in m.plan:
        names = [n.replace("{i}", str(layer)) for n in w.hf]
        planned += [PlannedTensor(n, dtype, s) for n, s in zip(names, hf_shapes(w, cfg), strict=True)]
    total = sum(p.nbytes for p in planned)
    log(f"mcore-to-hf: {ckpt} -> {out_dir}")
    log(f"  spec: {m.spec.name}   dtype: {dtype}   vocab: {cfg.padded_vocab_size} -> {cfg.vocab_size} rows")
    log(f"  tensors: {len(planned)} HF, {total / 1e9:.2f} GB; assets from {assets}")
    if dry_run:
        # The files the export would write (planning the shards writes nothing): `cptkit release --dry-run` lists them.
        shards = ShardedWriter(out_dir, planned, max_shard_bytes).names
        assets_out = [p.name for p in assets.iterdir() if p.is_file() and p.name != "config.json"]
        files = sorted({*shards, "model.safetensors.index.json", "config.json", "generation_config.json", *assets_out})
        return {"dry_run": True, "checkpoint": str(ckpt), "tensors": len(planned), "bytes": total, "files": files}

    t0 = time.perf_counter()
    tmp = partial_dir(out_dir)
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        writer = ShardedWriter(tmp, planned, max_shard_bytes)
        # Group the plan by layer so each layer is read in one pass and then dropped.
        groups: list[list[tuple[WeightSpec, int | None]]] = []
        for item in m.plan:
            if groups and item[1] is not None and groups[-1][0][1] == item[1]:
                groups[-1].append(item)
            else:
                groups.append([item])
        # Read the next layer in a background thread while this one is unfused and written (file I/O releases the
        # GIL): at most two layers in memory.
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(m.read, groups[0])
            for k, group in enumerate(groups):
                tensors = pending.result()
                if k + 1 < len(groups):
                    pending = pool.submit(m.read, groups[k + 1])
                for (w, layer), t in zip(group, tensors, strict=True):
                    _check_finite(t, m.keys[w.mcore], layer, ckpt)
                    names = [n.replace("{i}", str(layer)) for n in w.hf]
                    for name, part in zip(names, to_hf(w, t, cfg), strict=True):
                        writer.write(name, part.to(dtype))
                del tensors
        writer.close()
        for p in sorted(assets.iterdir()):
            if p.is_file() and p.name != "config.json":
                shutil.copy2(p, tmp / p.name)
        # Trained with FIM (recorded by the trainer, or --fim-tokens): name the FIM slots in the release tokenizer.
        if fim_tokens or (fim_tokens is None and checkpoint_used_fim(ckpt)):
            log(f"  FIM special tokens written into {', '.join(apply_fim_tokens(tmp)) or '(no tokenizer files)'}")
        if not (tmp / "generation_config.json").exists():
            gen = {k: cfg.hf_config[k] for k in ("bos_token_id", "eos_token_id", "pad_token_id") if k in cfg.hf_config}
            (tmp / "generation_config.json").write_text(json.dumps({**gen, "_from_model_config": True}, indent=2))
        (tmp / "config.json").write_text(json.dumps(hf_config_for_release(m, dtype), indent=2) + "\n")
        if verify:
            _verify_export(tmp, ckpt, cfg, dtype, verify_tolerance, log)
        finish_output_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    seconds = time.perf_counter() - t0
    log(f"wrote {out_dir} ({len(writer.names)} shard(s), {total / 1e9:.2f} GB) in {seconds:.1f} s")
    return {"out_dir": str(out_dir), "checkpoint": str(ckpt), "shards": len(writer.names), "seconds": seconds}


def _check_finite(t: torch.Tensor, key: str, layer: int | None, ckpt: Path) -> None:
    """A release must not carry inf/NaN weights (a damaged or diverged checkpoint): refuse, naming the tensor."""
    if t.is_floating_point() and not torch.isfinite(t).all():
        bad = int((~torch.isfinite(t)).sum())
        where = f"{key} (layer {layer})" if layer is not None else key
        raise UserError(f"{where} holds {bad:,} non-finite values; refusing to export it", file=str(ckpt))


def _verify_export(tmp: Path, ckpt: Path, cfg: ModelConfig, dtype: torch.dtype, tolerance: float, log) -> None:
    """The exported folder's logits against the checkpoint's (weights rounded to the release dtype), before the
    folder is published; a mismatch deletes it (the caller's cleanup) and fails."""
    from cptkit.convert.verify import verify

    seq_len = min(128, cfg.max_position_embeddings)
    result = verify(
        tmp, ckpt, seq_len=seq_len, batch=1, tolerance=tolerance, round_to=dtype, check_files=False, log=log
    )
    if result is not None and not result.ok:
        raise UserError(
            f"the exported weights do not reproduce the checkpoint's logits ({result.summary()}); nothing written "
            "(--no-verify skips this check)",
            file=str(ckpt),
        )
