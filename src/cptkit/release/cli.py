"""`cptkit release RUN_DIR [--iteration N | --every-eval] [OUT]`. torch is imported inside the handler only.

cptkit release runs/demo/run --dry-run                   # names, folders and the card, nothing written
cptkit release runs/swallowcode_exp1 --every-eval        # every evaluated checkpoint -> RUN_DIR/release/<name>/
cptkit release runs/swallowcode_exp1 --push my-org       # ... and upload each as my-org/<name>
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "release",
        help="run checkpoints -> HF release folders with a model card from the run's records (+ Hub upload)",
        description="Export checkpoints of a run as Hugging Face folders named by the recipe's release.name, each "
        "with a README.md model card written only from what the run recorded (recipe, mixture, tokens, hardware, "
        "versions, `cptkit eval` results); optionally upload them (docs/release.md).",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", type=Path, help="run directory (checkpoints/, recipe.resolved.yaml)")
    p.add_argument(
        "out", metavar="OUT", type=Path, nargs="?", help="where release folders go (default RUN_DIR/release)"
    )
    which = p.add_mutually_exclusive_group()
    which.add_argument("--iteration", type=int, help="this saved checkpoint (default: the latest)")
    which.add_argument("--every-eval", action="store_true", help="every checkpoint `cptkit eval` has results for")
    p.add_argument("--dry-run", action="store_true", help="print names, folders, the card and uploads; write nothing")
    p.add_argument("--dtype", choices=sorted(DTYPES), default="bf16", help="release dtype (default bf16)")
    p.add_argument("--no-verify", action="store_true", help="skip the logit check of each export")
    p.add_argument("--verify-tolerance", type=float, default=1e-3, help="max |logit difference| (default 1e-3)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="release.KEY=VALUE",
        help="override a release.* key of the run's recipe (e.g. release.base_model=meta-llama/Llama-3.1-8B)",
    )
    up = p.add_argument_group("upload (huggingface_hub; token from HF_TOKEN or `hf auth login`)")
    up.add_argument("--push", metavar="ORG[/NAME]", help="upload each release folder to the Hub")
    up.add_argument("--private", action="store_true", help="create new repositories private")
    up.add_argument(
        "--revision-per-checkpoint",
        action="store_true",
        help="one repository with a branch iter_NNNNNNN per checkpoint (default: one repository per checkpoint, "
        "named by the release name, as the Swallow ablations)",
    )
    p.set_defaults(func=_release)
    _intermix(p)


def _intermix(parser: argparse.ArgumentParser) -> None:
    """Let OUT follow the options (`cptkit release RUN_DIR --every-eval OUT`, the shape `cptkit launch release`
    runs): plain argparse binds both positionals before the first option and rejects OUT after it."""

    class Intermixed(type(parser)):
        _inside = False

        def parse_known_args(self, args=None, namespace=None):
            if self._inside:  # parse_known_intermixed_args calls back into parse_known_args
                return super().parse_known_args(args, namespace)
            self._inside = True
            try:
                return self.parse_known_intermixed_args(args, namespace)
            finally:
                self._inside = False

    parser.__class__ = Intermixed


def _release(args: argparse.Namespace) -> int:
    from cptkit.errors import UserError
    from cptkit.release import export
    from cptkit.release.records import load_run_record

    run = load_run_record(args.run_dir, args.set)
    out = args.out if args.out is not None else args.run_dir / "release"
    iterations = export.choose_iterations(run, args.iteration, args.every_eval)
    planned = export.plan(run, iterations, out, push=args.push, revision_per_checkpoint=args.revision_per_checkpoint)
    for p in planned:  # before any work: a folder in the way is found now, not after an hour of export
        if p.folder.exists() and not p.exported and (not p.folder.is_dir() or any(p.folder.iterdir())):
            raise UserError("exists and is not a release folder; delete it or choose another OUT", file=str(p.folder))
    cards = {p.iteration: export.card_for(run, p) for p in planned}  # a broken template fails before the export
    for p in planned:
        if warning := export.license_warning(run, p):
            print(f"warning: {warning}", file=sys.stderr)
    if args.dry_run:
        return _dry_run(run, planned, cards, args)

    import torch

    from cptkit.util.atomic import write_text

    dtype = getattr(torch, DTYPES[args.dtype])
    for p in planned:
        if p.exported:
            write_text(p.folder / "README.md", cards[p.iteration])
            print(f"{p.folder}: already exported; model card updated")
        else:
            export.export(
                run,
                p,
                cards[p.iteration],
                dtype=dtype,
                verify=not args.no_verify,
                verify_tolerance=args.verify_tolerance,
            )
            print(f"released iteration {p.iteration} as {p.folder}")
        if p.repo_id:
            files = _push(p, args.private, dry_run=False)
            where = f"{p.repo_id}" + (f" (branch {p.revision})" if p.revision else "")
            print(f"uploaded {len(files)} file(s) to {where}")
    return 0


def _push(p, private: bool, *, dry_run: bool) -> list[str]:
    from cptkit.errors import UserError

    try:
        from cptkit.release.push import push  # huggingface_hub; its own module
    except ImportError as e:
        raise UserError(f"--push is not available in this install ({e})", field="--push") from None

    return push(p.folder, p.repo_id, revision=p.revision, private=private, dry_run=dry_run)


def _dry_run(run, planned, cards, args) -> int:
    from cptkit.convert.mcore_to_hf import convert_mcore_to_hf

    for p in planned:
        print(f"iteration {p.iteration}: {p.name}")
        if p.exported:
            print(f"  {p.folder} is already exported: would rewrite its README.md only")
        else:
            print(f"  would write {p.folder}/ (under a temporary name, then renamed):")
            plan = convert_mcore_to_hf(
                run.run_dir, p.folder, iteration=p.iteration, dry_run=True, log=lambda s: print("  " + s)
            )
            p.files = sorted([*plan["files"], "README.md"])  # README.md: the model card below
            print("".join(f"    {f}\n" for f in p.files), end="")
        if p.repo_id:
            where = p.repo_id + (f" branch {p.revision}" if p.revision else "") + (" (private)" if args.private else "")
            if p.exported:
                files = _push(p, args.private, dry_run=True)
                print(f"  would upload to {where}: {len(files)} file(s)")
                print("".join(f"    {f}\n" for f in files), end="")
            else:  # push lists only an existing folder: these are the files above, once written
                print(f"  would upload the folder to {where} once written: {len(p.files)} file(s), as listed above")
    for p in planned:
        print(f"\n----- {p.folder}/README.md -----")
        sys.stdout.write(cards[p.iteration])
    return 0
