"""Per-architecture mapping specs (`cptkit/convert/specs/*.yaml`) and the HF config.json → `ModelConfig` translation.

A spec is data: which HF config keys give each `ModelConfig` field, which HF config values the megatron-core model can
reproduce, and where each HF tensor goes (see `specs/llama.yaml` for the format). The shipped specs are package data
(importlib.resources), so a wheel installed on a cluster converts without the source tree; your own specs come from
`--spec FILE_OR_DIR` or the directories in `CPTKIT_CONVERT_SPECS` (`:`-separated), and win over a shipped spec of the
same name. The engine knows only the tensor
*kinds* (replicated, column, row, vocab, qkv, gate_up); adding Mistral or Qwen3 is a new YAML file plus a test.

Torch-free. Try it:  python -c "from cptkit.convert.spec import load_specs; print(list(load_specs()))"
"""

from __future__ import annotations

import importlib.resources
import os
import re
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import ConfigDict, Field, field_validator

from cptkit.config import ConfigModel, Section
from cptkit.errors import UserError

# The shipped specs: package data, found the same way from a checkout, an editable install or a wheel.
SPEC_DIR = Path(str(importlib.resources.files("cptkit.convert") / "specs"))
# Directories of your own specs (os.pathsep-separated), read after the shipped ones.
USER_SPECS_ENV = "CPTKIT_CONVERT_SPECS"

Kind = Literal["replicated", "column", "row", "vocab", "qkv", "gate_up"]
# Number of HF tensors each kind fuses into one megatron-core tensor.
HF_TENSORS_PER_KIND = {"replicated": 1, "column": 1, "row": 1, "vocab": 1, "qkv": 3, "gate_up": 2}


class WeightSpec(Section):
    """One megatron-core tensor and the HF tensor(s) it is made of."""

    model_config = ConfigDict(frozen=True)

    mcore: str = Field(description="Canonical megatron-core key (layers: without the layer number).")
    aliases: tuple[str, ...] = Field((), description="Other keys the same tensor is saved under (read side only).")
    hf: tuple[str, ...] = Field(description="HF tensor name(s); `{i}` is the layer index.")
    kind: Kind
    when: Literal["always", "untied", "qkv_bias"] = "always"
    extra_state: bool = Field(False, description="megatron-core saves an `_extra_state` object beside this linear.")

    @field_validator("hf", mode="before")
    @classmethod
    def _listify(cls, v: Any) -> Any:
        return (v,) if isinstance(v, str) else v

    @field_validator("hf")
    @classmethod
    def _count(cls, v: tuple[str, ...], info: Any) -> tuple[str, ...]:
        kind = info.data.get("kind")
        if kind is not None and len(v) != HF_TENSORS_PER_KIND[kind]:
            raise ValueError(f"kind {kind!r} takes {HF_TENSORS_PER_KIND[kind]} HF tensor name(s), got {len(v)}")
        return v


class ArchSpec(ConfigModel):
    """A whole architecture's mapping (one `specs/<name>.yaml`)."""

    model_config = ConfigDict(frozen=True)
    file_kind: ClassVar[str] = "mapping spec"

    name: str
    hf_architectures: tuple[str, ...] = ()
    hf_model_types: tuple[str, ...] = ()
    config: dict[str, str | list[str]]
    defaults: dict[str, Any] = Field(default_factory=dict)
    constants: dict[str, Any] = Field(default_factory=dict)
    require: dict[str, list[Any]] = Field(default_factory=dict)
    weights: tuple[WeightSpec, ...]
    layer_weights: tuple[WeightSpec, ...]
    ignore: tuple[str, ...] = ()

    def active(self, weights: tuple[WeightSpec, ...], *, tied: bool, qkv_bias: bool) -> list[WeightSpec]:
        """The weights that exist for a model with these options."""
        keep = {"always": True, "untied": not tied, "qkv_bias": qkv_bias}
        return [w for w in weights if keep[w.when]]

    def plan(self, cfg: Any) -> list[tuple[WeightSpec, int | None]]:
        """Every megatron-core tensor of a model, as (weight, layer or None), in HF file order: embedding, layers,
        final norm, output layer."""
        opts = dict(tied=cfg.tie_word_embeddings, qkv_bias=cfg.add_qkv_bias)
        top = self.active(self.weights, **opts)
        first = [(w, None) for w in top if w.kind == "vocab" and "embed" in w.mcore]
        rest = [(w, None) for w in top if (w, None) not in first]
        layers = [(w, i) for i in range(cfg.num_layers) for w in self.active(self.layer_weights, **opts)]
        return first + layers + rest

    def is_ignored(self, hf_name: str) -> bool:
        return any(re.fullmatch(p, hf_name) for p in self.ignore)


def load_spec(path: str | Path) -> ArchSpec:
    return ArchSpec.from_file(path)


def spec_files(extra: list[str | Path] = ()) -> list[Path]:
    """The shipped specs, then `CPTKIT_CONVERT_SPECS`'s directories, then `extra` (files or directories)."""
    if not SPEC_DIR.is_dir():  # only a broken install gets here
        raise UserError("the shipped mapping specs are missing: reinstall cptkit", file=str(SPEC_DIR))
    files = sorted(SPEC_DIR.glob("*.yaml"))
    user = [Path(d) for d in os.environ.get(USER_SPECS_ENV, "").split(os.pathsep) if d]
    for where in [*user, *map(Path, extra)]:
        if where.is_dir():
            files += sorted(where.glob("*.yaml"))
        elif where in user:
            raise UserError(f"not a directory (set by {USER_SPECS_ENV})", file=str(where))
        else:
            files.append(where)
    return files


def load_specs(extra: list[str | Path] = ()) -> dict[str, ArchSpec]:
    """Every shipped spec, plus user-given spec files or directories (which win on a name clash)."""
    specs = {}
    for path in spec_files(extra):
        spec = load_spec(path)
        specs[spec.name] = spec
    return specs


def find_spec(hf_config: dict[str, Any], config_file: str | Path, extra: list[str | Path] = ()) -> ArchSpec:
    """The spec whose HF architecture (or, failing that, model_type) matches config.json."""
    specs = load_specs(extra)
    archs = hf_config.get("architectures") or []
    for spec in specs.values():
        if any(a in spec.hf_architectures for a in archs):
            return spec
    model_type = hf_config.get("model_type")
    for spec in specs.values():
        if not archs and model_type in spec.hf_model_types:
            return spec
    supported = sorted(a for s in specs.values() for a in s.hf_architectures)
    what = f"architectures {archs}" if archs else f"model_type {model_type!r}"
    raise UserError(
        f"unsupported architecture: {what}; supported: {', '.join(supported)} (add a spec with --spec FILE for others; see docs/convert.md)",
        file=str(config_file),
        field="architectures" if archs else "model_type",
    )


_MISSING = object()


def _lookup(hf_config: dict[str, Any], dotted: str) -> Any:
    value: Any = hf_config
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return _MISSING
        value = value[part]
    return value


def _rope_scaling(value: Any, config_file: str, field: str) -> dict[str, Any] | None:
    """HF `rope_scaling` (transformers 4) or `rope_parameters` (5) → ModelConfig's `rope_scaling`."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise UserError(f"expected a mapping, got {value!r}", file=config_file, field=field)
    rope_type = value.get("rope_type", value.get("type", "default"))
    if rope_type == "default":
        return None
    if rope_type != "llama3":
        raise UserError(
            f"unsupported RoPE scaling type {rope_type!r} (supported: llama3, or none)", file=config_file, field=field
        )
    keys = ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings")
    missing = [k for k in keys if k not in value]
    if missing:
        raise UserError(f"llama3 RoPE scaling lacks {missing}", file=config_file, field=field)
    return {"rope_type": "llama3", **{k: value[k] for k in keys}}


def model_config_fields(hf_config: dict[str, Any], spec: ArchSpec, config_file: str | Path) -> dict[str, Any]:
    """ModelConfig fields read from config.json (vocabulary padding is added by the caller)."""
    config_file = str(config_file)
    for key, allowed in spec.require.items():
        value = hf_config.get(key)
        if value not in allowed:
            raise UserError(
                f"{value!r} is not supported by the {spec.name} converter (supported: {allowed})",
                file=config_file,
                field=key,
            )
    fields: dict[str, Any] = {}
    for name, keys in spec.config.items():
        keys = [keys] if isinstance(keys, str) else keys
        value = next((v for v in (_lookup(hf_config, k) for k in keys) if v is not _MISSING), _MISSING)
        if name == "rope_scaling":
            fields[name] = _rope_scaling(None if value is _MISSING else value, config_file, keys[0])
            continue
        if value is _MISSING or value is None:
            if name in spec.defaults:
                value = spec.defaults[name]
            elif name == "kv_channels" and "hidden_size" in fields and fields.get("num_attention_heads"):
                value = fields["hidden_size"] // fields["num_attention_heads"]
            else:
                raise UserError(f"missing (needed for {name})", file=config_file, field=keys[0])
        fields[name] = value
    fields.update(spec.constants)
    fields["architecture"] = spec.name
    return fields
