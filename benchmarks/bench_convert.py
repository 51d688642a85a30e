"""Converter benchmark: an 8B-shaped Llama-3.1 with random bf16 weights (~16 GB), HF → megatron-core (TP 2 layout)
→ HF, wall time and peak RSS of each direction next to `cp` of the same files, in one run; then a tensor-by-tensor
bit-exactness check of the round trip.

    python -m benchmarks convert                          # full 8B shape, scratch in /work/bench_scratch
    python -m benchmarks convert --layers 2 --scratch /tmp/b   # quick smoke run

Each step runs as a child process; its peak RSS is the child's `ru_maxrss` (os.wait4). The copies are `cp -r`
followed by `sync` of the copied files, because both converters fsync what they write. The scratch directory is
deleted at the end unless --keep. Targets (issue 6): peak RSS < 4 GB, time within 3x of cp.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

LLAMA31_8B = {
    "architectures": ["LlamaForCausalLM"],
    "attention_bias": False,
    "attention_dropout": 0.0,
    "bos_token_id": 128000,
    "eos_token_id": 128001,
    "hidden_act": "silu",
    "hidden_size": 4096,
    "initializer_range": 0.02,
    "intermediate_size": 14336,
    "max_position_embeddings": 131072,
    "mlp_bias": False,
    "model_type": "llama",
    "num_attention_heads": 32,
    "num_hidden_layers": 32,
    "num_key_value_heads": 8,
    "pretraining_tp": 1,
    "rms_norm_eps": 1e-05,
    "rope_scaling": {
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192,
        "rope_type": "llama3",
    },
    "rope_theta": 500000.0,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
    "use_cache": True,
    "vocab_size": 128256,
}


def make_model(out: Path, layers: int) -> int:
    """Write the random bf16 model shard by shard (one tensor in memory at a time); returns bytes of weights."""
    import torch

    from cptkit.convert.hf_checkpoint import model_config
    from cptkit.convert.layout import hf_shapes
    from cptkit.convert.safetensors_io import PlannedTensor, ShardedWriter
    from cptkit.convert.spec import find_spec

    config = {**LLAMA31_8B, "num_hidden_layers": layers}
    spec = find_spec(config, "config.json")
    cfg = model_config(config, spec, "config.json", tp=1, divisible_by=128)
    plan = []
    for w, layer in spec.plan(cfg):
        names = [n.replace("{i}", str(layer)) for n in w.hf]
        plan += [PlannedTensor(n, torch.bfloat16, s) for n, s in zip(names, hf_shapes(w, cfg), strict=True)]
    out.mkdir(parents=True)
    writer = ShardedWriter(out, plan)
    g = torch.Generator().manual_seed(0)
    for p in plan:
        t = torch.randn(p.shape, generator=g, dtype=torch.float32).mul_(0.02).to(torch.bfloat16)
        writer.write(p.name, t)
        del t
    writer.close()
    (out / "config.json").write_text(json.dumps(config, indent=2))
    gen = {"bos_token_id": 128000, "eos_token_id": 128001, "do_sample": True, "temperature": 0.6, "top_p": 0.9}
    (out / "generation_config.json").write_text(json.dumps(gen, indent=2))
    try:
        from tests.conftest import llama3_tokenizer_dir

        for f in llama3_tokenizer_dir().iterdir():
            if f.is_file():
                shutil.copy(f, out / f.name)
    except Exception:  # the tokenizer is carried through, not used; the benchmark runs without it
        pass
    return writer.total_bytes


def timed(cmd: list[str] | str) -> tuple[float, float]:
    """(wall seconds, peak RSS in GB) of a child process (and its waited-for children), from os.wait4."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, shell=isinstance(cmd, str), stdout=subprocess.DEVNULL, cwd=Path(__file__).parents[1])
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"bench_convert: {cmd} failed with exit code {proc.returncode}")
    return seconds, usage.ru_maxrss / 2**20  # ru_maxrss is in KiB on Linux


def dir_bytes(d: Path) -> int:
    return sum(p.stat().st_size for p in d.rglob("*") if p.is_file())


def bit_exact(a: Path, b: Path) -> tuple[bool, int]:
    import torch

    from cptkit.convert.safetensors_io import read_header, read_tensor

    def headers(d: Path) -> dict:
        out = {}
        for f in sorted(d.glob("*.safetensors")):
            out |= read_header(f)
        return out

    ha, hb = headers(a), headers(b)
    if sorted(ha) != sorted(hb):
        return False, 0
    for name, info in ha.items():
        if not torch.equal(read_tensor(info), read_tensor(hb[name])):
            return False, len(ha)
    return True, len(ha)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks convert")
    ap.add_argument("--scratch", default="/work/bench_scratch", help="scratch directory (deleted afterwards)")
    ap.add_argument("--layers", type=int, default=32, help="decoder layers (32 = Llama-3.1-8B)")
    ap.add_argument("--keep", action="store_true", help="keep the scratch directory")
    ap.add_argument("--make-only", help=argparse.SUPPRESS)  # internal: generate the model in a child process
    args = ap.parse_args(argv)
    if args.make_only:
        t0 = time.perf_counter()
        weights = make_model(Path(args.make_only), args.layers)
        print(f"made {args.make_only}: {weights / 1e9:.2f} GB of bf16 weights in {time.perf_counter() - t0:.0f} s")
        return 0

    scratch = Path(args.scratch) / "bench_convert"
    if scratch.exists():
        shutil.rmtree(scratch)
    scratch.mkdir(parents=True)
    hf, mc, out = scratch / "hf", scratch / "mcore-tp2", scratch / "hf-out"
    cli = [sys.executable, "-m", "cptkit.cli", "convert"]
    rows = []
    try:
        # In a child: a forked child inherits this process's resident set in its ru_maxrss, so this one stays small.
        me = [sys.executable, "-m", "benchmarks.bench_convert", f"--layers={args.layers}"]
        subprocess.run([*me, f"--make-only={hf}"], check=True)

        cp_hf = timed(f"cp -r '{hf}' '{scratch}/cp' && sync '{scratch}/cp'/*")
        shutil.rmtree(scratch / "cp")
        to_mcore = timed([*cli, "hf-to-mcore", str(hf), str(mc), "--tp", "2"])
        cp_mc = timed(f"cp -r '{mc}' '{scratch}/cp' && sync '{scratch}/cp'/* '{scratch}/cp'/.metadata")
        shutil.rmtree(scratch / "cp")
        to_hf = timed([*cli, "mcore-to-hf", str(mc), str(out)])
        exact, n = bit_exact(hf, out)
        rows = [
            (f"cp -r HF dir ({dir_bytes(hf) / 1e9:.2f} GB) + sync", *cp_hf, 1.0),
            ("cptkit convert hf-to-mcore --tp 2", *to_mcore, to_mcore[0] / cp_hf[0]),
            (f"cp -r mcore dir ({dir_bytes(mc) / 1e9:.2f} GB) + sync", *cp_mc, 1.0),
            ("cptkit convert mcore-to-hf (bf16)", *to_hf, to_hf[0] / cp_mc[0]),
        ]
        print(f"\nLlama-3.1-8B shape, {args.layers} layers, random bf16 weights; {os.cpu_count()} CPUs")
        print(f"{'step':<44} {'wall s':>8} {'peak RSS GB':>12} {'x cp':>6}")
        for name, sec, rss, ratio in rows:
            print(f"{name:<44} {sec:>8.1f} {rss:>12.2f} {ratio:>6.2f}")
        print(f"round trip HF -> mcore -> HF bit-exact: {'yes' if exact else 'NO'} ({n} tensors)")
        ok = exact and all(rss < 4.0 and ratio <= 3.0 for _, _, rss, ratio in rows[1::2])
        print(f"targets (peak RSS < 4 GB, time <= 3x cp): {'met' if ok else 'NOT met'}")
        return 0 if exact else 1
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
