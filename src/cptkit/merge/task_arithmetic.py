"""Task arithmetic over HF folders: `out = base + sum_i w_i * (model_i - base)`, run by mergekit.

The chat vector of Llama-3.1-Future-Code-Ja (seed 004: continual pre-training, then merged with the Instruct model)
is the case `out = CPT + (Instruct - base)`: base = Llama-3.1-8B, models CPT (weight 1) and Instruct (weight 1):

    cptkit merge release/future-merged --base hf/Llama-3.1-8B \\
        --model release/future-cpt=1.0 --model hf/Llama-3.1-8B-Instruct=1.0

mergekit (PyPI `mergekit`, its `task_arithmetic` method with `normalize: false`) does the arithmetic: it loads
tensors lazily and writes safetensors shards as it goes, so memory holds a few tensors, not three models. cptkit adds
what a release needs around it: every input's tensor names and shapes checked against the base before anything is
read (one line naming the file and tensor), the output written under a temporary sibling name and renamed when
complete, the tokenizer taken from the model you choose (by default the first `--model`, e.g. the CPT release with
its FIM tokens), and `cptkit_merge.json` recording the inputs and weights.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from cptkit.errors import UserError

DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}
# Files copied from the tokenizer source: tokenizer, chat template, generation defaults.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
                   "chat_template.jinja", "generation_config.json")  # fmt: skip


@dataclass(frozen=True)
class MergeInput:
    path: Path
    weight: float


def parse_model(text: str) -> MergeInput:
    """`DIR` or `DIR=WEIGHT` (weight 1.0 by default)."""
    path, sep, weight = text.rpartition("=")
    if sep:
        try:
            return MergeInput(Path(path), float(weight))
        except ValueError:
            pass
    return MergeInput(Path(text), 1.0)


def tensor_shapes(folder: Path) -> tuple[dict[str, tuple[int, ...]], set[str]]:
    """Tensor name -> shape from the safetensors headers of an HF folder (no tensor is read), and the dtypes."""
    from cptkit.convert.safetensors_io import read_header

    if not (folder / "config.json").is_file():
        raise UserError("not a Hugging Face model folder (no config.json)", file=str(folder))
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise UserError("no *.safetensors weights (convert .bin weights first)", file=str(folder))
    shapes, dtypes = {}, set()
    for f in files:
        for name, info in read_header(f).items():
            shapes[name] = info.shape
            dtypes.add(str(info.dtype).removeprefix("torch."))
    return shapes, dtypes


def check_inputs(base: Path, models: list[MergeInput]) -> tuple[int, str]:
    """Every model has the base's tensors with the base's shapes; returns (tensor count, the base's dtype)."""
    want, dtypes = tensor_shapes(base)
    for m in models:
        got, _ = tensor_shapes(m.path)
        missing = sorted(set(want) - set(got))
        extra = sorted(set(got) - set(want))
        if missing or extra:
            what = f"lacks {missing[0]}" if missing else f"has {extra[0]}, which the base has not"
            raise UserError(f"{what} ({len(missing)} missing, {len(extra)} extra tensors)", file=str(m.path))
        for name, shape in want.items():
            if got[name] != shape:
                raise UserError(f"shape {list(got[name])}, the base's is {list(shape)}", file=str(m.path), field=name)
    return len(want), (dtypes.pop() if len(dtypes) == 1 else "float32")


def mergekit_config(base: Path, models: list[MergeInput], dtype: str) -> dict:
    return {
        "merge_method": "task_arithmetic",
        "base_model": str(base),
        "models": [{"model": str(m.path), "parameters": {"weight": m.weight}} for m in models],
        "parameters": {"normalize": False},  # the weights are used as given (chat vector: 1 and 1)
        "dtype": dtype,
    }


def merge(
    out_dir: str | Path,
    *,
    base: str | Path,
    models: list[MergeInput],
    dtype: str | None = None,
    tokenizer_from: str | Path | None = None,
    dry_run: bool = False,
    log=print,
) -> dict:
    from cptkit.convert.hf_to_mcore import check_output_dir, finish_output_dir, partial_dir

    out_dir, base = Path(out_dir), Path(base)
    if not models:
        raise UserError("give at least one --model DIR[=WEIGHT]")
    n, base_dtype = check_inputs(base, models)
    dtype = DTYPES.get(dtype, dtype) if dtype else base_dtype
    tok = Path(tokenizer_from) if tokenizer_from else models[0].path
    check_output_dir(out_dir)
    config = mergekit_config(base, models, dtype)
    terms = " + ".join(f"{m.weight:g} * ({m.path} - base)" for m in models)
    log(f"merge: {out_dir} = {base} + {terms}")
    log(f"  {n} tensors, {dtype}; tokenizer from {tok}; engine mergekit task_arithmetic (normalize: false)")
    if dry_run:
        log("dry run: inputs checked, nothing written")
        return {"dry_run": True, "tensors": n, "config": config}

    from mergekit.config import MergeConfiguration
    from mergekit.merge import MergeOptions, run_merge

    tmp = partial_dir(out_dir)
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        options = MergeOptions(lazy_unpickle=True, copy_tokenizer=False, write_model_card=False, quiet=True)
        run_merge(MergeConfiguration.model_validate(config), out_path=str(tmp), options=options)
        for name in TOKENIZER_FILES:
            if (tok / name).is_file():
                shutil.copy2(tok / name, tmp / name)
        record = {"method": "task_arithmetic", "base": str(base), "dtype": dtype, "tokenizer_from": str(tok)}
        record["models"] = [{"path": str(m.path), "weight": m.weight} for m in models]
        (tmp / "cptkit_merge.json").write_text(json.dumps(record, indent=2) + "\n")
        finish_output_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log(f"wrote {out_dir}")
    return {"out_dir": str(out_dir), "tensors": n}
