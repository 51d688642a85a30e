"""`make demo`: the whole cptkit workflow on real text, on a CPU, in a few minutes.

    python -m cptkit.demo                     # everything under ./demo_run
    python -m cptkit.demo --out /tmp/d --iters 40 --small    # the CI-sized run (tests/demo)

Every stage runs as the `cptkit` command a user would type (printed before it runs), so the demo is also a check
that the commands in the README work:

  corpus (Python code, English and Japanese text already on this machine) → `cptkit tokenize` (real Llama-3
  tokenizer) → `cptkit mix show` / `mix check` → a tiny Llama-3-shaped HF model → `cptkit convert hf-to-mcore` +
  `convert verify` → `cptkit train` (SIGTERM mid-run, as a scheduler pre-empts; then resumed) →
  `cptkit convert mcore-to-hf` → transformers loads the release and generates → `cptkit report` (loss curve PNG)
  → `cptkit eval RUN_DIR --suite quick` on the final checkpoint → `cptkit release` (HF folder + model card written
  from the run's records: OUT/release/<name>/README.md).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from cptkit.demo.corpus import build_corpus
from cptkit.demo.tiny_hf import make_tiny_llama

ROOT = Path(__file__).resolve().parents[3]  # the checkout: data_mix/, recipes/ live there


class DemoError(RuntimeError):
    pass


def cptkit(*args: str, env: dict, check: bool = True) -> subprocess.CompletedProcess:
    print(f"\n$ cptkit {' '.join(args)}", flush=True)
    r = subprocess.run([sys.executable, "-m", "cptkit.cli", *args], env=env, cwd=ROOT)
    if check and r.returncode != 0:
        raise DemoError(f"`cptkit {' '.join(args)}` exited with {r.returncode}")
    return r


def metrics(run_dir: Path) -> list[dict]:
    path = run_dir / "logs" / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def train_with_interruption(train_args: list[str], run_dir: Path, interrupt_at: int, env: dict) -> int:
    """Start training, send SIGTERM (what SLURM/PBS/SGE send at pre-emption) once `interrupt_at` is logged, and
    check the trainer saved and exited 0. Returns the iteration it saved."""
    print(f"\n$ cptkit {' '.join(train_args)}    # will be sent SIGTERM after iteration {interrupt_at}", flush=True)
    proc = subprocess.Popen([sys.executable, "-m", "cptkit.cli", *train_args], env=env, cwd=ROOT)
    deadline = time.monotonic() + 1800
    while proc.poll() is None and time.monotonic() < deadline:
        done = metrics(run_dir)
        if done and done[-1]["iteration"] >= interrupt_at:
            proc.send_signal(signal.SIGTERM)
            break
        time.sleep(0.5)
    rc = proc.wait(timeout=600)
    if rc != 0:
        raise DemoError(f"the interrupted trainer exited with {rc}, expected 0 (save on SIGTERM, exit 0)")
    saved = int((run_dir / "checkpoints" / "latest_checkpointed_iteration.txt").read_text().strip())
    print(f"\n[demo] pre-empted: the trainer saved iteration {saved} and exited 0", flush=True)
    return saved


def generate(hf_dir: Path, prompts: list[str]) -> list[str]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(hf_dir)
    model = AutoModelForCausalLM.from_pretrained(hf_dir, torch_dtype=torch.float32)
    out = []
    for prompt in prompts:
        ids = tok(prompt, return_tensors="pt")
        gen = model.generate(**ids, max_new_tokens=12, do_sample=False, pad_token_id=tok.eos_token_id)
        out.append(tok.decode(gen[0][ids["input_ids"].shape[1] :]))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m cptkit.demo", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="demo_run", help="where every artifact goes (default ./demo_run)")
    ap.add_argument("--iters", type=int, default=120, help="training iterations (default 120)")
    ap.add_argument("--small", action="store_true", help="CI size: less text, no eval")
    ap.add_argument("--no-eval", action="store_true", help="skip `cptkit eval --suite quick`")
    args = ap.parse_args(argv)

    out = Path(args.out).resolve()
    env = {
        **os.environ,
        "CPTKIT_DEMO_DIR": str(out),
        "WANDB_MODE": "offline",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    t0 = time.monotonic()
    mixture, recipe = "data_mix/demo.yaml", "recipes/tiny_cpu.yaml"

    print(f"[demo] 1/10 corpus: real code and text from this machine → {out}/raw", flush=True)
    for name, s in build_corpus(out, max_bytes_per_source=600_000 if args.small else 2_000_000).items():
        print(f"  {name:5s} {s['documents']:5d} documents {s['bytes'] / 1e6:6.2f} MB")

    print("\n[demo] 2/10 tokenize with the real Llama-3 tokenizer, then show and check the mixture", flush=True)
    cptkit("tokenize", mixture, "--workers", "2", "--no-progress", env=env)
    cptkit("mix", "show", mixture, env=env)
    cptkit("mix", "check", mixture, "--samples", "400", "--seq-length", "64", env=env)

    print("\n[demo] 3/10 a tiny Llama-3-shaped model (random weights) saved as a Hugging Face checkpoint", flush=True)
    hf_base = make_tiny_llama(out / "hf_base")
    print(f"  {hf_base}")
    base = out / "base_mcore"
    if not (base / "cptkit_model.json").exists():
        cptkit("convert", "hf-to-mcore", str(hf_base), str(base), env=env)
    cptkit("convert", "verify", str(hf_base), str(base), env=env)

    print("\n[demo] 4/10 train, pre-empted half-way (SIGTERM), then resumed from the run's own checkpoint", flush=True)
    run = out / "run"
    overrides = [
        f"run_dir={run}",
        f"model.init_checkpoint={base}",
        f"training.train_iters={args.iters}",
        f"checkpoint.interval_iters={max(10, args.iters // 4)}",
        "checkpoint.keep_last=2",
        f"eval.interval_iters={max(10, args.iters // 4)}",
    ]
    train_args = ["train", recipe, *overrides]
    if not (run / "COMPLETED").exists():
        if not (run / "checkpoints" / "latest_checkpointed_iteration.txt").exists():
            train_with_interruption(train_args, run, interrupt_at=args.iters // 2 + 3, env=env)
        cptkit(*train_args, env=env)
    losses = [m["lm_loss"] for m in metrics(run)]
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    print(f"\n[demo] loss (mean of 5 iterations): first {first:.3f} → last {last:.3f}", flush=True)
    if not last < first - 1.0:
        raise DemoError(f"the loss did not clearly fall ({first:.3f} → {last:.3f})")

    print("\n[demo] 5/10 export the final checkpoint as a Hugging Face release folder", flush=True)
    release = out / "hf_release"
    if not (release / "config.json").exists():
        cptkit("convert", "mcore-to-hf", str(run), str(release), "--dtype", "fp32", env=env)

    print("\n[demo] 6/10 load it with transformers and generate", flush=True)
    for prompt, text in zip(
        ("def fibonacci(n):", "日本語の"), generate(release, ["def fibonacci(n):", "日本語の"]), strict=True
    ):
        print(f"  {prompt!r} → {text!r}")

    print("\n[demo] 7/10 loss curve", flush=True)
    cptkit("report", str(run), "--output", str(out / "report"), env=env)

    if not (args.small or args.no_eval):
        from cptkit.eval.targets import saved_iterations

        print("\n[demo] 8/10 quick evaluation suite on the final checkpoint (results in RUN_DIR/eval/)", flush=True)
        last = str(len(saved_iterations(run)) - 1)
        cptkit("eval", str(run), "--suite", "quick", "--iteration-index", last, "--delete-converted", env=env)

    print("\n[demo] 9/10 release: HF folder + model card written from the run's records", flush=True)
    cptkit("release", str(run), str(out / "release"), "--dtype", "fp32", env=env)
    cards = sorted((out / "release").glob("*/README.md"))

    print(f"\n[demo] 10/10 done in {time.monotonic() - t0:.0f} s. Artifacts:", flush=True)
    for label, path in [
        ("raw corpus", out / "raw"),
        ("tokenized prefixes", out / "tokenized"),
        ("HF base model", hf_base),
        ("converted base (mcore)", base),
        ("run: checkpoints, logs, TensorBoard", run),
        ("metrics", run / "logs" / "metrics.jsonl"),
        ("HF release", release),
        ("report + loss curve", out / "report"),
        ("quick eval", run / "eval"),
        ("release + model card", cards[-1] if cards else out / "release"),
    ]:
        if path.exists():
            print(f"  {label:38s} {path}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except DemoError as e:
        print(f"demo: error: {e}", file=sys.stderr)
        sys.exit(1)
