"""SantaCoder-FIM (bigcode/santacoder-fim-task: 1,000+ Python, JavaScript and Java infilling problems) as the
Future Code Ja card (seed 004) reports it: PSM and SPM prompts, one sample at temperature 0.2, top-p 0.95, at most
512 new tokens, the output cut just before it reproduces the beginning of the given suffix, exact match.

- PSM: `<|fim_prefix|>` + prefix + `<|fim_suffix|>` + suffix + `<|fim_middle|>`; SPM (Gong et al. 2024, FIM paper
  variant 2): `<|fim_prefix|>` + `<|fim_suffix|>` + suffix + `<|fim_middle|>` + prefix. The strings are the card's
  (Llama-3.1-Future-Code-Ja); a model with other FIM tokens sets `fim_tokens` in the suite's overrides of
  `cptkit.configure` (see the template). The card prepends a literal `<|begin_of_text|>` to the prefix (`bos`).
- Scoring as bigcode-evaluation-harness's `santacoder_fim`: the output up to its stop words ("<|endoftext|>",
  "<|filename|>"), then the card's truncation, then `strip()` equality with `canonical_solution`.
- The card does not say how "matched the beginning of the provided suffix" is measured; cptkit cuts at the first
  occurrence of the suffix's first non-blank line (stripped). The column is marked so in docs/eval.md.

Try it on a CPU:  python -c "from cptkit.eval.fim import truncate; print(truncate('x = 1\\nreturn x\\n', '\\nreturn x'))"
"""

from __future__ import annotations

STOP_WORDS = ["<|endoftext|>", "<|filename|>"]
TOKENS = {"prefix": "<|fim_prefix|>", "suffix": "<|fim_suffix|>", "middle": "<|fim_middle|>"}
BOS = "<|begin_of_text|>"


def prompt(doc: dict, mode: str, tokens: dict | None = None, bos: str = BOS) -> str:
    t = {**TOKENS, **(tokens or {})}
    pre = bos + doc["prompt"]
    if mode == "psm":
        return f"{t['prefix']}{pre}{t['suffix']}{doc['suffix']}{t['middle']}"
    if mode == "spm":
        return f"{t['prefix']}{t['suffix']}{doc['suffix']}{t['middle']}{pre}"
    raise ValueError(f"FIM mode must be psm or spm, got {mode!r}")


def truncate(output: str, suffix: str) -> str:
    """The output before it starts writing the suffix (its first non-blank line), and before any stop word."""
    for stop in STOP_WORDS:
        output = output.split(stop)[0]
    head = next((line.strip() for line in suffix.splitlines() if line.strip()), "")
    if head:
        at = output.find(head)
        if at >= 0:
            output = output[:at]
    return output


def process_results(doc: dict, results: list[str]) -> dict[str, float]:
    return {"exact_match": float(truncate(results[0], doc["suffix"]).strip() == doc["canonical_solution"].strip())}


def configure(cfg: dict, files: dict, *, variant: str, out_dir, fim_tokens: dict | None = None) -> None:
    """Render-time: keep one language's rows and write each prompt (its FIM layout) into the rendered data."""
    import json
    from pathlib import Path

    mode, _, language = variant.partition("_")
    rows = []
    for path in files["test"].files:
        with open(path, encoding="utf-8") as f:
            rows += [r for r in map(json.loads, filter(str.strip, f)) if r.get("language") == language]
    if not rows:
        from cptkit.errors import UserError

        raise UserError(f"no {language} rows in {files['test'].files[0]}", field="language")
    out = Path(out_dir) / f"{cfg['task']}.prompts.jsonl"
    with open(out, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps({**row, "fim_prompt": prompt(row, mode, fim_tokens)}, ensure_ascii=False) + "\n")
    cfg["dataset_path"] = "json"
    cfg["dataset_kwargs"] = {"data_files": {"test": [str(out)]}}
