"""The vLLM path for sampling-based code tasks: n samples per prompt in one `LLM.generate` call per task.

The code tasks of the seed tables (HumanEval, JHumanEval, MultiPL-E; bigcode-evaluation-harness settings) draw n = 10
samples per problem at temperature 0.2, top-p 0.95, with stop sequences and a cap on new tokens. lm-eval turns a task
with `repeats: 10` into ten copies of each request, and its vLLM backend sends 1,640 independent prompts for
HumanEval. `SampledGeneration` wraps the backend instead: the copies of a request become one prompt with
`SamplingParams(n=10, temperature=0.2, top_p=0.95, stop=[...], max_tokens=..., seed=...)`, all prompts of the task in
one `vllm.LLM.generate` call (vLLM shares the prompt's prefill between the ten samples, and the seed makes the draw
repeatable). What the samples then go through is lm-eval's own: the stop sequences are cut again with
`postprocess_generated_text` (as lm-eval's vLLM and transformers backends do), and the task's filters and
`process_results` (cptkit.eval.code / multipl_e: execution, pass@k) see the same list of strings in the same order.
Everything else — greedy generation, log-likelihoods — goes to the wrapped backend unchanged.

Used by `cptkit eval --backend vllm` (and `auto` with vLLM installed and a GPU), wrapping lm-eval's `vllm` model and
its engine. It has never run on a GPU: vLLM does not install on the CPU machines this project is built on, and the
tests (tests/eval/test_vllm_gen.py) drive it with a fake `vllm` package that records the engine's and the sampling
parameters' arguments and returns canned completions.
"""

from __future__ import annotations

from typing import Any

from lm_eval.api.model import LM

DEFAULT_SEED = 1234  # lm-eval's default model seed (its vLLM backend passes it to LLM(seed=...))


def _groups(requests: list) -> list[tuple[Any, int]]:
    """(request, copies) for each run of the same Instance: lm-eval clones a request as `[req] * req.repeats`."""
    out: list[tuple[Any, int]] = []
    for req in requests:
        if out and out[-1][0] is req:
            out[-1] = (req, out[-1][1] + 1)
        else:
            out.append((req, 1))
    return out


def is_sampled(gen_kwargs: dict, copies: int) -> bool:
    """Several samples of one prompt drawn with temperature: the requests this path batches."""
    from lm_eval.models.utils import normalize_gen_kwargs

    return copies > 1 and bool(normalize_gen_kwargs(dict(gen_kwargs)).get("do_sample"))


class SampledGeneration(LM):
    """An lm-eval model: sampled `generate_until` requests through `llm.generate(..., SamplingParams(n=...))`, the
    rest through `inner` (the lm-eval model whose engine `llm` is)."""

    def __init__(self, inner: LM, llm: Any, *, seed: int = DEFAULT_SEED) -> None:
        super().__init__()
        self.inner, self.llm, self.seed = inner, llm, seed
        self.calls: list[dict] = []  # one entry per llm.generate call: what was asked (recorded in the results)

    # everything but sampled generation is the wrapped backend's
    def loglikelihood(self, requests, disable_tqdm: bool = False):
        return self.inner.loglikelihood(requests, disable_tqdm=disable_tqdm)

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
        return self.inner.loglikelihood_rolling(requests, disable_tqdm=disable_tqdm)

    def __getattr__(self, name: str):
        if name in ("inner", "llm", "seed", "calls"):
            raise AttributeError(name)
        return getattr(self.inner, name)  # tokenizer, max_length, get_model_info, ... as lm-eval asks for them

    # the base class defines these itself, so __getattr__ would never forward them
    device = property(lambda self: self.inner.device)
    rank = property(lambda self: self.inner.rank)
    world_size = property(lambda self: self.inner.world_size)
    tokenizer_name = property(lambda self: self.inner.tokenizer_name)

    def all_gather(self, tensor):
        return self.inner.all_gather(tensor)

    def gather_object(self, obj, dst=0):
        return self.inner.gather_object(obj, dst)

    def barrier(self) -> None:
        self.inner.barrier()

    def chat_template(self, chat_template: bool | str = False):
        return self.inner.chat_template(chat_template)

    def apply_chat_template(self, chat_history, add_generation_prompt: bool = True):
        return self.inner.apply_chat_template(chat_history, add_generation_prompt=add_generation_prompt)

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        groups = _groups(list(requests))
        sampled = [(i, g) for i, g in enumerate(groups) if is_sampled(g[0].args[1], g[1])]
        results: list[list[str] | None] = [None] * len(groups)
        for i, texts in self._sample([g for _, g in sampled]).items():
            results[sampled[i][0]] = texts
        rest = [i for i, r in enumerate(results) if r is None]
        if rest:  # greedy or single requests: the backend's own generate_until, in one call, order kept
            plain = [groups[i][0] for i in rest for _ in range(groups[i][1])]
            out = iter(self.inner.generate_until(plain, disable_tqdm=disable_tqdm))
            for i in rest:
                results[i] = [next(out) for _ in range(groups[i][1])]
        return [text for texts in results for text in texts]

    def sampling_params(self, gen_kwargs: dict, n: int):
        """lm-eval's reading of the task's generation_kwargs (stop sequences + EOS, max tokens, its vLLM backend's
        decoding defaults), as vLLM arguments, plus n and the seed."""
        from lm_eval.models.utils import handle_stop_sequences, normalize_gen_kwargs
        from vllm import SamplingParams

        eos = self.inner.tokenizer.decode(self.inner.eot_token_id)
        if hasattr(self.inner, "modify_gen_kwargs"):  # lm-eval's vLLM backend: exactly its own reading
            kwargs, until, max_tokens = self.inner.modify_gen_kwargs(
                dict(gen_kwargs), eos=eos, default_max_gen_toks=self.inner.max_gen_toks
            )
        else:
            kwargs = normalize_gen_kwargs(dict(gen_kwargs), default_max_gen_toks=self.inner.max_gen_toks)
            until = handle_stop_sequences(kwargs.pop("until", None), eos=eos)
            max_tokens = int(kwargs.pop("max_gen_toks"))
            kwargs.pop("do_sample", None)  # vLLM samples whenever temperature > 0
        return SamplingParams(n=n, stop=until, max_tokens=max_tokens, seed=self.seed, **kwargs), until, max_tokens

    def _sample(self, groups: list[tuple[Any, int]]) -> dict[int, list[str]]:
        """Index in `groups` -> its n completions; one llm.generate call per distinct (generation settings, n)."""
        from lm_eval.models.utils import maybe_truncate, postprocess_generated_text
        from vllm import TokensPrompt

        batches: dict[str, list[int]] = {}
        for i, (req, n) in enumerate(groups):
            batches.setdefault(repr((sorted(req.args[1].items()), n)), []).append(i)
        out: dict[int, list[str]] = {}
        for members in batches.values():
            req0, n = groups[members[0]]
            params, until, max_tokens = self.sampling_params(req0.args[1], n)
            prompts = []
            for i in members:
                tokens = self.inner.tok_encode(groups[i][0].args[0])
                # the context is cut from the left to leave room for the answer, as lm-eval's backends do
                tokens, _ = maybe_truncate(tokens, max_gen_toks=max_tokens, max_model_len=self.inner.max_length)
                prompts.append(TokensPrompt(prompt_token_ids=tokens))
            self.calls.append({"prompts": len(prompts), "n": n, "stop": until, "max_tokens": max_tokens})
            outputs = self.llm.generate(prompts, params, use_tqdm=False)
            for i, output in zip(members, outputs, strict=True):
                texts = [postprocess_generated_text(c.text, until, None) for c in output.outputs]
                if len(texts) != n:
                    raise RuntimeError(f"vLLM returned {len(texts)} samples for a prompt, asked for {n}")
                out[i] = texts
        return out


def wrap(inner: LM, *, seed: int = DEFAULT_SEED) -> LM:
    """lm-eval's vLLM model with its engine (`.model`) doing the sampled requests; as is when it has no engine of its
    own (data parallel: engines live in Ray workers)."""
    llm = getattr(inner, "model", None)
    return SampledGeneration(inner, llm, seed=seed) if llm is not None and hasattr(llm, "generate") else inner
