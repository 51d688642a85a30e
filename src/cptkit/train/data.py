"""The resolved mixture → megatron-core's BlendedMegatronDatasetBuilder + GPTDataset → micro-batch iterators.

The blend's weights are token shares (`cptkit.mix.resolve`); megatron normalises them and builds per-prefix sample
indices (cached under `data.cache_dir`, keyed by an md5 of the dataset description). Samples are consumed in
megatron-LM's pretraining order: global batch `g` holds samples `[g·GBS, (g+1)·GBS)`, and data-parallel rank `r`
takes its micro-batches from its contiguous share of each global batch. Resuming from `consumed_samples` therefore
yields exactly the batches the uninterrupted run would have seen.

`build_blend` is the one dataset builder: `cptkit train` and `cptkit mix check` both call it, so the check measures the
blend the trainer reads. Sources with `fim:` are read through `cptkit.train.fim.FIMGPTDataset`.

Validation uses the first `eval.iters` global batches of the validation split every time, so validation losses of
different iterations (and of different runs on the same mixture) are comparable.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from cptkit.errors import UserError
from cptkit.mix.fim import FimSettings


class _BlendTokenizer:
    """What GPTDataset asks of a tokenizer: the vocabulary size and the end-of-document id (no text is tokenized)."""

    def __init__(self, vocab_size: int | None, eod: int | None):
        self.vocab_size = vocab_size  # None: the token dtype is read from each .idx
        self._eod = eod

    @property
    def eod(self) -> int:
        # GPTDataset passes eod to its mask builder even when no option reads it; the schema requires a real id
        # whenever one does (data.eod_token_id), so -2 (never a token, and not megatron's pad id -1) is only seen
        # by code that ignores it.
        return -2 if self._eod is None else self._eod

    @property
    def pad(self) -> int:
        return -1  # megatron's own pad id: never in the data, so no token is masked as padding

    @property
    def unique_identifiers(self) -> dict[str, Any]:
        return {"class": "cptkit.train.data._BlendTokenizer", "vocab_size": self.vocab_size, "eod": self._eod}


@dataclass(frozen=True)
class DataSpec:
    """Everything the dataset builder needs besides the blend: from a recipe (`from_recipe`) or `mix check`'s flags."""

    seq_length: int
    seed: int
    split: str = "990,10,0"
    vocab_size: int | None = None
    eod_id: int | None = None
    reset_position_ids: bool = False
    reset_attention_mask: bool = False
    eod_mask_loss: bool = False

    @classmethod
    def from_recipe(cls, recipe, vocab_size: int | None) -> DataSpec:
        d, t = recipe.data, recipe.training
        return cls(
            seq_length=t.seq_length,
            seed=t.seed,
            split=d.split,
            vocab_size=vocab_size,
            eod_id=d.eod_token_id,
            reset_position_ids=d.reset_position_ids,
            reset_attention_mask=d.reset_attention_mask,
            eod_mask_loss=d.eod_mask_loss,
        )


def build_blend(blend, spec: DataSpec, sizes: list[int], *, cache_dir: str | None = None, link_dir: str | None = None):
    """megatron-core's (train, valid, test) datasets over a resolved blend: the one builder `cptkit train` and
    `cptkit mix check` share, so the check sees exactly the samples the trainer reads.

    `sizes` are samples per split. Sources that declare `fim:` are read through `FIMGPTDataset`; a blend without
    FIM is plain GPTDataset, byte for byte. `cache_dir` is where megatron writes its index caches (needs a process
    group); without one, `link_dir` links every prefix into a scratch directory so the caches land there and the data
    directory is left untouched (GPTDataset otherwise writes PREFIX/cache/, and BlendedDataset asks torch.distributed
    for its rank as soon as it has a cache directory).
    """
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    with warnings.catch_warnings():  # "Transformer Engine and Apex are not installed": irrelevant to data
        warnings.simplefilter("ignore")
        from megatron.core.datasets.blended_megatron_dataset_builder import BlendedMegatronDatasetBuilder
        from megatron.core.datasets.gpt_dataset import GPTDataset, GPTDatasetConfig

    # Checks of the prefixes themselves against the mixture (e.g. their tokenization settings) belong here, before
    # megatron reads them: both `train` and `mix check` pass through this function.
    prefixes, weights = blend.megatron_blend()
    if link_dir is not None:
        prefixes = _link_prefixes(prefixes, link_dir)
    common = dict(
        random_seed=spec.seed,
        sequence_length=spec.seq_length,
        blend=(prefixes, weights),
        split=spec.split,
        path_to_cache=cache_dir if link_dir is None else None,
        tokenizer=_BlendTokenizer(spec.vocab_size, spec.eod_id),
        reset_position_ids=spec.reset_position_ids,
        reset_attention_mask=spec.reset_attention_mask,
        eod_mask_loss=spec.eod_mask_loss,
        create_attention_mask=spec.reset_attention_mask,
        mmap_bin_files=True,
    )
    fim = {
        path: (k, FimSettings(**e.fim))
        for k, (path, e) in enumerate(zip(prefixes, blend.entries, strict=True))
        if e.fim
    }
    if fim:
        from cptkit.train.fim import FIMGPTDataset, FIMGPTDatasetConfig, codec_for

        codec, _ = codec_for(blend.tokenizer)  # fails here, in the main process, if the tokenizer is unusable
        if spec.eod_id is not None and spec.eod_id != codec.eod_id:
            raise UserError(
                f"end-of-document id {spec.eod_id} is not the tokenizer's ({codec.eod_id}); FIM cuts fragments at it",
                field="data.eod_token_id",
            )
        cls, config = FIMGPTDataset, FIMGPTDatasetConfig(**common, fim=fim, fim_tokenizer=blend.tokenizer)
    else:
        cls, config = GPTDataset, GPTDatasetConfig(**common)
    return BlendedMegatronDatasetBuilder(cls, sizes, lambda: True, config).build()


def _link_prefixes(prefixes: list[str], link_dir: str) -> list[str]:
    linked = []
    for k, prefix in enumerate(prefixes):
        link = Path(link_dir) / f"{k:05d}" / "data"
        link.parent.mkdir(parents=True)
        for suffix in (".bin", ".idx"):
            os.symlink(os.path.abspath(prefix + suffix), f"{link}{suffix}")
        linked.append(str(link))
    return linked


def check_split(recipe, blend) -> None:
    """Every prefix must give the training split (and validation, when evaluating) at least one document.

    megatron-core splits each prefix's documents by rounding the split's book-ends; a split that gets no documents
    but is asked for samples makes GPTDataset search forever for enough epochs. Checked up front, with the fix.
    """
    from cptkit.mix.idx import read_idx

    weights = [float(x) for x in recipe.data.split.split(",")]
    total = sum(weights)
    bounds = [sum(weights[:i]) / total for i in range(4)]
    names = ("training", "validation")
    for entry in blend.entries:
        n = read_idx(entry.prefix).sequences
        counts = [round(bounds[i + 1] * n) - round(bounds[i] * n) for i in range(2)]
        for i, count in enumerate(counts):
            if count == 0 and (i == 0 or recipe.eval.interval_iters):
                need = 0.5 / n * total
                raise UserError(
                    f"prefix {entry.prefix} has {n} documents: split {recipe.data.split} gives {names[i]} none; "
                    f"give it a weight of at least {need:.3g} (of {total:g})"
                    + (" or set eval.interval_iters=null" if i == 1 else ""),
                    file=recipe.file_of("data.split"),
                    field="data.split",
                )


@dataclass
class Datasets:
    train: Any
    valid: Any | None


def build_datasets(recipe, blend, *, vocab_size: int, train_iters: int, cache_dir: str) -> Datasets:
    """GPTDatasets for train and validation over the resolved blend (built by rank 0 first, then the others)."""
    gbs = recipe.training.global_batch_size
    valid_samples = recipe.eval.iters * gbs if recipe.eval.interval_iters else 0
    spec = DataSpec.from_recipe(recipe, vocab_size)
    train, valid, _ = build_blend(blend, spec, [train_iters * gbs, valid_samples, 0], cache_dir=cache_dir)
    if train is None:
        raise UserError("the split gives training no documents", file=recipe.file_of("data.split"), field="data.split")
    if valid_samples and valid is None:
        raise UserError(
            "the split gives validation no documents", file=recipe.file_of("data.split"), field="data.split"
        )
    return Datasets(train=train, valid=valid if valid_samples else None)


class Prefetcher:
    """Reads micro-batches in a DataLoader with workers (order kept), so data loading overlaps compute."""

    def __init__(self, dataset, num_workers: int, **sampler_kwargs):
        from torch.utils.data import DataLoader

        self.indices = _BatchIndices(**sampler_kwargs)
        self.loader = DataLoader(
            dataset,
            batch_sampler=self.indices,
            num_workers=num_workers,
            pin_memory=torch.cuda.is_available(),
            persistent_workers=False,
        )

    def __iter__(self):
        return iter(self.loader)


class _BatchIndices:
    """Index lists of `micro_batches`, as a DataLoader batch sampler."""

    def __init__(self, *, consumed_samples, total_samples, micro_batch_size, dp_rank, dp_size):
        self.consumed_samples, self.total_samples = consumed_samples, total_samples
        self.mbs, self.dp_rank, self.dp_size = micro_batch_size, dp_rank, dp_size

    def __iter__(self):
        step = self.mbs * self.dp_size
        for base in range(self.consumed_samples, self.total_samples - step + 1, step):
            first = base + self.dp_rank * self.mbs
            yield list(range(first, first + self.mbs))

    def __len__(self):
        return max(0, (self.total_samples - self.consumed_samples) // (self.mbs * self.dp_size))


def to_model_inputs(batch: dict[str, torch.Tensor], device) -> dict[str, torch.Tensor | None]:
    """GPTDataset's sample dict → GPTModel inputs (tokens, position_ids, attention_mask, labels, loss_mask)."""
    out = {k: batch[k].to(device, non_blocking=True) for k in ("tokens", "labels", "loss_mask", "position_ids")}
    mask = batch.get("attention_mask")
    out["attention_mask"] = mask.to(device, non_blocking=True) if mask is not None else None
    return out
