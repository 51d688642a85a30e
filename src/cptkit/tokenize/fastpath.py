"""When a HF `tokenizer.json` can be run by tiktoken instead, with identical ids (about 4x faster per core).

A Llama-3 `tokenizer.json` is a conversion of Meta's tiktoken `tokenizer.model`. tiktoken and the `tokenizers` BPE give
the same ids for every text exactly when the file says so:
  - model BPE with `ignore_merges: true` (a pre-tokenized piece that is a vocabulary entry is taken whole, as tiktoken
    does; without it the `tokenizers` BPE never produces 588 Llama-3 ids such as " Việc"), no normalizer, no
    unknown token, no dropout;
  - pre-tokenizer = the Llama-3 split regex (isolated) followed by ByteLevel without its own regex;
  - merges complete and in rank order: `(a, b)` is a merge exactly when `a`, `b` and `a+b` are vocabulary entries,
    and merge k+1 never makes a token of lower id than merge k (tiktoken merges the pair of lowest resulting rank,
    `tokenizers` the pair of lowest merge index: the same pair whenever both orders agree);
  - added tokens are special, sit above the BPE ids, and are matched literally (no lstrip/rstrip/normalization).
`tiktoken_equivalent(path)` checks all of it from the file (~1.5 s for Llama-3, remembered per file) and returns the
BPE ranks and special tokens to build the tiktoken encoder from, or the reason it is not equivalent.

    python -c "from cptkit.tokenize.fastpath import tiktoken_equivalent as t; print(t('tok/tokenizer.json')[1])"
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from cptkit.errors import UserError

# Llama-3 / 3.1 pre-tokenizer regex, as in Meta's reference `tokenizer.py` (llama-models).
LLAMA3_PATTERN = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"


@lru_cache(maxsize=1)
def byte_decoder() -> dict[str, int]:
    """GPT-2's ByteLevel alphabet inverted: the printable character standing for each byte -> the byte."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars = list(keep)
    extra = 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(keep, chars, strict=True)}


def token_bytes(token: str) -> bytes | None:
    """A ByteLevel vocabulary entry as raw bytes; None if it holds a character outside the alphabet."""
    dec = byte_decoder()
    try:
        return bytes(dec[ch] for ch in token)
    except KeyError:
        return None


def _pre_tokenizer_ok(pre: dict | None) -> bool:
    if not pre or pre.get("type") != "Sequence" or len(pre.get("pretokenizers", [])) != 2:
        return False
    split, byte_level = pre["pretokenizers"]
    return (
        split.get("type") == "Split"
        and split.get("pattern") == {"Regex": LLAMA3_PATTERN}
        and split.get("behavior") == "Isolated"
        and not split.get("invert")
        and byte_level.get("type") == "ByteLevel"
        and byte_level.get("use_regex") is False
        and byte_level.get("add_prefix_space") is False
    )


def _merges_ok(vocab: dict[str, int], merges: list) -> str | None:
    last = -1
    seen = set()
    for k, m in enumerate(merges):
        a, b = m.split(" ") if isinstance(m, str) else m
        rank = vocab.get(a + b)
        if rank is None or a not in vocab or b not in vocab:
            return f"merge {k} ({a!r}, {b!r}) is not made of vocabulary entries"
        if rank < last:
            return f"merge {k} is out of rank order"
        last = rank
        seen.add((a, b))
    # Completeness: every split of an entry into two entries must be a merge (tiktoken would use it).
    count = 0
    for tok in vocab:
        for i in range(1, len(tok)):
            if tok[:i] in vocab and tok[i:] in vocab:
                count += 1
                if (tok[:i], tok[i:]) not in seen:
                    return f"the merges lack ({tok[:i]!r}, {tok[i:]!r})"
    return None if count == len(seen) else "duplicate merges"


def _check(doc: dict) -> tuple[dict[bytes, int], dict[str, int]] | str:
    model = doc.get("model") or {}
    if model.get("type") != "BPE":
        return "not a BPE model"
    if not model.get("ignore_merges"):
        return "model.ignore_merges is not true (whole-piece lookup, as tiktoken does, is off)"
    if model.get("dropout") or model.get("unk_token") or model.get("continuing_subword_prefix"):
        return "BPE dropout, unk_token or subword prefixes are set"
    if model.get("end_of_word_suffix") or doc.get("normalizer") is not None:
        return "a normalizer or end-of-word suffix is set"
    if not _pre_tokenizer_ok(doc.get("pre_tokenizer")):
        return "the pre-tokenizer is not the Llama-3 regex + ByteLevel"
    vocab: dict[str, int] = model.get("vocab") or {}
    ranks: dict[bytes, int] = {}
    for tok, rank in vocab.items():
        raw = token_bytes(tok)
        if raw is None:
            return f"vocabulary entry {tok!r} is not ByteLevel"
        ranks[raw] = rank
    if sorted(ranks.values()) != list(range(len(ranks))):
        return "the BPE ids are not 0..n-1"
    specials: dict[str, int] = {}
    for t in doc.get("added_tokens") or []:
        if not t.get("special") or t.get("lstrip") or t.get("rstrip") or t.get("normalized"):
            return f"added token {t.get('content')!r} is not a plain special token"
        if t["id"] < len(ranks):
            return f"added token {t['content']!r} overrides BPE id {t['id']}"
        specials[t["content"]] = t["id"]
    problem = _merges_ok(vocab, model.get("merges") or [])
    if problem:
        return problem
    return ranks, specials


@lru_cache(maxsize=8)
def _cached(path: str, size: int, mtime_ns: int) -> tuple[dict[bytes, int], dict[str, int]] | str:
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise UserError(f"cannot load tokenizer.json: {e}", file=path) from None
    return _check(doc) if isinstance(doc, dict) else "not a JSON object"


def tiktoken_equivalent(path: str | Path) -> tuple[tuple[dict[bytes, int], dict[str, int]] | None, str]:
    """((BPE ranks, special tokens), "") when tiktoken gives this tokenizer.json's ids, else (None, the reason)."""
    st = Path(path).stat()
    got = _cached(str(path), st.st_size, st.st_mtime_ns)
    if isinstance(got, str):
        return None, got
    return got, ""
