"""Data mixtures: the schema of `data_mix/*.yaml`, the Megatron blend they resolve to, and `cptkit mix`.

Public API (pure Python, no torch/megatron import):

    from cptkit.mix import load_mixture, resolve, resolve_file
    mixture = load_mixture("data_mix/demo.yaml")     # validated Mixture, or UserError naming file and field
    blend = resolve_file("data_mix/demo.yaml")       # ResolvedBlend: entries, megatron_blend(), fingerprint
"""

from cptkit.mix.resolve import BlendEntry, ResolvedBlend, resolve, resolve_file
from cptkit.mix.schema import Dataset, Group, Input, Mixture, Source, load_mixture

__all__ = [
    "BlendEntry",
    "Dataset",
    "Group",
    "Input",
    "Mixture",
    "ResolvedBlend",
    "Source",
    "load_mixture",
    "resolve",
    "resolve_file",
]
