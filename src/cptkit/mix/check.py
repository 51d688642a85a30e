"""`cptkit mix check`: build the blend with megatron-core and measure the token share each source really gets.

The mixture is resolved to `(prefixes, weights)` and handed to megatron-core's own `BlendedMegatronDatasetBuilder` +
`GPTDataset`, exactly as a training run builds its train split — on CPU, with no process group and its index cache in a
temporary directory (nothing is written next to the data). Every sample is `seq_length` tokens, so a source's realized token share is its share
of the samples in the blended dataset's index. A first few samples are read to make sure the `.bin` files load.

    cptkit mix check data_mix/demo.yaml --samples 2000 --seq-length 1024

The datasets come from the trainer's builder (`cptkit.train.data.build_blend`), so what is checked is what `cptkit
train` reads. megatron-core (and torch) are imported inside `build_blended` only; this module is safe to import on a
login node.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
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


def build_blended(
    blend: ResolvedBlend, *, samples: int, seq_length: int, seed: int, eod_id: int, work_dir: str, split: str = "1,0,0"
):
    """megatron-core's train split over the blend: a BlendedDataset (or a GPTDataset for a single prefix), built by
    the trainer's own builder (`cptkit.train.data.build_blend`, FIM sources included) with its index caches in
    `work_dir`, so the data directory is left untouched."""
    from cptkit.train.data import DataSpec, build_blend

    spec = DataSpec(seq_length=seq_length, seed=seed, split=split, eod_id=eod_id)
    quiet = logging.getLogger("megatron.core.datasets")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        train, _, _ = build_blend(blend, spec, [samples, 0, 0], link_dir=work_dir)
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
    split: str = "1,0,0",
) -> CheckResult | None:
    """Check a mixture file; `split` is the recipe's (train split only is drawn) when checking for a recipe."""
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
            f"tokens (seed {seed}, split {split}, eod {eod}) over {len(blend.entries)} prefixes:"
        )
        print(blend.data_args_text(), end="")
        return None
    return check_blend(blend, samples=samples, seq_length=seq_length, seed=seed, eod_id=eod, split=split)


def check_recipe(
    recipe_path: str | os.PathLike, *, samples: int | None = None, eod_id: int | None = None, dry_run: bool = False
):
    """`mix check --recipe`: the recipe's mixture with the trainer's seed, sequence length and split, over the
    recipe's number of training samples (or `samples`): the blend `cptkit train` will read, sample for sample."""
    from cptkit.train.plan import make_plan
    from cptkit.train.recipe import load_recipe

    recipe = load_recipe(recipe_path)
    t = recipe.training
    if samples is None:
        samples = make_plan(recipe).train_iters * t.global_batch_size
    return check_file(
        recipe.data.mixture,
        samples=samples,
        seq_length=t.seq_length,
        seed=t.seed,
        eod_id=recipe.data.eod_token_id if recipe.data.eod_token_id is not None else eod_id,
        dry_run=dry_run,
        split=recipe.data.split,
    )


def check_blend(
    blend: ResolvedBlend,
    *,
    samples: int,
    seq_length: int,
    seed: int,
    eod_id: int,
    targets_from: ResolvedBlend | None = None,
    split: str = "1,0,0",
) -> CheckResult:
    """Build `blend` with megatron-core and compare each source's realized share with the targets of
    `targets_from` (default: `blend` itself; tests pass a deliberately wrong blend to show the check catches it)."""
    with tempfile.TemporaryDirectory(prefix="cptkit-mix-check-") as work_dir:
        dataset = build_blended(
            blend, samples=samples, seq_length=seq_length, seed=seed, eod_id=eod_id, work_dir=work_dir, split=split
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
