"""cptkit: continual pre-training recipes on megatron-core."""

__version__ = "0.1.0"
