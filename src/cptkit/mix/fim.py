"""Fill-in-the-middle (FIM) as a mixture declares it: per-source settings and the FIM special-token table.

A source of a mixture may carry a `fim:` block; the trainer's dataset (`cptkit.train.fim`) then rewrites that
source's samples into prefix/suffix/middle order. This module is the declaration only (pydantic, no torch), so
`cptkit mix show` on a login node validates it and `cptkit convert mcore-to-hf` can write the same token table into
the released tokenizer:

    sources:
      - name: stack_v2
        tokens: 100B
        prefix: ${DATA_ROOT}/stack_v2_text_document
        fim: {rate: 0.5, spm_rate: 0.5, split: characters}

Llama-3's vocabulary has no FIM tokens. Four of its reserved special tokens are renamed, in the order they come:
the FIM strings of Llama-3.1-Future-Code-Ja (seed 004: `<|fim_prefix|>`, `<|fim_middle|>`, `<|fim_suffix|>`) plus
a pad. Which ids Future used is not public (shared/reference/fim.md), so the table below is cptkit's declaration:
the first free slots, `<|reserved_special_token_0|>`/`_1|>` (128002/128003) and `_2|>`/`_3|>` (128011/128012).
"""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field

from cptkit.config import Section

# role -> (token string, Llama-3 id, the reserved token it replaces). Read by the dataset and the HF export.
LLAMA3_FIM_TOKENS: dict[str, tuple[str, int, str]] = {
    "prefix": ("<|fim_prefix|>", 128002, "<|reserved_special_token_0|>"),
    "middle": ("<|fim_middle|>", 128003, "<|reserved_special_token_1|>"),
    "suffix": ("<|fim_suffix|>", 128011, "<|reserved_special_token_2|>"),
    "pad": ("<|fim_pad|>", 128012, "<|reserved_special_token_3|>"),
}


class FimSettings(Section):
    """Fill-in-the-middle for one source, applied when the trainer reads a sample (the tokenized data is not changed).

    A sample (`seq_length + 1` tokens) is cut at every end-of-document token into fragments; each fragment is
    transformed with probability `rate` (Megatron-LM's context-level FIM). The decision and the cut points depend only
    on the training seed, the prefix's position in the blend and the sample's index, so they are the same for any
    number of workers or data-parallel ranks and after a resume.
    """

    model_config = ConfigDict(frozen=True)

    rate: float = Field(
        gt=0,
        le=1,
        description="Probability that a fragment (a document, or the part of one inside the sample) is rearranged "
        "(Megatron-LM --fim-rate; 0.5 in StarCoder and SantaCoder).",
    )
    spm_rate: float = Field(
        0.5,
        ge=0,
        le=1,
        description="Of the rearranged fragments, the share in SPM order `<P><S>suffix<M>prefix middle`; the rest "
        "are PSM `<P>prefix<S>suffix<M>middle` (Megatron-LM --fim-spm-rate).",
    )
    split: Literal["characters", "tokens"] = Field(
        "characters",
        description="Where the two cut points fall: `characters` decodes the fragment, cuts the text and "
        "re-tokenizes the three parts (the FIM paper, Megatron-LM); `tokens` cuts between token ids (the fragment's "
        "tokens are kept, only reordered). A fragment that does not decode to clean text is cut on tokens.",
    )
    fragment_rate: float | None = Field(
        None,
        gt=0,
        le=1,
        description="Megatron-LM's --fim-split-sample mode: one draw per sample at `rate`, then each fragment of a "
        "chosen sample at this rate. null = every fragment drawn at `rate`.",
    )
    no_newline_start: bool = Field(
        True,
        description="Seed 004's rule: a middle (and a suffix) never starts with a newline; a cut before '\\n' moves "
        "after it, so the newline stays at the end of the prefix (and the middle).",
    )

    def describe(self) -> dict:
        """Plain dict (JSON-safe) for the blend file and the fingerprint."""
        return self.model_dump()
