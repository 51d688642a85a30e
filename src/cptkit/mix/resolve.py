"""Mixture → Megatron blend: `(weight_tokens, prefix)` per tokenized dataset, plus a fingerprint.

The trainer calls this in-process and stores the fingerprint in every checkpoint:

    from cptkit.mix import resolve_file
    blend = resolve_file("data_mix/demo.yaml")        # UserError if a prefix is not tokenized (lists all of them)
    prefixes, weights = blend.megatron_blend()        # -> BlendedMegatronDatasetConfig(blend=(prefixes, weights))
    blend.fingerprint                                  # sha256 hex

Weights are the tokens to train on from each prefix; Megatron normalises them, so they act as token shares. A
multi-prefix source's target is split over its prefixes by their explicit `tokens`, else in proportion to each
prefix's available tokens (every prefix then sees the same number of epochs).

The fingerprint is sha256 over the blend (source, position, weight) and the sha256 of each prefix's `.idx` bytes. It
does not include the paths: moving the data to another file system keeps it; changing a weight, adding a source or
re-tokenizing a prefix changes it.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cptkit.errors import UserError
from cptkit.mix.idx import IdxFormatError, IdxSummary, bin_path, idx_path, read_idx, sha256_file
from cptkit.mix.schema import Mixture, Source, load_mixture
from cptkit.mix.validate import target_tokens
from cptkit.util import atomic

BLEND_FORMAT = "cptkit-blend/1"


@dataclass(frozen=True)
class PrefixPlan:
    """One Megatron prefix of a source, as found on disk."""

    field: str  # where the prefix is written in the mixture, e.g. sources[2].datasets[5].prefix
    prefix: str  # as written (after ${VAR} expansion)
    path: str  # absolute
    summary: IdxSummary | None  # None when not tokenized (or unreadable: see problem)
    problem: str | None
    weight_tokens: float | None  # None when the split needs available tokens that are missing
    tokenizer_sha256: str | None = None  # from PREFIX.manifest.json, when cptkit tokenize made the prefix

    @property
    def epochs(self) -> float | None:
        if self.summary is None or self.weight_tokens is None:
            return None
        return self.weight_tokens / self.summary.tokens if self.summary.tokens else float("inf")


@dataclass(frozen=True)
class SourcePlan:
    source: Source
    target_tokens: float
    max_epochs: float
    prefixes: tuple[PrefixPlan, ...]

    @property
    def available_tokens(self) -> int | None:
        if any(p.summary is None for p in self.prefixes):
            return None
        return sum(p.summary.tokens for p in self.prefixes)  # type: ignore[union-attr]

    @property
    def epochs(self) -> float | None:
        avail = self.available_tokens
        if avail is None:
            return None
        return self.target_tokens / avail if avail else float("inf")

    @property
    def max_prefix_epochs(self) -> float | None:
        known = [e for p in self.prefixes if (e := p.epochs) is not None]
        return max(known) if known else None


def plan(mixture: Mixture) -> list[SourcePlan]:
    """Targets, available tokens and the per-prefix split of every source; reads only the `.idx` headers/lengths."""
    plans = []
    for i, s in enumerate(mixture.sources):
        target = target_tokens(mixture, s)
        found = []
        for j, d in enumerate(s.prefixes()):
            fld = f"sources[{i}].prefix" if s.datasets is None else f"sources[{i}].datasets[{j}].prefix"
            path = os.path.abspath(os.path.expanduser(d.prefix))
            summary, problem = _inspect(path)
            found.append((fld, d, path, summary, problem))
        weights = _split(target, [(d.tokens, summary) for _, d, _, summary, _ in found])
        prefixes = tuple(
            PrefixPlan(fld, d.prefix, path, summary, problem, w, _manifest_tokenizer(path))
            for (fld, d, path, summary, problem), w in zip(found, weights, strict=True)
        )
        plans.append(SourcePlan(s, target, mixture.source_max_epochs(s), prefixes))
    return plans


def _inspect(prefix: str) -> tuple[IdxSummary | None, str | None]:
    idx, binf = idx_path(prefix), bin_path(prefix)
    if not idx.is_file() or not binf.is_file():
        absent = " and ".join(str(p) for p in (idx, binf) if not p.is_file())
        return None, f"not tokenized ({absent} missing)"
    try:
        summary = read_idx(prefix)
    except (IdxFormatError, OSError) as e:
        return None, str(e)
    if binf.stat().st_size != summary.bin_bytes:
        return None, f"{binf} has {binf.stat().st_size} bytes, its .idx promises {summary.bin_bytes}"
    return summary, None


def _manifest_tokenizer(path: str) -> str | None:
    """sha256 of the tokenizer file recorded in `PREFIX.manifest.json` (written by `cptkit tokenize`), if any."""
    try:
        doc = json.loads(Path(f"{path}.manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    tok = doc.get("tokenizer") if isinstance(doc, dict) else None
    # The vocabulary's identity when recorded: a tokenizer.json and its tiktoken tokenizer.model make the same ids.
    sha = (tok.get("vocab_sha256") or tok.get("sha256")) if isinstance(tok, dict) else None
    return sha if isinstance(sha, str) else None


def tokenizer_conflict(plans: list[SourcePlan]) -> str | None:
    """A message if the manifests show prefixes made with different tokenizers (their ids would mean different text)."""
    seen: dict[str, str] = {}
    for sp in plans:
        for p in sp.prefixes:
            if p.tokenizer_sha256:
                seen.setdefault(p.tokenizer_sha256, p.field)
    if len(seen) < 2:
        return None
    listing = ", ".join(f"{sha[:12]} ({fld})" for sha, fld in seen.items())
    return f"the prefixes were tokenized with {len(seen)} different tokenizers: {listing}"


def _split(target: float, parts: list[tuple[int | None, IdxSummary | None]]) -> list[float | None]:
    if len(parts) == 1:
        return [target]
    explicit = [t for t, _ in parts]
    if all(t is not None for t in explicit):
        total = float(sum(explicit))  # type: ignore[arg-type]
        return [target * t / total if total else 0.0 for t in explicit]  # type: ignore[operator]
    if any(s is None for _, s in parts):
        return [None] * len(parts)
    available = [s.tokens for _, s in parts]  # type: ignore[union-attr]
    total = float(sum(available))
    return [target * a / total if total else 0.0 for a in available]


@dataclass(frozen=True)
class BlendEntry:
    source: str
    group: str | None
    prefix: str  # absolute path of the Megatron prefix
    weight_tokens: float  # tokens to train on from this prefix
    available_tokens: int
    idx_sha256: str
    fim: dict | None = None  # FimSettings.describe() of the source, when it declares `fim:`

    @property
    def epochs(self) -> float:
        return self.weight_tokens / self.available_tokens if self.available_tokens else float("inf")


@dataclass(frozen=True)
class ResolvedBlend:
    """A mixture resolved against the tokenized datasets on disk."""

    mixture: str
    mixture_file: str
    tokenizer: str
    total_tokens: int | None
    entries: tuple[BlendEntry, ...]
    fingerprint: str = field(default="")

    @property
    def target_tokens(self) -> float:
        return sum(e.weight_tokens for e in self.entries)

    def megatron_blend(self) -> tuple[list[str], list[float]]:
        """`(prefixes, weights)` as `BlendedMegatronDatasetConfig.blend` takes it."""
        return [e.prefix for e in self.entries], [e.weight_tokens for e in self.entries]

    def data_args_text(self) -> str:
        """Megatron-LM `--data-args-path` file: one `weight prefix` pair per line (the file is whitespace-split)."""
        return "".join(f"{_number(e.weight_tokens)} {e.prefix}\n" for e in self.entries)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": BLEND_FORMAT,
            "mixture": self.mixture,
            "mixture_file": self.mixture_file,
            "tokenizer": self.tokenizer,
            "total_tokens": self.total_tokens,
            "target_tokens": self.target_tokens,
            "fingerprint": self.fingerprint,
            "entries": [
                {
                    "source": e.source,
                    "group": e.group,
                    "prefix": e.prefix,
                    "weight_tokens": e.weight_tokens,
                    "available_tokens": e.available_tokens,
                    "epochs": round(e.epochs, 6),
                    "idx_sha256": e.idx_sha256,
                    **({"fim": e.fim} if e.fim else {}),
                }
                for e in self.entries
            ],
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> ResolvedBlend:
        """Read back `to_json()` (e.g. a NAME.blend.json written by `cptkit mix resolve`)."""
        if doc.get("format") != BLEND_FORMAT:
            raise ValueError(f"not a {BLEND_FORMAT} document (format: {doc.get('format')!r})")
        entries = tuple(
            BlendEntry(
                source=e["source"],
                group=e["group"],
                prefix=e["prefix"],
                weight_tokens=float(e["weight_tokens"]),
                available_tokens=int(e["available_tokens"]),
                idx_sha256=e["idx_sha256"],
                fim=e.get("fim"),
            )
            for e in doc["entries"]
        )
        return cls(
            mixture=doc["mixture"],
            mixture_file=doc["mixture_file"],
            tokenizer=doc["tokenizer"],
            total_tokens=doc["total_tokens"],
            entries=entries,
            fingerprint=doc["fingerprint"],
        )

    def write(self, out_dir: str | os.PathLike) -> tuple[Path, Path]:
        """Write `NAME.blend.json` and `NAME.data-args.txt` into `out_dir`, each atomically."""
        out = Path(out_dir)
        json_path, args_path = out / f"{self.mixture}.blend.json", out / f"{self.mixture}.data-args.txt"
        atomic.write_json(json_path, self.to_json())
        atomic.write_text(args_path, self.data_args_text())
        return json_path, args_path


def _number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))


_IDX_HASHES: dict[tuple[str, int, int], str] = {}


def _idx_sha256(prefix: str) -> str:
    """sha256 of PREFIX.idx, remembered per (path, size, mtime) so a process resolving twice reads it once.

    A Swallow-sized blend has a few GB of .idx (sha256 runs at ~0.7 GB/s on one core here); in a multi-rank job,
    resolve on one rank and broadcast the result rather than hashing on every rank.
    """
    path = idx_path(prefix)
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _IDX_HASHES:
        _IDX_HASHES[key] = sha256_file(path)
    return _IDX_HASHES[key]


def fingerprint(entries: tuple[BlendEntry, ...] | list[BlendEntry]) -> str:
    # FIM settings change what the model sees, so they count; a blend without FIM keeps its old fingerprint.
    canon = [
        [e.source, k, round(e.weight_tokens, 3), e.idx_sha256, *([e.fim] if e.fim else [])]
        for k, e in enumerate(entries)
    ]
    return hashlib.sha256(json.dumps(canon, separators=(",", ":")).encode()).hexdigest()


# An error is one line: a mixture of 210 Common Crawl prefixes not tokenized yet made a 64,000-character one. It names
# this many; the full list goes to a file.
SHOWN_PREFIXES = 5


def missing_error(
    mixture: Mixture, plans: list[SourcePlan], list_file: str | os.PathLike | None = None
) -> UserError | None:
    """One error naming how many prefixes are not (completely) tokenized and the first few, or None.

    With `list_file`, every one of them is written there (one `FIELD<TAB>PREFIX<TAB>PROBLEM` line each) and the error
    says where; without, it says which command writes that list."""
    bad = [p for sp in plans for p in sp.prefixes if p.summary is None]
    if not bad:
        return None
    total = sum(len(sp.prefixes) for sp in plans)
    listing = "; ".join(f"{p.field}: {p.prefix}: {p.problem}" for p in bad[:SHOWN_PREFIXES])
    rest = len(bad) - SHOWN_PREFIXES
    if rest > 0:
        if list_file is not None:
            atomic.write_text(list_file, "".join(f"{p.field}\t{p.prefix}\t{p.problem}\n" for p in bad))
            listing += f"; and {rest} more (all {len(bad)} listed in {list_file})"
        else:
            listing += f"; and {rest} more (`cptkit mix resolve {mixture.file}` lists them all in a file)"
    return UserError(
        f"{len(bad)} of {total} prefixes are not usable: {listing} (run `cptkit tokenize {mixture.file}`)",
        file=mixture.file,
        field=bad[0].field if len(bad) == 1 else None,
    )


def resolve(mixture: Mixture, missing_list: str | os.PathLike | None = None) -> ResolvedBlend:
    """Resolve a loaded mixture; raises UserError counting ALL prefixes that are missing or broken (naming the first
    few, and listing all of them in `missing_list` if given)."""
    plans = plan(mixture)
    error = missing_error(mixture, plans, missing_list)
    if error is not None:
        raise error
    conflict = tokenizer_conflict(plans)
    if conflict:
        raise UserError(f"{conflict}; re-tokenize them with one tokenizer", file=mixture.file)
    entries = tuple(
        BlendEntry(
            source=sp.source.name,
            group=sp.source.group,
            prefix=p.path,
            weight_tokens=float(p.weight_tokens),  # type: ignore[arg-type]
            available_tokens=p.summary.tokens,  # type: ignore[union-attr]
            idx_sha256=_idx_sha256(p.path),
            fim=sp.source.fim.describe() if sp.source.fim else None,
        )
        for sp in plans
        for p in sp.prefixes
    )
    zero = [e for e in entries if e.available_tokens == 0]
    if zero:
        raise UserError(f"prefix {zero[0].prefix} holds no tokens", file=mixture.file, field=f"source {zero[0].source}")
    return ResolvedBlend(
        mixture=mixture.name,
        mixture_file=mixture.file,
        tokenizer=mixture.tokenizer,
        total_tokens=mixture.total_tokens,
        entries=entries,
        fingerprint=fingerprint(entries),
    )


def resolve_file(path: str | os.PathLike) -> ResolvedBlend:
    """`load_mixture` + `resolve`: the one call the trainer needs."""
    return resolve(load_mixture(path))
