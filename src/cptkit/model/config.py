"""`ModelConfig`: everything needed to build a Llama/Qwen2-style GPTModel, stored as `cptkit_model.json`.

Written by `cptkit convert hf-to-mcore` next to the converted weights and copied into every checkpoint the trainer
saves, so the trainer builds the right TransformerConfig (including Llama-3.1 RoPE scaling) without flags, and the
exporter writes the right HF config.json. Torch-free: the launcher reads it on login nodes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import ConfigDict, Field, model_validator

from cptkit.config import ConfigModel, Section
from cptkit.errors import UserError
from cptkit.util.atomic import write_json

FILENAME = "cptkit_model.json"


class RopeScaling(Section):
    """Llama-3.x frequency-dependent RoPE scaling (HF `rope_scaling` with `rope_type: llama3`)."""

    model_config = ConfigDict(frozen=True)

    rope_type: Literal["llama3"] = "llama3"
    factor: float = Field(gt=0, description="Scale applied to low-frequency components (8 for Llama-3.1, 32 for 3.2).")
    low_freq_factor: float = Field(
        1.0, gt=0, description="Wavelengths above original_max_position_embeddings / this are scaled by `factor`."
    )
    high_freq_factor: float = Field(
        4.0, gt=0, description="Wavelengths below original_max_position_embeddings / this are left unscaled."
    )
    original_max_position_embeddings: int = Field(8192, gt=0, description="Context length (tokens) before scaling.")


class ModelConfig(ConfigModel):
    """Architecture of a decoder-only model in megatron-core terms. Sizes are counts, lengths are tokens."""

    file_kind: ClassVar[str] = FILENAME
    expand_variables: ClassVar[bool] = False  # written by cptkit: a `$` in hf_config is data, not a variable

    architecture: str = Field(description="Mapping spec name in convert/ (e.g. 'llama', 'qwen2').")
    num_layers: int = Field(gt=0, description="Transformer layers; 32 for Llama-3.1-8B.")
    hidden_size: int = Field(gt=0, description="Model width; 4096 for Llama-3.1-8B.")
    ffn_hidden_size: int = Field(gt=0, description="SwiGLU intermediate size (HF intermediate_size).")
    num_attention_heads: int = Field(gt=0, description="Query heads; 32 for Llama-3.1-8B.")
    num_query_groups: int = Field(gt=0, description="Key/value heads (GQA groups).")
    kv_channels: int = Field(gt=0, description="Head dimension.")
    vocab_size: int = Field(gt=0, description="True vocabulary size (rows a released model has).")
    padded_vocab_size: int = Field(gt=0, description="Embedding rows in megatron-core (vocab_size plus padding).")
    max_position_embeddings: int = Field(gt=0, description="Longest sequence the model supports, in tokens.")
    rotary_base: float = Field(gt=0, description="RoPE theta (500,000 for Llama-3).")
    rope_scaling: RopeScaling | None = Field(None, description="Llama-3.x RoPE scaling; null for plain RoPE.")
    norm_epsilon: float = Field(gt=0, description="RMSNorm epsilon.")
    tie_word_embeddings: bool = Field(False, description="True for Llama-3.2 1B/3B; false for 8B.")
    add_qkv_bias: bool = Field(False, description="Bias on the QKV projection (Qwen2).")
    hf_config: dict[str, Any] = Field(default_factory=dict, description="The base model's HF config.json, for export.")

    @model_validator(mode="after")
    def _check(self) -> ModelConfig:
        if self.num_attention_heads % self.num_query_groups:
            raise ValueError(
                f"num_attention_heads ({self.num_attention_heads}) must be divisible by "
                f"num_query_groups ({self.num_query_groups})"
            )
        if self.padded_vocab_size < self.vocab_size:
            raise ValueError(f"padded_vocab_size ({self.padded_vocab_size}) < vocab_size ({self.vocab_size})")
        return self

    # -- derived sizes ---------------------------------------------------------------------------------------------
    @property
    def num_parameters(self) -> int:
        """Parameters as trained (padded embedding rows included)."""
        from cptkit.model.shape import count_parameters

        return count_parameters(self.model_dump(), vocab_size=self.padded_vocab_size)

    # -- megatron-core --------------------------------------------------------------------------------------------
    def to_mcore(self, recipe=None, **overrides: Any):
        """This model's megatron-core `TransformerConfig`, with a training recipe's settings applied (parallelism,
        precision, init, recompute, attention backend: `cptkit.model.mcore.transformer_settings`) and then any
        `overrides` (TransformerConfig fields). The one place a TransformerConfig is made from cptkit's configs."""
        from cptkit.model.build import transformer_config
        from cptkit.model.mcore import transformer_settings

        settings = transformer_settings(recipe) if recipe is not None else {}
        return transformer_config(self, **{**settings, **overrides})

    # -- files -----------------------------------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / FILENAME
        write_json(path, self.model_dump(mode="json"))
        return path

    @classmethod
    def load(cls, directory: str | Path) -> ModelConfig:
        path = Path(directory)
        if path.is_dir():
            path = path / FILENAME
        if not path.is_file():
            raise UserError(
                f"no {FILENAME}: not a cptkit checkpoint (convert the HF model with `cptkit convert hf-to-mcore`)",
                file=str(path),
            )
        return cls.from_file(path)


def check_against_checkpoint(inline: dict | None, on_disk: dict, where: str, file_of) -> None:
    """The one check of a recipe's `model.config` against the initial checkpoint's config (the trainer and `cptkit
    plan` both call it): every key both give must agree, numbers compared as numbers (a YAML `5e5` equals the JSON's
    `500000`). `hf_config` is provenance, not shape. `file_of(key)` names the recipe file that set the key."""
    for key, value in (inline or {}).items():
        if key == "hf_config" or key not in on_disk:
            continue
        if _as_numbers(on_disk[key]) != _as_numbers(value):
            raise UserError(
                f"recipe says {value!r} but {where} has {on_disk[key]!r}",
                file=file_of(f"model.config.{key}"),
                field=f"model.config.{key}",
            )


def _as_numbers(value):
    if isinstance(value, dict):
        return {k: _as_numbers(v) for k, v in value.items()}
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return value


def pad_vocab_size(vocab_size: int, divisible_by: int = 128) -> int:
    """Megatron's `make-vocab-size-divisible-by` padding (128,256 stays 128,256 at 128)."""
    return -(-vocab_size // divisible_by) * divisible_by
