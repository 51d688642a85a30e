"""A SwallowCode exp1-shaped release folder with the exact file set `cptkit release` publishes, and what
`--push --dry-run` prints for it (closing-note material for issue 18).

    PYTHONPATH=src .venv/bin/python tests/release/exp1_release.py [DIR]     # DIR: a scratch directory (default: temp)

The files are those `cptkit convert mcore-to-hf` writes for Llama-3.1-8B in bf16, made by its own code: the shard
plan of `ShardedWriter` over the llama spec's tensors (so the shard names, header sizes and index are the real ones;
the tensor bytes are a sparse hole, no 16 GB are written), `config.json`, `generation_config.json`, and the base
model's top-level files that `hf-to-mcore` kept in `hf_assets/` and the export copies (meta-llama/Llama-3.1-8B:
LICENSE, USE_POLICY.md, special_tokens_map.json, tokenizer.json, tokenizer_config.json; its README.md is replaced by
the model card). Stray files a crash or a tool may leave (an atomic-write temporary, `.cache/`) are added too, to
show they are not published.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import torch

from cptkit.convert.layout import hf_shapes
from cptkit.convert.safetensors_io import PlannedTensor, ShardedWriter
from cptkit.convert.spec import load_specs
from cptkit.model.config import ModelConfig
from cptkit.release.push import format_upload, plan_uploads, push


def exp1_name(iteration: int = 12500) -> str:
    """The release name `cptkit release` gives recipes/swallowcode_exp1.yaml's checkpoint (seed 000's repository name
    for the last one, tests/release/test_name.py)."""
    from cptkit.release.name import render_name, template_variables
    from cptkit.train.recipe import load_recipe

    path = Path(__file__).resolve().parents[2] / "recipes" / "swallowcode_exp1.yaml"
    recipe = load_recipe(path, [])
    variables = template_variables(recipe, iteration, base_model=recipe.release.base_model)
    return render_name(recipe.release.name, variables, file=str(path))


EXP1_NAME = exp1_name()
LLAMA_31_8B = ModelConfig(
    architecture="llama",
    num_layers=32,
    hidden_size=4096,
    ffn_hidden_size=14336,
    num_attention_heads=32,
    num_query_groups=8,
    kv_channels=128,
    vocab_size=128256,
    padded_vocab_size=128256,
    max_position_embeddings=131072,
    rotary_base=500000.0,
    norm_epsilon=1e-5,
)
BASE_ASSETS = ("LICENSE", "USE_POLICY.md", "special_tokens_map.json", "tokenizer.json", "tokenizer_config.json")
EXPORTED = ("config.json", "generation_config.json", "README.md")  # README.md: the model card
STRAYS = (".README.md.k3j2l1.tmp", ".cache/huggingface/upload/README.md.lock", ".nfs000000001234")


def make_exp1_release(root: Path, cfg: ModelConfig = LLAMA_31_8B) -> Path:
    """`root/EXP1_NAME/` with the published files (sparse weights) plus stray files that must not be published."""
    out = root / EXP1_NAME
    out.mkdir(parents=True)
    spec = load_specs()["llama"]
    planned = []
    for w, layer in spec.plan(cfg):
        names = [n.replace("{i}", str(layer)) for n in w.hf]
        planned += [PlannedTensor(n, torch.bfloat16, s) for n, s in zip(names, hf_shapes(w, cfg), strict=True)]
    writer = ShardedWriter(out, planned)
    for k, shard in enumerate(writer.shards):
        writer._open(k)  # the real header; the tensor bytes become a hole of their exact length
        writer._file.truncate(writer._file.tell() + sum(t.nbytes for t in shard))
    writer._next = len(writer._order)
    writer.close()  # finishes the last shard and writes model.safetensors.index.json
    for name in (*EXPORTED, *BASE_ASSETS):
        (out / name).write_text(json.dumps({"file": name}) + "\n")
    for name in STRAYS:
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text("not published\n")
    return out


def dry_run_text(release: Path, org: str = "tokyotech-llm") -> str:
    """What `--push ORG --dry-run` prints for the folder (repo-per-checkpoint, the seeds' layout)."""
    lines = []
    for folder, repo_id, revision in plan_uploads([release], org):
        files = push(folder, repo_id, revision=revision, private=False, dry_run=True)
        lines.append(format_upload(folder, repo_id, revision, files, dry_run=True))
    return "\n".join(lines)


if __name__ == "__main__":
    where = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="exp1-release-"))
    print(dry_run_text(make_exp1_release(where)))
