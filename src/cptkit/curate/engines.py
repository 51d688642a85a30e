"""Generation engines for the rewriting stages: vLLM's offline batch API on GPU nodes, transformers on CPU.

Both take chat messages (built by `cptkit.curate.prompts`), render them with the model's own chat template
(`apply_chat_template(..., add_generation_prompt=True)`, as the public scripts do) and sample with the same
settings: temperature 0.2, top-p 0.7, up to 8,192 new tokens (`Sampling`). Nothing is downloaded: `model` is a
local directory (`local_files_only`), on the cluster the Llama-3.3-70B-Instruct checkpoint, in tests a tiny random
model the test builds.

    from cptkit.curate.config import Engine, Sampling
    from cptkit.curate.engines import build_engine
    engine = build_engine(Engine(model="/path/to/tiny", backend="transformers"))
    print(engine.generate([[{"role": "user", "content": "hi"}]], Sampling(max_new_tokens=8)))

One engine per configuration and process: SGCR and SCOR in one pipeline share the 70B model (two vLLM instances
would not fit in the GPUs' memory), each stage passing its own sampling settings.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from cptkit.curate.config import Engine, Sampling
from cptkit.errors import UserError


def resolve_backend(cfg: Engine) -> str:
    if cfg.backend != "auto":
        return cfg.backend
    if importlib.util.find_spec("vllm") is not None:
        import torch

        if torch.cuda.is_available():
            return "vllm"
    return "transformers"


class _Base:
    name = ""

    def __init__(self, cfg: Engine):
        if not Path(cfg.model, "config.json").is_file():
            raise UserError(
                "not a local Hugging Face model directory (no config.json)", field="engine.model", file=cfg.model
            )
        self.cfg = cfg
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(cfg.model, local_files_only=True)
        if not getattr(self.tokenizer, "chat_template", None):
            raise UserError("the tokenizer has no chat template (tokenizer_config.json: chat_template)", file=cfg.model)

    def render(self, messages: list[dict[str, str]]) -> str:
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def generate_prompts(self, prompts: list[str], sampling: Sampling) -> list[str]:
        raise NotImplementedError

    def generate(self, conversations: list[list[dict[str, str]]], sampling: Sampling) -> list[str]:
        return self.generate_prompts([self.render(m) for m in conversations], sampling)


class VllmEngine(_Base):
    name = "vllm"

    def __init__(self, cfg: Engine):
        super().__init__(cfg)
        from vllm import LLM

        self.llm = LLM(
            model=cfg.model,
            tensor_parallel_size=cfg.tensor_parallel_size,
            dtype=cfg.dtype,
            gpu_memory_utilization=cfg.gpu_memory_utilization,
            max_model_len=cfg.max_model_len,
        )

    def generate_prompts(self, prompts: list[str], sampling: Sampling) -> list[str]:
        from vllm import SamplingParams

        params = SamplingParams(
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            max_tokens=sampling.max_new_tokens,
            seed=sampling.seed,
        )
        outputs = self.llm.generate(prompts, params, use_tqdm=False)
        return [o.outputs[0].text or "" for o in outputs]


class TransformersEngine(_Base):
    """CPU generation, batch by batch with left padding. For tests and small runs; vLLM is the production path."""

    name = "transformers"
    micro_batch = 8

    def __init__(self, cfg: Engine):
        super().__init__(cfg)
        import torch
        from transformers import AutoModelForCausalLM

        self.torch = torch
        import transformers

        # `torch_dtype` was renamed `dtype` in transformers 4.56; the old name is deprecated in 5.x.
        key = "dtype" if tuple(int(x) for x in transformers.__version__.split(".")[:2]) >= (4, 56) else "torch_dtype"
        self.model = AutoModelForCausalLM.from_pretrained(cfg.model, local_files_only=True, **{key: torch.float32})
        self.model.eval()
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token

    def generate_prompts(self, prompts: list[str], sampling: Sampling) -> list[str]:
        torch = self.torch
        if sampling.seed is not None:
            torch.manual_seed(sampling.seed)
        texts: list[str] = []
        for i in range(0, len(prompts), self.micro_batch):
            # The chat template already holds the BOS token: do not add another.
            enc = self.tokenizer(
                prompts[i : i + self.micro_batch], return_tensors="pt", padding=True, add_special_tokens=False
            )
            with torch.no_grad():
                out = self.model.generate(
                    **enc,
                    do_sample=sampling.temperature > 0,
                    temperature=sampling.temperature or None,
                    top_p=sampling.top_p,
                    max_new_tokens=sampling.max_new_tokens,
                    pad_token_id=self.tokenizer.pad_token_id,
                )
            new = out[:, enc["input_ids"].shape[1] :]
            texts.extend(self.tokenizer.batch_decode(new, skip_special_tokens=True))
        return texts


_ENGINES: dict[Engine, _Base] = {}


def build_engine(cfg: Engine) -> _Base:
    """The engine for `cfg`, built once per process (stages with the same engine settings share it)."""
    if cfg not in _ENGINES:
        _ENGINES[cfg] = _build(cfg)
    return _ENGINES[cfg]


def _build(cfg: Engine) -> _Base:
    backend = resolve_backend(cfg)
    if backend == "vllm":
        if importlib.util.find_spec("vllm") is None:
            raise UserError(
                "backend vllm, but vllm is not installed (pip install vllm on the GPU nodes)", field="engine.backend"
            )
        return VllmEngine(cfg)
    return TransformersEngine(cfg)
