"""llm-jp-eval v1.3.0's Japanese tasks, as the Swallow tables scored JCom., JEMHopQA, NIILC, JSQuAD and JMMLU.

swallow-llm/swallow-evaluation runs its pinned llm-jp-eval 1.3.0 (`scripts/evaluate_ja_llmjp.sh`: 4 shots, JMMLU 5,
all test rows, `config_no-sample.yaml`: greedy, no custom prompt template). What decides the numbers, re-implemented
here and checked against that code's own output (tests/eval/fixtures/make_parity_fixtures.py):

- Data: each corpus is turned into `{input, output}` samples ("質問：…", JCom. with "選択肢：0.…,1.…", JSQuAD with
  "文章：…\\n質問：…"); the corpus's train file is shuffled with `random.seed(42)` and split 90/10 into train/dev, its
  dev file is the test split. NIILC joins all answers with "," and drops questions answered "-". JMMLU: 53 subject
  CSVs, each shuffled and halved (dev/test), then train = 16 dev + 16 test rows, test = the rest of the test halves.
  `samples(name, raw)` does this; `cptkit eval fetch-data` writes its output.
- Prompt: "以下は、タスクを説明する指示と、…書きなさい。\\n\\n### 指示:\\n{instruction}", then per shot
  "\\n\\n### 入力:\\n{input}\\n\\n### 応答:\\n{output}", then the same block for the question with the answer left
  open. Shots are the *first* N train samples (the same for every question).
- Generation: greedy, at most `output_length` new tokens (JCom. and JMMLU 1, JEMHopQA 15, NIILC 180, JSQuAD 25); the
  prediction is the text before the first "\\n\\n", stripped and NFKC-normalised (lm-eval's `until: ["\\n\\n"]` cuts
  at the same place).
- Metric: exact match, or char-F1 = fuzzywuzzy's `token_sort_ratio(pred, gold) / 100` (thefuzz here: the same
  processing and integer rounding, on rapidfuzz's Levenshtein as python-Levenshtein was); the mean over questions.

Try it on a CPU:  python -c "from cptkit.eval.llmjp import char_f1; print(char_f1('織田信長', '信長織田'))"
"""

from __future__ import annotations

import csv
import io
import json
import random
import unicodedata
from dataclasses import dataclass

PREAMBLE = "以下は、タスクを説明する指示と、文脈のある入力の組み合わせです。要求を適切に満たす応答を書きなさい。"
STOP = "\n\n"  # llm-jp-eval keeps the text before the first blank line


@dataclass(frozen=True)
class Dataset:
    instruction: str
    output_length: int  # max new tokens
    metric: str  # exact_match | char_f1


DATASETS = {
    "jcommonsenseqa": Dataset(
        "質問と回答の選択肢を入力として受け取り、選択肢から回答を選択してください。なお、回答は選択肢の番号（例：0）で"
        "するものとします。 回答となる数値をint型で返し、他には何も含めないことを厳守してください。",
        1,
        "exact_match",
    ),
    "jemhopqa": Dataset(
        "質問を入力とし、回答を出力してください。回答の他には何も含めないことを厳守してください。回答が'はい'と'いいえ'"
        "で答えることができる場合、'YES'と'NO'で答えてください。",
        15,
        "char_f1",
    ),
    "niilc": Dataset(
        "質問に対する答えを出力してください。回答の他には何も含めないことを厳守してください。答えが複数の場合、"
        "コンマ（,）で繋げてください。",
        180,
        "char_f1",
    ),
    "jsquad": Dataset(
        "質問に対する回答を文章から一言で抽出してください。回答は名詞で答えてください。 それ以外には何も含めないことを"
        "厳守してください。",
        25,
        "char_f1",
    ),
    "jmmlu": Dataset(
        "与えられた質問と選択肢から、最も適切な回答を選択してください。なお、回答には選択肢のアルファベット（例：A）の"
        "みを含め、他には何も含めないことを厳守してください。",
        1,
        "exact_match",
    ),
}

# JMMLU's subject files in the order llm-jp-eval 1.3.0 reads them: the order decides the shuffles, hence the split.
JMMLU_SUBJECTS = [
    "econometrics",
    "human_aging",
    "high_school_psychology",
    "professional_medicine",
    "electrical_engineering",
    "college_mathematics",
    "medical_genetics",
    "formal_logic",
    "nutrition",
    "prehistory",
    "world_religions",
    "japanese_history",
    "high_school_geography",
    "international_law",
    "logical_fallacies",
    "human_sexuality",
    "philosophy",
    "college_medicine",
    "professional_accounting",
    "high_school_mathematics",
    "global_facts",
    "business_ethics",
    "high_school_chemistry",
    "college_physics",
    "high_school_statistics",
    "moral_disputes",
    "high_school_biology",
    "miscellaneous",
    "high_school_macroeconomics",
    "high_school_computer_science",
    "abstract_algebra",
    "elementary_mathematics",
    "jurisprudence",
    "security_studies",
    "high_school_physics",
    "college_computer_science",
    "public_relations",
    "management",
    "computer_security",
    "college_chemistry",
    "anatomy",
    "high_school_european_history",
    "machine_learning",
    "virology",
    "high_school_microeconomics",
    "astronomy",
    "world_history",
    "college_biology",
    "clinical_knowledge",
    "conceptual_physics",
    "professional_psychology",
    "sociology",
    "marketing",
]
JMMLU_TRAIN_ROWS = 32

# The raw files llm-jp-eval 1.3.0 downloads (its `download()` methods): part -> URL. JEMHopQA, NIILC and JMMLU are
# read from a branch head there, not a tag; `fetch-data` records the sha256 of what it got.
_JGLUE = "https://raw.githubusercontent.com/yahoojapan/JGLUE/v1.1.0/datasets"
RAW_URLS = {
    "jcommonsenseqa": {
        "train": f"{_JGLUE}/jcommonsenseqa-v1.1/train-v1.1.json",
        "test": f"{_JGLUE}/jcommonsenseqa-v1.1/valid-v1.1.json",
    },
    "jsquad": {"train": f"{_JGLUE}/jsquad-v1.1/train-v1.1.json", "test": f"{_JGLUE}/jsquad-v1.1/valid-v1.1.json"},
    "jemhopqa": {
        "train": "https://raw.githubusercontent.com/aiishii/JEMHopQA/main/corpus/train.json",
        "test": "https://raw.githubusercontent.com/aiishii/JEMHopQA/main/corpus/dev.json",
    },
    "niilc": {
        "train": "https://raw.githubusercontent.com/mynlp/niilc-qa/master/data/NIILC-ECQA2015_dev.xml",
        "test": "https://raw.githubusercontent.com/mynlp/niilc-qa/master/data/NIILC-ECQA2015_test.xml",
    },
}


RAW_URLS["jmmlu"] = {
    s: f"https://raw.githubusercontent.com/nlp-waseda/JMMLU/main/JMMLU/{s}.csv" for s in JMMLU_SUBJECTS
}


def normalize(text: str) -> str:
    return unicodedata.normalize("NFKC", text)


def prediction(generated: str) -> str:
    return normalize(generated.split(STOP)[0].strip())


def char_f1(pred: str, gold: str) -> float:
    from thefuzz import fuzz

    return fuzz.token_sort_ratio(pred, gold) / 100.0


def prompt(instruction: str, shots: list[dict], question: str) -> str:
    """The text llm-jp-eval sends to the model (a reference for tests; the task YAMLs build the same via lm-eval)."""
    text = f"{PREAMBLE}\n\n### 指示:\n{instruction}"
    for shot in shots:
        text += f"\n\n### 入力:\n{shot['input']}\n\n### 応答:\n{shot['output']}"
    return text + f"\n\n### 入力:\n{question}\n\n### 応答:\n"


def process_results(doc: dict, results: list[str], *, metric: str) -> dict[str, float]:
    pred, gold = prediction(results[0]), normalize(doc["output"])
    return {metric: float(pred == gold) if metric == "exact_match" else char_f1(pred, gold)}


def process_results_exact(doc: dict, results: list[str]) -> dict[str, float]:
    return process_results(doc, results, metric="exact_match")


def process_results_char_f1(doc: dict, results: list[str]) -> dict[str, float]:
    return process_results(doc, results, metric="char_f1")


# ---- data: the corpora's own files -> llm-jp-eval samples -----------------------------------------------------------


def _split_train_dev(samples: list[dict]) -> dict[str, list[dict]]:
    rng = random.Random(42)  # llm-jp-eval seeds the global generator with 42: a private Random(42) draws the same
    rng.shuffle(samples)
    cut = int(len(samples) * 0.9)
    return {"train": samples[:cut], "dev": samples[cut:]}


def _s(input_: str, output: str) -> dict:
    return {"input": input_, "output": output}


def _jcommonsenseqa_rows(text: str) -> list[dict]:
    rows = [json.loads(line.strip()) for line in text.splitlines() if line.strip()]
    return [
        _s(
            f"質問：{r['question']}\n選択肢：0.{r['choice0']},1.{r['choice1']},2.{r['choice2']},"
            f"3.{r['choice3']},4.{r['choice4']}",
            str(r["label"]),
        )
        for r in rows
    ]


def _jemhopqa_rows(text: str) -> list[dict]:
    return [_s(f"質問：{r['question']}", r["answer"]) for r in json.loads(text)]


def _niilc_rows(text: str) -> list[dict]:
    import xml.etree.ElementTree as ET

    rows = []
    for q in ET.fromstring(text).iter("question"):
        # xmltodict (llm-jp-eval) keeps answers verbatim and drops empty ones; a single answer stays a string
        found = q.find("answers")
        answers = [_text(a) for a in found.findall("answer")] if found is not None else []
        answer = ",".join(a for a in answers if a) if len(answers) > 1 else (answers[0] if answers else None)
        if answer == "-":
            continue
        rows.append(_s(f"質問：{_text(q.find('text'))}", answer))
    return rows


def _text(node) -> str | None:
    # xmltodict strips surrounding whitespace and gives None for an empty element
    text = (node.text or "").strip() if node is not None else ""
    return text or None


def _jsquad_rows(text: str) -> list[dict]:
    return [
        _s(f"文章：{p['context']}\n質問：{q['question']}", q["answers"][0]["text"])
        for article in json.loads(text)["data"]
        for p in article["paragraphs"]
        for q in p["qas"]
    ]


ROWS = {
    "jcommonsenseqa": _jcommonsenseqa_rows,
    "jemhopqa": _jemhopqa_rows,
    "niilc": _niilc_rows,
    "jsquad": _jsquad_rows,
}


def samples(name: str, raw: dict[str, str]) -> dict[str, list[dict]]:
    """train/dev/test samples of llm-jp-eval dataset `name` from its raw files' text.

    `raw`: {"train": text, "test": text} for JCom., JEMHopQA, NIILC, JSQuAD (the corpus's train and dev files);
    {SUBJECT: csv text} for JMMLU.
    """
    if name == "jmmlu":
        return _jmmlu(raw)
    out = _split_train_dev(ROWS[name](raw["train"]))
    out["test"] = ROWS[name](raw["test"])
    return out


def _jmmlu(raw: dict[str, str]) -> dict[str, list[dict]]:
    missing = [s for s in JMMLU_SUBJECTS if s not in raw]
    if missing:
        raise ValueError(f"JMMLU subjects missing: {', '.join(missing)}")
    rng = random.Random(42)
    dev, test = [], []
    for subject in JMMLU_SUBJECTS:
        text = raw[subject].removeprefix("\ufeff")  # utf-8-sig
        rows = [
            _s(f"質問：{r[0]}\n選択肢：A.{r[1]},B.{r[2]},C.{r[3]},D.{r[4]}", r[5])
            for r in csv.reader(io.StringIO(text, newline=""), quoting=csv.QUOTE_ALL)
        ]
        rng.shuffle(rows)
        dev.extend(rows[: len(rows) // 2])
        test.extend(rows[len(rows) // 2 :])
    rng.shuffle(dev)
    rng.shuffle(test)
    half = JMMLU_TRAIN_ROWS // 2
    return {"train": dev[:half] + test[:half], "dev": dev[half:], "test": test[half:]}


def configure(cfg: dict, files: dict, *, dataset: str) -> None:
    """Render-time completion of a template (cptkit.eval.tasks): instruction, output length and metric of `dataset`."""
    from cptkit.eval.tasks import FunctionTag

    spec = DATASETS[dataset]
    cfg["description"] = f"{PREAMBLE}\n\n### 指示:\n{spec.instruction}"
    cfg.setdefault("generation_kwargs", {}).setdefault("max_gen_toks", spec.output_length)
    suffix = "exact" if spec.metric == "exact_match" else spec.metric
    cfg["process_results"] = FunctionTag(f"cptkit.eval.llmjp.process_results_{suffix}")
    cfg["metric_list"] = [{"metric": spec.metric, "aggregation": "mean", "higher_is_better": True}]
