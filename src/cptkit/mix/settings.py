"""A mixture's tokenization settings, and the one check that its prefixes were made with them (torch-free).

Each source's effective settings are the mixture's `tokenization:` with the source's own fields on top
(`effective`). `check_tokenization` holds every prefix of a resolved blend to them and to the mixture's vocabulary:

- a prefix with a cptkit manifest (`PREFIX.manifest.json`) must record the same BOS / EOD / special-token choice,
  the same BOS and EOD ids, and a tokenizer of the same vocabulary (`vocab_sha256`: the id -> bytes table, the same
  for a tokenizer.json and the tiktoken tokenizer.model it was converted from);
- a prefix without one (made by Megatron-LM's or the Swallow fork's `preprocess_data.py`) is taken as made with the
  declared settings, but its `.idx` token dtype must be the one Megatron picks for the declared vocabulary (a uint16
  prefix cannot hold Llama-3 ids, an int32 one was not made with a small vocabulary);
- with `model_vocab_size` (the trainer), every id the declared settings can produce must fit the model's embedding.

`cptkit mix check` and the trainer call it with one line; it raises one `UserError` naming each prefix that does not
match and why.

    python -c "from cptkit.mix.settings import check_tokenization as c; from cptkit.mix import resolve_file as r; \\
        c('data_mix/demo.yaml', r('data_mix/demo.yaml'))"
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from cptkit.errors import UserError
from cptkit.mix.idx import IdxFormatError, read_idx
from cptkit.mix.schema import Mixture, Source, SpecialTokens, load_mixture


@dataclass(frozen=True)
class Settings:
    """How one source's documents become tokens."""

    bos: bool = False
    eod: bool = True
    special_tokens: str = SpecialTokens.text.value

    @property
    def split_special_tokens(self) -> bool:
        """transformers' / the tokenize pipeline's name: True keeps special-token strings as text."""
        return self.special_tokens == SpecialTokens.text.value

    def describe(self) -> str:
        layout = " + ".join([*(["BOS"] if self.bos else []), "ids", *(["EOD"] if self.eod else [])])
        how = "parsed as special ids" if self.special_tokens == "parse" else "kept as text"
        return f"{layout}, special-token strings {how}"

    def to_json(self) -> dict[str, Any]:
        return {"bos": self.bos, "eod": self.eod, "special_tokens": self.special_tokens}


def effective(mixture: Mixture, source: Source | None = None) -> Settings:
    """The mixture's settings (cptkit's defaults where it is silent), with `source`'s own fields on top."""
    values = Settings().to_json()
    for block in (mixture.tokenization, source.tokenization if source is not None else None):
        if block is None:
            continue
        for key, value in block.model_dump(exclude_none=True).items():
            values[key] = getattr(value, "value", value)
    return Settings(**values)


def _recorded(doc: dict) -> Settings | None:
    """The settings a cptkit manifest records (its `options`), or None if it does not record them all."""
    opts = doc.get("options") if isinstance(doc.get("options"), dict) else {}
    keys = ("prepend_bos", "append_eod", "split_special_tokens")
    if not all(isinstance(opts.get(k), bool) for k in keys):
        return None
    return Settings(opts["prepend_bos"], opts["append_eod"], "text" if opts["split_special_tokens"] else "parse")


@dataclass(frozen=True)
class Vocabulary:
    """The declared tokenizer, as far as the check needs it."""

    spec: str
    vocab_sha256: str
    file_sha256: str
    vocab_size: int
    ordinary_ids: int
    bos_id: int | None
    eod_id: int | None


@lru_cache(maxsize=16)
def _vocabulary(spec: str) -> Vocabulary:
    from cptkit.tokenize.tokenizers import load_tokenizer

    tok = load_tokenizer(spec)
    return Vocabulary(spec, tok.vocab_sha256, tok.checksum, tok.vocab_size, tok.ordinary_ids, tok.bos_id, tok.eod_id)


def declared_vocabulary(mixture: Mixture) -> Vocabulary:
    """The mixture's tokenizer, loaded; a missing or broken one is a UserError naming the `tokenizer` field."""
    try:
        return _vocabulary(mixture.tokenizer)
    except UserError as e:
        raise UserError(e.one_line(), file=mixture.file, field="tokenizer") from None


def _recorded_vocab_sha(tok: dict) -> str | None:
    """A manifest's vocabulary: recorded by newer cptkit; older manifests name a file, loaded if it still exists."""
    if isinstance(tok.get("vocab_sha256"), str):
        return tok["vocab_sha256"]
    file = tok.get("file")
    if isinstance(file, str) and os.path.isfile(file):
        try:
            return _vocabulary(file).vocab_sha256
        except UserError:
            return None
    return None


def megatron_dtype(vocab_size: int) -> str:
    """megatron-core's `DType.optimal_dtype`: uint16 below 65,500 entries, else int32."""
    return "uint16" if vocab_size < 65500 else "int32"


def prefix_problem(prefix: str, want: Settings, vocab: Vocabulary) -> str | None:
    """Why `prefix` was not made with `want` and `vocab`, or None when it was (or says nothing against it)."""
    mpath = Path(f"{prefix}.manifest.json")
    if not mpath.is_file():  # made by Megatron-LM or the fork: accepted as declared, if its dtype fits
        try:
            dtype = read_idx(prefix).dtype
        except (IdxFormatError, OSError) as e:
            return str(e)
        need = megatron_dtype(vocab.vocab_size)
        if dtype != need:
            return (
                f"its .idx stores {dtype} tokens (no manifest), but the declared tokenizer's {vocab.vocab_size:,} ids "
                f"need {need}: it was made with another vocabulary"
            )
        return None
    try:
        doc = json.loads(mpath.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        return f"cannot read {mpath}: {e}"
    tok = doc.get("tokenizer") if isinstance(doc.get("tokenizer"), dict) else {}
    got_vocab = _recorded_vocab_sha(tok)
    if got_vocab != vocab.vocab_sha256 and tok.get("sha256") != vocab.file_sha256:
        return (
            f"made with tokenizer {tok.get('spec') or tok.get('file')!r} ({tok.get('vocab_size', '?')} ids), another "
            f"vocabulary than the declared {vocab.spec!r}"
        )
    got = _recorded(doc)
    if got is None:
        return f"{mpath} does not record its tokenization settings; re-tokenize it"
    diffs = [
        f"{k} {'on' if v else 'off'}" if isinstance(v, bool) else f"special tokens as {v}"
        for k, v in got.to_json().items()
        if v != want.to_json()[k]
    ]
    if diffs:
        return f"made with {', '.join(diffs)} ({got.describe()}); the mixture declares {want.describe()}"
    opts = doc.get("options", {})
    for key, flag, declared in (("bos_id", want.bos, vocab.bos_id), ("eod_id", want.eod, vocab.eod_id)):
        if flag and opts.get(key) != declared:
            return f"its {key} is {opts.get(key)}, the declared tokenizer's is {declared}"
    return None


def check_tokenization(mixture: Mixture | str | os.PathLike, blend, *, model_vocab_size: int | None = None) -> None:
    """Raise one UserError naming every prefix of `blend` not made with the mixture's declared settings/vocabulary.

    `blend`: a `ResolvedBlend` of this mixture. `model_vocab_size`: the model's vocabulary (the trainer passes it).
    """
    mix = mixture if isinstance(mixture, Mixture) else load_mixture(mixture)
    vocab = declared_vocabulary(mix)
    sources = {s.name: s for s in mix.sources}
    if model_vocab_size is not None:
        parse = any(effective(mix, s).special_tokens == "parse" for s in mix.sources)
        used = [vocab.ordinary_ids - 1, *(i for i in (vocab.bos_id, vocab.eod_id) if i is not None)]
        top = vocab.vocab_size - 1 if parse else max(used)
        if top >= model_vocab_size:
            raise UserError(
                f"tokenizer {vocab.spec!r} produces ids up to {top:,}; the model's vocabulary has {model_vocab_size:,}",
                file=mix.file,
                field="tokenizer",
            )
    bad = []
    for entry in blend.entries:
        problem = prefix_problem(entry.prefix, effective(mix, sources.get(entry.source)), vocab)
        if problem:
            bad.append((entry, problem))
    if bad:
        listing = "; ".join(f"prefix {e.prefix} (source {e.source}): {p}" for e, p in bad)
        raise UserError(
            f"{len(bad)} prefix(es) were not tokenized as the mixture declares: {listing} "
            "(re-tokenize them with `cptkit tokenize --overwrite`, or declare how they were made in `tokenization:`)",
            file=mix.file,
            field="tokenization",
        )
