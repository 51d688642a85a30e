"""SantaCoder-FIM (bigcode/santacoder-fim-task: single-line infilling in Python, JavaScript and Java, built by
MultiPL-E's fill_in_the_middle notebook) as the Future Code Ja card (seed 004) reports it: one sample at T = 0.2,
top-p 0.95, at most 512 new tokens, the output cut where it starts writing the given suffix, exact match.

Layouts (`prompt`), all parity-tested against the reference code's own strings:
- `psm`: bigcode's `santacoder_fim` task with the card's strings, `<|fim_prefix|>` + prefix + `<|fim_suffix|>` +
  suffix + `<|fim_middle|>`; the card opens the prefix with a literal `<|begin_of_text|>` (`bos`).
- `spm`: SAFIM's (Gong et al. 2024) SPM for FIM models, `<|fim_prefix|><|fim_suffix|>` + suffix + `<|fim_middle|>` +
  prefix (= Megatron's SPM variant 2 and the card's SPM example).
- `spmplain`: SAFIM's SPM for models without FIM tokens, suffix + "\\n\\n" + prefix: what the card's "*" rows
  (Llama 3.1 8B/70B, no FIM) were scored with.
Another model's FIM strings: `fim_tokens: {prefix: ..., suffix: ..., middle: ...}` in the template's `configure`.

Scoring, as bigcode's task: the output up to its stop words ("<|endoftext|>", "<|filename|>"), then `strip()`
equality with `canonical_solution`. bigcode itself does not cut at the suffix; the card does ("truncated the generated
output just before the point that matched the beginning of the provided suffix") without publishing the code.
cptkit's reading (`truncate_at_suffix`), from how the data is built: the middle is one whole line and the suffix starts
at the next line, so the output is cut at the first line of it (a line start: position 0 when the prefix ends with
"\\n", else after a "\\n") that equals the suffix's first non-blank line, indentation included. The earlier guess
(the stripped first line found anywhere) cut `{-1l, 0l, 1l}` at its "}" when the suffix began with "    }".
`truncate: false` in the template's `configure` scores exactly as bigcode does.

Try it on a CPU:  python -c "from cptkit.eval.fim import truncate_at_suffix as t; print(repr(t('x = 1\\nreturn x\\n', 'f():\\n', 'return x')))"
"""

from __future__ import annotations

from cptkit.eval.bigcode import stop_at_stop_token

STOP_WORDS = ["<|endoftext|>", "<|filename|>"]  # bigcode's santacoder_fim defaults
TOKENS = {"prefix": "<|fim_prefix|>", "suffix": "<|fim_suffix|>", "middle": "<|fim_middle|>"}
BOS = "<|begin_of_text|>"
MODES = ("psm", "spm", "spmplain")


def prompt(doc: dict, mode: str, tokens: dict | None = None, bos: str = BOS) -> str:
    t = {**TOKENS, **(tokens or {})}
    pre = bos + doc["prompt"]
    if mode == "psm":
        return f"{t['prefix']}{pre}{t['suffix']}{doc['suffix']}{t['middle']}"
    if mode == "spm":
        return f"{t['prefix']}{t['suffix']}{doc['suffix']}{t['middle']}{pre}"
    if mode == "spmplain":
        return f"{doc['suffix']}\n\n{doc['prompt']}"
    raise ValueError(f"FIM mode must be one of {', '.join(MODES)}, got {mode!r}")


def truncate_at_suffix(output: str, prefix: str, suffix: str) -> str:
    """The output before the first of its lines that is the suffix's first non-blank line (see the module docstring)."""
    head = next((line for line in suffix.split("\n") if line.strip()), None)
    if head is None:
        return output
    starts = ([0] if prefix.endswith("\n") or not prefix else []) + [i + 1 for i, c in enumerate(output) if c == "\n"]
    for start in starts:
        end = output.find("\n", start)
        if (output[start:] if end < 0 else output[start:end]) == head:
            return output[:start]
    return output


def postprocess(doc: dict, output: str) -> str:
    """bigcode's post-processing (stop words), then the card's truncation unless the row says otherwise."""
    output = stop_at_stop_token(output, STOP_WORDS)
    if doc.get("fim_truncate", True):
        output = truncate_at_suffix(output, doc["prompt"], doc["suffix"])
    return output


def process_results(doc: dict, results: list[str]) -> dict[str, float]:
    return {"exact_match": float(postprocess(doc, results[0]).strip() == doc["canonical_solution"].strip())}


def configure(
    cfg: dict, files: dict, *, variant: str, out_dir, fim_tokens: dict | None = None, truncate: bool = True
) -> None:
    """Render-time: keep one language's rows and write each prompt (its layout) and the truncation switch into them."""
    import json
    from pathlib import Path

    from cptkit.errors import UserError

    mode, _, language = variant.partition("_")
    if mode not in MODES:
        raise UserError(f"FIM layout must be one of {', '.join(MODES)}, got {mode!r}", field="variant")
    rows = []
    for path in files["test"].files:
        with open(path, encoding="utf-8") as f:
            rows += [r for r in map(json.loads, filter(str.strip, f)) if r.get("language") == language]
    if not rows:
        raise UserError(f"no {language} rows in {files['test'].files[0]}", field="language")
    out = Path(out_dir) / f"{cfg['task']}.prompts.jsonl"
    with open(out, "w", encoding="utf-8") as f:
        for row in rows:
            rendered = {**row, "fim_prompt": prompt(row, mode, fim_tokens), "fim_truncate": bool(truncate)}
            f.write(json.dumps(rendered, ensure_ascii=False) + "\n")
    cfg["dataset_path"] = "json"
    cfg["dataset_kwargs"] = {"data_files": {"test": [str(out)]}}
