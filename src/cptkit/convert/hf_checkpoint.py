"""An HF model directory, opened and checked before anything is converted.

`open_hf_model` reads config.json, finds the mapping spec, builds the `ModelConfig`, reads every safetensors header
(not the data) and checks that the weights are exactly what the config promises: every shard present and whole,
every expected tensor there with the expected shape, nothing unexpected left over. Any mismatch is a one-line
`UserError` naming the file and the tensor or config field, raised before the output directory is created.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cptkit.convert.layout import check_tp, hf_shapes
from cptkit.convert.safetensors_io import TensorInfo, read_header
from cptkit.convert.spec import ArchSpec, WeightSpec, find_spec, model_config_fields
from cptkit.errors import UserError
from cptkit.model.config import ModelConfig, pad_vocab_size

INDEX = "model.safetensors.index.json"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".gguf")


@dataclass
class HFModel:
    dir: Path
    spec: ArchSpec
    cfg: ModelConfig
    tensors: dict[str, TensorInfo]
    expected: set[str] = field(default_factory=set)  # the HF tensors the conversion reads

    def layer_names(self, w: WeightSpec, layer: int | None) -> list[str]:
        return [n.replace("{i}", str(layer)) for n in w.hf] if layer is not None else list(w.hf)

    def plan(self) -> list[tuple[WeightSpec, int | None]]:
        return self.spec.plan(self.cfg)


def read_config(hf_dir: Path) -> dict[str, Any]:
    path = hf_dir / "config.json"
    if not path.is_file():
        raise UserError("no config.json: not a Hugging Face model directory", file=str(hf_dir))
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise UserError(f"not valid JSON: {e}", file=str(path)) from None
    if not isinstance(config, dict):
        raise UserError("expected a JSON object", file=str(path))
    return config


def _weight_files(hf_dir: Path) -> dict[str, Path]:
    """tensor name -> file, from the index (sharded) or the single model.safetensors."""
    index = hf_dir / INDEX
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise UserError("not a safetensors index (no weight_map)", file=str(index)) from None
        missing = sorted({f for f in weight_map.values() if not (hf_dir / f).is_file()})
        if missing:
            raise UserError(f"shard(s) listed in the index are missing: {', '.join(missing)}", file=str(index))
        return {name: hf_dir / f for name, f in weight_map.items()}
    single = hf_dir / "model.safetensors"
    if single.is_file():
        return {name: single for name in read_header(single)}
    others = sorted(p.name for p in hf_dir.iterdir() if p.suffix in WEIGHT_SUFFIXES)
    hint = f" (found {', '.join(others)}; re-save with safe_serialization=True)" if others else ""
    raise UserError(f"no model.safetensors or {INDEX}{hint}", file=str(hf_dir))


def model_config(
    hf_config: dict[str, Any], spec: ArchSpec, config_file: Path, *, tp: int, divisible_by: int
) -> ModelConfig:
    fields = model_config_fields(hf_config, spec, config_file)
    # Megatron pads to a multiple of make-vocab-size-divisible-by x TP so every TP rank gets equal rows.
    fields["padded_vocab_size"] = pad_vocab_size(fields["vocab_size"], divisible_by * tp)
    fields["hf_config"] = hf_config
    try:
        return ModelConfig.model_validate(fields)
    except Exception as e:  # pydantic ValidationError: a config value out of range
        errs = getattr(e, "errors", None)
        if errs is None:
            raise
        err = errs()[0]
        where = ".".join(str(p) for p in err["loc"]) or None
        raise UserError(err["msg"], file=str(config_file), field=where) from None


def open_hf_model(
    hf_dir: str | Path, *, tp: int = 1, divisible_by: int = 128, extra_specs: list[str | Path] = ()
) -> HFModel:
    hf_dir = Path(hf_dir)
    if not hf_dir.is_dir():
        raise UserError("no such directory", file=str(hf_dir))
    hf_config = read_config(hf_dir)
    config_file = hf_dir / "config.json"
    spec = find_spec(hf_config, config_file, extra_specs)
    cfg = model_config(hf_config, spec, config_file, tp=tp, divisible_by=divisible_by)
    problems = check_tp(cfg, tp)
    if problems:
        raise UserError(f"TP={tp} does not divide {', '.join(problems)}", file=str(config_file))

    files = _weight_files(hf_dir)
    headers: dict[Path, dict[str, TensorInfo]] = {}
    tensors: dict[str, TensorInfo] = {}
    for name, path in files.items():
        if path not in headers:
            headers[path] = read_header(path)
        if name not in headers[path]:
            raise UserError(f"tensor {name} is listed in the index but not in {path.name}", file=str(hf_dir / INDEX))
        tensors[name] = headers[path][name]

    model = HFModel(hf_dir, spec, cfg, tensors)
    expected: set[str] = set()
    for w, layer in model.plan():
        for name, shape in zip(model.layer_names(w, layer), hf_shapes(w, cfg), strict=True):
            expected.add(name)
            info = tensors.get(name)
            if info is None:
                raise UserError(f"weights lack tensor {name} that config.json implies", file=str(hf_dir))
            if info.shape != shape:
                raise UserError(
                    f"config and weights disagree: {name} has shape {list(info.shape)}, config.json implies "
                    f"{list(shape)}",
                    file=str(info.file),
                    field=name,
                )
    extra = sorted(n for n in tensors if n not in expected and not spec.is_ignored(n))
    if cfg.tie_word_embeddings:  # some exporters also save the tied head; it is the embedding
        extra = [n for n in extra if n != "lm_head.weight"]
    if extra:
        more = f" (+{len(extra) - 3} more)" if len(extra) > 3 else ""
        raise UserError(
            f"config and weights disagree: unexpected tensor(s) {', '.join(extra[:3])}{more} "
            f"(num_hidden_layers={cfg.num_layers}, tie_word_embeddings={cfg.tie_word_embeddings})",
            file=str(hf_dir),
        )
    model.expected = expected
    return model


def asset_files(hf_dir: Path) -> list[Path]:
    """Top-level files to carry through to the release: tokenizer, generation config, chat template, license."""
    out = []
    for p in sorted(hf_dir.iterdir()):
        if not p.is_file() or p.name.startswith(".") or p.name in ("config.json", INDEX):
            continue
        if p.suffix in WEIGHT_SUFFIXES or p.name.endswith(".index.json"):
            continue
        out.append(p)
    return out
