"""`cptkit convert hf-to-mcore | mcore-to-hf | verify`. torch is imported inside the handlers only."""

from __future__ import annotations

import argparse
import json

from cptkit.errors import UserError

DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}


def _dtype(name: str | None):
    if name is None:
        return None
    import torch

    return getattr(torch, DTYPES[name])


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _hf_to_mcore(args: argparse.Namespace) -> int:
    from cptkit.convert.hf_to_mcore import convert_hf_to_mcore

    convert_hf_to_mcore(
        args.hf_dir,
        args.out_dir,
        tp=args.tp,
        divisible_by=args.make_vocab_size_divisible_by,
        dtype=_dtype(args.dtype),
        extra_specs=args.spec,
        dry_run=args.dry_run,
    )
    return 0


def _mcore_to_hf(args: argparse.Namespace) -> int:
    from cptkit.convert.mcore_to_hf import convert_mcore_to_hf

    convert_mcore_to_hf(
        args.ckpt,
        args.out_dir,
        iteration=args.iteration,
        dtype=_dtype(args.dtype),
        hf_assets=args.hf_assets,
        extra_specs=args.spec,
        max_shard_bytes=int(args.max_shard_gb * 1e9),
        dry_run=args.dry_run,
        fim_tokens=args.fim_tokens,
        verify=not args.no_verify,
        verify_tolerance=args.verify_tolerance,
    )
    return 0


def _verify(args: argparse.Namespace) -> int:
    from cptkit.convert.verify import verify

    result = verify(
        args.hf_dir,
        args.mcore_dir,
        tp=args.tp,
        seq_len=args.seq_len,
        batch=args.batch,
        seed=args.seed,
        tolerance=args.tolerance,
        dry_run=args.dry_run,
    )
    if result is None:
        return 0
    if args.json:
        print(json.dumps(result.as_dict()))
    return 0 if result.ok else 1


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "convert",
        help="HF <-> megatron-core checkpoints (Llama 3.x, Qwen2/2.5), streamed, verified by logits",
        description="Convert checkpoints between Hugging Face safetensors and megatron-core torch_dist, one layer "
        "at a time; verify a conversion by comparing logits.",
    )
    sub = p.add_subparsers(dest="convert_command", metavar="<command>", required=True, parser_class=type(p))

    a = sub.add_parser("hf-to-mcore", help="HF model dir -> megatron-core checkpoint dir (for `cptkit train`)")
    a.add_argument("hf_dir", help="HF model directory: config.json, *.safetensors (+ index), tokenizer files")
    a.add_argument("out_dir", help="new checkpoint directory (must not exist or be empty)")
    a.add_argument("--tp", type=_positive, default=1, help="TP layout to write and pad the vocabulary for (default 1)")
    a.add_argument(
        "--make-vocab-size-divisible-by",
        type=_positive,
        default=128,
        help="pad the vocabulary to a multiple of this x TP, as Megatron does (default 128)",
    )
    a.add_argument("--dtype", choices=sorted(DTYPES), help="checkpoint dtype (default: the HF weights' dtype)")
    a.add_argument("--spec", action="append", default=[], help="own mapping spec YAML or folder of them (repeatable)")
    a.add_argument("--dry-run", action="store_true", help="check everything and print the plan; write nothing")
    a.set_defaults(func=_hf_to_mcore)

    b = sub.add_parser("mcore-to-hf", help="megatron-core checkpoint or RUN_DIR -> HF release folder")
    b.add_argument("ckpt", help="checkpoint directory, or a RUN_DIR (uses its latest checkpoint)")
    b.add_argument("out_dir", help="new release directory (must not exist or be empty)")
    b.add_argument("--iteration", type=int, help="checkpoint iteration in a RUN_DIR (default: latest)")
    b.add_argument("--dtype", choices=sorted(DTYPES), default="bf16", help="release dtype (default bf16)")
    b.add_argument("--hf-assets", help="take tokenizer/generation files from here instead of the checkpoint's")
    b.add_argument("--max-shard-gb", type=float, default=5.0, help="largest safetensors shard, in GB (default 5)")
    b.add_argument("--spec", action="append", default=[], help="own mapping spec YAML or folder of them (repeatable)")
    b.add_argument(
        "--fim-tokens",
        action="store_true",
        default=None,
        help="name the FIM special tokens in the release tokenizer (default: when the checkpoint was trained with FIM)",
    )
    b.add_argument("--dry-run", action="store_true", help="check everything and print the plan; write nothing")
    b.add_argument(
        "--no-verify",
        action="store_true",
        help="skip comparing the export's logits with the checkpoint's (`convert verify`, on by default)",
    )
    b.add_argument(
        "--verify-tolerance",
        type=float,
        default=1e-3,
        help="max |logit difference| of that check (default 1e-3; fp32 rounding grows with model size)",
    )
    b.set_defaults(func=_mcore_to_hf)

    c = sub.add_parser("verify", help="compare HF and megatron-core logits on the same token ids (CPU, fp32)")
    c.add_argument("hf_dir")
    c.add_argument("mcore_dir", help="checkpoint directory or RUN_DIR")
    c.add_argument("--tp", type=_positive, default=1, help="tensor parallelism to load and run at (gloo processes)")
    c.add_argument("--seq-len", type=_positive, default=256, help="tokens per sequence (default 256)")
    c.add_argument("--batch", type=_positive, default=2, help="sequences (default 2)")
    c.add_argument("--seed", type=int, default=0, help="seed of the random token ids")
    c.add_argument("--tolerance", type=float, default=1e-4, help="max |logit difference| to pass (default 1e-4)")
    c.add_argument("--json", action="store_true", help="also print the result as one JSON line")
    c.add_argument("--dry-run", action="store_true", help="check inputs and print what would run")
    c.set_defaults(func=_verify)


__all__ = ["UserError", "register"]
