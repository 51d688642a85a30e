"""`cptkit mix check`: build the blend with megatron-core and measure the token share each source really gets.

The mixture is resolved to `(prefixes, weights)` and handed to megatron-core's own `BlendedMegatronDatasetBuilder` +
`GPTDataset`, exactly as a training run builds its train split — on CPU, with no process group and its index cache in a
temporary directory (nothing is written next to the data). Every sample is `seq_length` tokens, so a source's realized token share is its share
of the samples in the blended dataset's index. A first few samples are read to make sure the `.bin` files load.

    cptkit mix check data_mix/demo.yaml --samples 2000 --seq-length 1024

megatron-core (and torch) are imported inside `build_blended` only; this module is safe to import on a login node.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cptkit.errors import UserError
from cptkit.mix.resolve import ResolvedBlend, resolve
from cptkit.mix.schema import load_mixture
from cptkit.mix.settings import check_tokenization

SAMPLES_READ = 8  # samples actually materialised to prove the data loads


@dataclass(frozen=True)
class SourceShare:
    source: str
    target_percent: float
    realized_percent: float
    samples: int

    @property
    def error_points(self) -> float:
        return abs(self.realized_percent - self.target_percent)


@dataclass(frozen=True)
class CheckResult:
    mixture: str
    samples: int
    seq_length: int
    eod_id: int
    shares: tuple[SourceShare, ...]

    def max_error_points(self) -> float:
        return max(s.error_points for s in self.shares)

    def to_json(self, tolerance_points: float) -> dict[str, Any]:
        return {
            "mixture": self.mixture,
            "samples": self.samples,
            "seq_length": self.seq_length,
            "tokens": self.samples * self.seq_length,
            "eod_id": self.eod_id,
            "tolerance_points": tolerance_points,
            "ok": self.max_error_points() <= tolerance_points,
            "sources": [
                {
                    "source": s.source,
                    "target_percent": s.target_percent,
                    "realized_percent": s.realized_percent,
                    "samples": s.samples,
                    "error_points": s.error_points,
                }
                for s in self.shares
            ],
        }


def eod_from_manifests(blend: ResolvedBlend) -> int | None:
    """The end-of-document id recorded by `cptkit tokenize` in `PREFIX.manifest.json`; None if no manifest has it."""
    found: dict[int, str] = {}
    for e in blend.entries:
        path = Path(f"{e.prefix}.manifest.json")
        if not path.is_file():
            continue
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            raise UserError(f"cannot read the manifest: {err}", file=str(path)) from None
        tok = doc.get("tokenizer") if isinstance(doc.get("tokenizer"), dict) else {}
        eod = tok.get("eod_id", doc.get("eod_id"))
        if isinstance(eod, int):
            found.setdefault(eod, str(path))
    if len(found) > 1:
        listing = ", ".join(f"{eod} ({p})" for eod, p in found.items())
        raise UserError(f"the prefixes were tokenized with different end-of-document ids: {listing}")
    return next(iter(found), None)


class _CheckTokenizer:
    """The little of a tokenizer GPTDataset touches: eod/pad ids (and vocab size, for the token dtype)."""

    def __init__(self, eod: int):
        self.eod = eod
        self.pad = -1  # never a real id: no sample is padded in a train split
        self.vocab_size = None
        # megatron hashes these into each dataset's description (its cache key)
        self.unique_identifiers = {"class": "cptkit.mix.check", "eod": eod}


def build_blended(blend: ResolvedBlend, *, samples: int, seq_length: int, seed: int, eod_id: int, work_dir: str):
    """megatron-core's train split over the blend: a BlendedDataset (or a GPTDataset for a single prefix).

    GPTDataset caches its indices in `PREFIX/cache/` unless given a cache directory, and with a cache directory
    BlendedDataset asks torch.distributed for its rank (there is no process group here). So each prefix is linked into
    `work_dir` and megatron builds from the links: its caches land there, and the data directory is left untouched.
    """
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    with warnings.catch_warnings():  # "Transformer Engine and Apex are not installed": irrelevant to data
        warnings.simplefilter("ignore")
        from megatron.core.datasets.blended_megatron_dataset_builder import BlendedMegatronDatasetBuilder
        from megatron.core.datasets.gpt_dataset import GPTDataset, GPTDatasetConfig

    prefixes, weights = blend.megatron_blend()
    linked = []
    for k, prefix in enumerate(prefixes):
        link = Path(work_dir) / f"{k:05d}" / "data"
        link.parent.mkdir()
        for suffix in (".bin", ".idx"):
            os.symlink(os.path.abspath(prefix + suffix), f"{link}{suffix}")
        linked.append(str(link))
    config = GPTDatasetConfig(
        random_seed=seed,
        sequence_length=seq_length,
        blend=(linked, weights),
        split="1,0,0",
        tokenizer=_CheckTokenizer(eod_id),
        reset_position_ids=False,
        reset_attention_mask=False,
        eod_mask_loss=False,
        create_attention_mask=False,
        path_to_cache=None,
    )
    quiet = logging.getLogger("megatron.core.datasets")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        train, _, _ = BlendedMegatronDatasetBuilder(GPTDataset, [samples, 0, 0], lambda: True, config).build()
    finally:
        quiet.setLevel(level)
    return train


def realized_shares(blend: ResolvedBlend, dataset: Any, samples: int) -> dict[str, int]:
    """Samples per source in the first `samples` of the blended dataset."""
    if hasattr(dataset, "dataset_index"):
        per_prefix = Counter(int(i) for i in dataset.dataset_index[:samples])
    else:  # a single prefix: megatron returns the GPTDataset itself
        per_prefix = Counter({0: min(samples, len(dataset))})
    for k in range(min(SAMPLES_READ, len(dataset))):
        sample = dataset[k]
        if "tokens" in sample and len(sample["tokens"]) != blend_seq_len(dataset):
            raise RuntimeError(f"sample {k} has {len(sample['tokens'])} tokens")
    by_source: Counter[str] = Counter()
    for k, n in per_prefix.items():
        by_source[blend.entries[k].source] += n
    return dict(by_source)


def blend_seq_len(dataset: Any) -> int:
    return int(dataset.config.sequence_length)


def check_file(
    path: str | os.PathLike,
    *,
    samples: int,
    seq_length: int,
    seed: int = 1234,
    eod_id: int | None = None,
    dry_run: bool = False,
) -> CheckResult | None:
    mixture = load_mixture(path)
    blend = resolve(mixture)
    check_tokenization(mixture, blend)  # settings and vocabulary of every prefix, before megatron is imported
    recorded = eod_from_manifests(blend)
    if recorded is not None and eod_id is not None and recorded != eod_id:
        raise UserError(
            f"--eod-id {eod_id} disagrees with the manifests' end-of-document id {recorded}", file=str(path)
        )
    eod = recorded if recorded is not None else eod_id
    if eod is None:
        raise UserError("no PREFIX.manifest.json records the end-of-document id; pass --eod-id", file=str(path))
    if dry_run:
        print(
            f"dry run: would build megatron-core's blended GPT train split of {samples} samples x {seq_length} "
            f"tokens (seed {seed}, eod {eod}) over {len(blend.entries)} prefixes:"
        )
        print(blend.data_args_text(), end="")
        return None
    return check_blend(blend, samples=samples, seq_length=seq_length, seed=seed, eod_id=eod)


def check_blend(
    blend: ResolvedBlend,
    *,
    samples: int,
    seq_length: int,
    seed: int,
    eod_id: int,
    targets_from: ResolvedBlend | None = None,
) -> CheckResult:
    """Build `blend` with megatron-core and compare each source's realized share with the targets of
    `targets_from` (default: `blend` itself; tests pass a deliberately wrong blend to show the check catches it)."""
    with tempfile.TemporaryDirectory(prefix="cptkit-mix-check-") as work_dir:
        dataset = build_blended(
            blend, samples=samples, seq_length=seq_length, seed=seed, eod_id=eod_id, work_dir=work_dir
        )
        counts = realized_shares(blend, dataset, samples)
    reference = targets_from or blend
    targets: dict[str, float] = {}
    for e in reference.entries:
        targets[e.source] = targets.get(e.source, 0.0) + e.weight_tokens
    total_weight = sum(targets.values())
    drawn = sum(counts.values())
    shares = tuple(
        SourceShare(
            source=name,
            target_percent=100.0 * t / total_weight,
            realized_percent=100.0 * counts.get(name, 0) / drawn,
            samples=counts.get(name, 0),
        )
        for name, t in targets.items()
    )
    return CheckResult(reference.mixture, drawn, seq_length, eod_id, shares)


def render(result: CheckResult, tolerance_points: float) -> str:
    lines = [
        f"mixture {result.mixture}: {result.samples} samples x {result.seq_length} tokens "
        f"({result.samples * result.seq_length:,} tokens) built by megatron-core",
        "",
    ]
    width = max(len("source"), *(len(s.source) for s in result.shares))
    lines.append(f"{'source'.ljust(width)}  {'target':>8}  {'realized':>8}  {'diff':>7}  {'samples':>8}")
    for s in result.shares:
        flag = "" if s.error_points <= tolerance_points else "  <-- off"
        lines.append(
            f"{s.source.ljust(width)}  {s.target_percent:7.2f}%  {s.realized_percent:7.2f}%  "
            f"{s.realized_percent - s.target_percent:+6.2f}p  {s.samples:8d}{flag}"
        )
    ok = result.max_error_points() <= tolerance_points
    lines.append("")
    lines.append(
        f"{'ok' if ok else 'FAILED'}: largest difference {result.max_error_points():.3f} points "
        f"(tolerance {tolerance_points:g})"
    )
    return "\n".join(lines) + "\n"
