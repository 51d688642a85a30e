"""Data mixtures: the schema of `data_mix/*.yaml`, the Megatron blend they resolve to, and `cptkit mix`.

Public API (pure Python, no torch/megatron import):

    from cptkit.mix import load_mixture, resolve_file
    mixture = load_mixture("data_mix/demo.yaml")     # validated Mixture, or UserError naming file and field
    blend = resolve_file("data_mix/demo.yaml")       # ResolvedBlend: entries, megatron_blend(), fingerprint

The names are imported on first use: `cptkit.mix.cli` is imported by every `cptkit` command to build the parser, and
pydantic + numpy would add ~0.3 s to each (a whole `cptkit tokenize` startup budget). The function `resolve` is
not re-exported: its name is also the submodule's, which Python binds here once anything imports `cptkit.mix.resolve`
(use `from cptkit.mix.resolve import resolve`).
"""

import importlib

_EXPORTS = {
    "BlendEntry": "cptkit.mix.resolve",
    "ResolvedBlend": "cptkit.mix.resolve",
    "resolve_file": "cptkit.mix.resolve",
    "Dataset": "cptkit.mix.schema",
    "Group": "cptkit.mix.schema",
    "Input": "cptkit.mix.schema",
    "Mixture": "cptkit.mix.schema",
    "Source": "cptkit.mix.schema",
    "load_mixture": "cptkit.mix.schema",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'cptkit.mix' has no attribute {name!r}")
