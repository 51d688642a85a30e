"""The mixture file (`data_mix/*.yaml`): typed models and `load_mixture`.

A mixture names the sources of one continual-pre-training run, how many tokens to train on from each, and the
Megatron prefixes they are tokenized to. Every field carries a `description=` (with its unit); `cptkit mix schema`
renders them as the reference in docs/mixture.md, so the docs cannot drift from the code.

    from cptkit.mix import load_mixture
    mixture = load_mixture("data_mix/demo.yaml")   # raises cptkit.errors.UserError naming file and field

Loading is pure Python (pydantic + PyYAML): no torch, no megatron, so `cptkit mix` runs on a login node.
"""

from __future__ import annotations

import os
from enum import StrEnum
from typing import Annotated, Any, ClassVar

from pydantic import BeforeValidator, ConfigDict, Field

from cptkit.config import ConfigModel, Origins, Section
from cptkit.mix.fim import FimSettings
from cptkit.util.units import parse_tokens

# A group's summed source share may differ from its declared percent by this much (percentage points) before
# `cptkit mix show` warns; the hard limit is the mixture's `tolerance_points`.
WARN_POINTS = 0.1


def _tokens(value: Any) -> int:
    if value is None:
        raise ValueError("expected a token count like '8B' or '850M', got nothing")
    return parse_tokens(value)


def _percent(value: Any) -> float:
    """Accept 16, 16.0 or '16%'."""
    if isinstance(value, str) and value.strip().endswith("%"):
        value = value.strip()[:-1]
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"expected a percentage like 16 or '16%', got {value!r}") from None
    if not 0 < number <= 100:
        raise ValueError(f"a percentage must be in (0, 100], got {value!r}")
    return number


Tokens = Annotated[int, BeforeValidator(_tokens)]
Percent = Annotated[float, BeforeValidator(_percent)]


class _Strict(Section):
    model_config = ConfigDict(frozen=True)


class InputFormat(StrEnum):
    auto = "auto"
    jsonl = "jsonl"
    jsonl_gz = "jsonl.gz"
    jsonl_zst = "jsonl.zst"
    parquet = "parquet"
    hf_disk = "hf_disk"


class Input(_Strict):
    """Raw documents that `cptkit tokenize` turns into one Megatron prefix."""

    paths: list[str] = Field(
        min_length=1,
        description="File globs of the raw documents; `${VAR}` expands. Relative paths are taken from "
        "the current directory.",
    )
    format: InputFormat = Field(
        InputFormat.auto,
        description="File format: `auto` (from the extension), `jsonl`, `jsonl.gz`, `jsonl.zst`, `parquet`, or "
        "`hf_disk` (a `datasets.save_to_disk` directory).",
    )
    text_field: str = Field("text", min_length=1, description="Name of the field holding each document's text.")


class SpecialTokens(StrEnum):
    text = "text"
    parse = "parse"


class Tokenization(_Strict):
    """How documents become tokens (`cptkit tokenize` follows it; `mix check` and the trainer hold the prefixes to it).

    On the mixture it applies to every source; on a source, each field given overrides the mixture's. The published
    Swallow corpora (okoge-kaz/Megatron-LM `preprocess_data.py --tokenizer-type Llama3Tokenizer --append-eod`) are
    `{bos: true, eod: true, special_tokens: parse}`. One vocabulary per blend: the tokenizer is the mixture's
    `tokenizer`, never per source.
    """

    bos: bool | None = Field(
        None,
        description="Start every document with the tokenizer's BOS id (`<|begin_of_text|>`), as the Swallow fork's "
        "Llama3Tokenizer does; upstream Megatron-LM adds none. Mixture default: `false`.",
    )
    eod: bool | None = Field(
        None,
        description="End every document with the end-of-document id (`<|end_of_text|>`, Megatron-LM's "
        "`--append-eod`). Mixture default: `true`.",
    )
    special_tokens: SpecialTokens | None = Field(
        None,
        description="Special-token strings inside a document's text (`<|begin_of_text|>` in a code file): `text` "
        "encodes them as ordinary text, so data cannot inject control ids; `parse` turns them into the special ids, "
        "as Hugging Face `encode()` and Megatron-LM's tools do. Mixture default: `text`.",
    )


class Dataset(_Strict):
    """One Megatron prefix inside a multi-prefix source (e.g. one Common Crawl dump of Swallow Corpus v2)."""

    prefix: str = Field(
        min_length=1,
        description="Megatron prefix: the dataset is `PREFIX.bin` + `PREFIX.idx` (+ cptkit's `PREFIX.manifest.json`).",
    )
    input: Input | None = Field(
        None, description="Raw documents tokenized into this prefix; omit if it was tokenized elsewhere."
    )
    tokens: Tokens | None = Field(
        None,
        description="Tokens to train on from this prefix (`8B`, `850M`, or a number). Used as the proportions in "
        "which the source's target is split over its prefixes; give it for every prefix or for none (then the split "
        "follows each prefix's available tokens, so every prefix sees the same number of epochs).",
    )


class Source(_Strict):
    """One corpus of the mixture, trained on for a target number of tokens."""

    name: str = Field(min_length=1, description="Unique name of the source, used in tables, the blend and logs.")
    group: str | None = Field(
        None, description="Group this source counts toward (a key of `groups`); required when `groups` is given."
    )
    tokens: Tokens | None = Field(
        None,
        description="Target: tokens to train on from this source (`8B`, `0.84B`, `850M`). Give this or `share`; may "
        "be omitted for a multi-prefix source whose every dataset has `tokens` (the target is then their sum).",
    )
    share: Percent | None = Field(
        None, description="Target as a percentage of `total_tokens` (e.g. `16` or `'16%'`), instead of `tokens`."
    )
    max_epochs: float | None = Field(
        None,
        gt=0,
        description="Passes over this source's available tokens above which `mix show` warns; "
        "defaults to the mixture's `max_epochs`.",
    )
    fim: FimSettings | None = Field(
        None,
        description="Fill-in-the-middle applied to this source's samples by the trainer's dataset; null = plain "
        "left-to-right text.",
    )
    input: Input | None = Field(
        None, description="Raw documents tokenized into `prefix`; omit if the prefix was tokenized elsewhere."
    )
    prefix: str | None = Field(
        None,
        min_length=1,
        description="Megatron prefix this source tokenizes to (`PREFIX.bin`/`.idx`). Give this or `datasets`.",
    )
    datasets: list[Dataset] | None = Field(
        None,
        min_length=1,
        description="Several prefixes making up this source (e.g. one per Common Crawl dump), instead of `prefix`.",
    )
    tokenization: Tokenization | None = Field(
        None,
        description="This source's tokenization settings; the fields given override the mixture's `tokenization`.",
    )

    def prefixes(self) -> list[Dataset]:
        """The source's datasets, a single-prefix source seen as one dataset."""
        if self.datasets is not None:
            return list(self.datasets)
        return [Dataset(prefix=self.prefix, input=self.input)]  # type: ignore[arg-type]


class Group(_Strict):
    """A set of sources whose summed target should be a fixed percentage of the mixture (e.g. 16% code)."""

    percent: Percent = Field(description="Target share of the mixture's tokens, in percent (0–100].")
    description: str = Field("", description="Free text shown by `mix show`.")


class Mixture(ConfigModel):
    """A data mixture: what one continual-pre-training run trains on."""

    model_config = ConfigDict(frozen=True)
    file_kind: ClassVar[str] = "mixture file"

    name: str = Field(min_length=1, description="Name of the mixture (used in run names and the blend file).")
    description: str = Field("", description="Free text: what this ablation changes and why.")
    tokenizer: str = Field(
        min_length=1,
        description="Tokenizer the prefixes are made with: a path to `tokenizer.json`, a tiktoken/SentencePiece "
        "`tokenizer.model`, a directory holding them, or the built-in alias `llama3`. `${VAR}` expands.",
    )
    tokenization: Tokenization = Field(
        default_factory=Tokenization,
        description="How every source's documents become tokens: BOS, EOD, special-token strings in text; sources "
        "may override fields. Prefixes made with other settings or another vocabulary are refused by `mix check` and "
        "the trainer; prefixes without a cptkit manifest (made by Megatron-LM or the Swallow fork) are taken as made "
        "with these settings.",
    )
    total_tokens: Tokens | None = Field(
        None,
        description="Token budget of the run (e.g. `50B`). Needed for `share` targets; `mix show` warns when the "
        "targets do not add up to it.",
    )
    max_epochs: float = Field(
        4.0,
        gt=0,
        description="Default for every source: passes over its available tokens above which `mix show` warns.",
    )
    tolerance_points: float = Field(
        0.5,
        ge=0,
        description="How far (percentage points) a group's summed source share may be from its `percent` before the "
        f"mixture is rejected; drifts over {WARN_POINTS} point are only warned about.",
    )
    groups: dict[str, Group] | None = Field(
        None, description="Named groups with target percentages, e.g. `{code: {percent: 16}, text: {percent: 84}}`."
    )
    sources: list[Source] = Field(min_length=1, description="The sources, in the order they appear in the blend.")

    # Where the mixture was loaded from; set by load_mixture, used in error messages only.
    _file: str = ""

    @property
    def file(self) -> str:
        return self._file

    def loaded(self, file: str, origin: Origins) -> None:
        from cptkit.mix.validate import check_rules  # the rules between fields; validate.py imports this module

        self._file = file
        check_rules(self)

    def source_max_epochs(self, source: Source) -> float:
        return source.max_epochs if source.max_epochs is not None else self.max_epochs


def load_mixture(path: str | os.PathLike) -> Mixture:
    """Read, `${VAR}`-expand and validate a mixture YAML; every problem is a `UserError` naming file and field."""
    from cptkit.mix.validate import load  # keeps this module the plain schema, import-cycle free

    return load(path)
