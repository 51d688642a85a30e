"""The pipeline stages as datatrove steps: each one decides, records its decision as fields, and routes the record.

Every stage sees the records the previous one kept and either keeps each one (possibly rewritten) or drops it with
a reason; a dropped record is written to `rejected/<stage>/NNNNN.jsonl.gz` with its fields, so every input record
ends in exactly one file. Counts, tokens and score histograms are kept per stage for the statistics
(`cptkit.curate.report`). With `action: annotate` a filter records its decision and keeps the record.

Fields written (the decision and the score, so a threshold can change later without recomputing them):
- syntax: `syntax_ok`, `syntax_error`, `python_version`
- pylint: `pylint_raw_score` (pylint's own), `comment_ratio`, `pylint_score` (after the comment penalty),
  `pylint_status`, `pylint_version`; a record that already carries a raw score from the same pylint version is not
  rated again
- language: `language_type` (the public labels), `language_issue`
- sgcr / scor / math_rewrite: the rewritten `text`, `<stage>_rewritten`, SGCR's `sgcr_score`; the raw answers stay in
  the stage's journal (`.curate/journal/<stage>/NNNNN.jsonl`)
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.writers.jsonl import JsonlWriter
from datatrove.utils.batching import batched

from cptkit.curate import checks, config
from cptkit.curate.journal import Journal
from cptkit.curate.tokens import TokenCounter

# Histograms kept per stage: field -> (low, high) of the bins.
HISTOGRAMS = {"pylint_score": (0.0, 10.0), "comment_ratio": (0.0, 1.0), "sgcr_score": (0.0, 10.0)}


def record_of(writer, doc: Document) -> dict:
    """What a shard line holds: `text` and `id` always (datatrove's default adapter drops an empty text, which
    would make an empty file's record unreadable downstream), then the record's fields at the top level."""
    return {**doc.metadata, "text": doc.text, "id": doc.id}


def jsonl_writer(folder: str, filename: str) -> JsonlWriter:
    return JsonlWriter(folder, output_filename=filename, adapter=record_of)


def pylint_version() -> str:
    from importlib.metadata import version

    return version("pylint")


class CurateStep(PipelineStep):
    type = "CURATE"

    def __init__(self, stage, *, staging: str, journal_dir: str, tokens: TokenCounter, bins: int):
        super().__init__()
        self.stage = stage
        self.label = stage.label
        self.name = self.label
        self.staging = staging
        self.journal_dir = journal_dir
        self.tokens = tokens
        self.bins = bins
        self.counts: Counter = Counter()
        self.hists: dict[str, np.ndarray] = {}

    batch_size = 1
    journaled = False
    rewrites = False

    def decide(self, batch: list[Document], first_seq: int, journal: Journal | None) -> list[str | None]:
        """Annotate each record; return None (keep) or a drop reason per record."""
        raise NotImplementedError

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        rejected = jsonl_writer(self.staging, f"rejected/{self.label}/${{rank}}.jsonl.gz")
        journal = Journal(Path(self.journal_dir) / self.label / f"{rank:05d}.jsonl") if self.journaled else None
        seq = 0
        try:
            with rejected:
                for batch in batched(data, self.batch_size):
                    tokens_in = [self.tokens.of(doc) for doc in batch]
                    with self.track_time("batch"):
                        reasons = self.decide(batch, seq, journal)
                    seq += len(batch)
                    for doc, n_in, reason in zip(batch, tokens_in, reasons, strict=True):
                        self.counts["records_in"] += 1
                        self.counts["tokens_in"] += n_in
                        self._histogram(doc)
                        if reason is not None and self.stage.action == "filter":
                            self.counts[f"dropped:{reason}"] += 1
                            doc.metadata["dropped_by"] = self.label
                            doc.metadata["drop_reason"] = reason
                            rejected.write(doc, rank)
                            continue
                        if reason is not None:
                            self.counts[f"flagged:{reason}"] += 1
                        if self.rewrites and reason is None:
                            self.tokens.forget(doc)
                        self.counts["records_out"] += 1
                        self.counts["tokens_out"] += self.tokens.of(doc)
                        yield doc
        finally:
            if journal is not None:
                journal.close()

    def _histogram(self, doc: Document) -> None:
        for field, (lo, hi) in HISTOGRAMS.items():
            value = doc.metadata.get(field)
            if isinstance(value, int | float) and value is not None and field in self.own_fields:
                hist = self.hists.setdefault(field, np.zeros(self.bins, dtype=np.int64))
                idx = int(np.clip((value - lo) / (hi - lo) * self.bins, 0, self.bins - 1))
                hist[idx] += 1

    own_fields: tuple[str, ...] = ()

    def summary(self) -> dict:
        return {
            "stage": self.label,
            "kind": self.stage.kind,
            "action": self.stage.action,
            "counts": dict(self.counts),
            "histograms": {k: v.tolist() for k, v in self.hists.items()},
            "params": self.params(),
        }

    def params(self) -> dict:
        return {}


class SyntaxStep(CurateStep):
    def decide(self, batch, first_seq, journal):
        version = checks.python_version()
        reasons = []
        for doc in batch:
            error = checks.syntax_check(doc.text)
            doc.metadata.update(syntax_ok=error is None, syntax_error=error, python_version=version)
            reasons.append(None if error is None else "syntax_error")
        return reasons

    def params(self):
        return {"python_version": checks.python_version()}


class PylintStep(CurateStep):
    journaled = True
    own_fields = ("pylint_score", "comment_ratio")

    def __init__(self, stage: config.PylintStage, **kw):
        super().__init__(stage, **kw)
        self.batch_size = stage.batch_size
        self.version = pylint_version()
        self._sandbox = None

    def params(self):
        return {
            "threshold": self.stage.threshold,
            "pylint_version": self.version,
            "disabled": list(checks.PYLINT_DISABLED),
            "astroid_state": self.stage.astroid_state,
        }

    def decide(self, batch, first_seq, journal):
        todo = []
        for k, doc in enumerate(batch):
            known = doc.metadata.get("pylint_version") == self.version and "pylint_status" in doc.metadata
            entry = journal.get(first_seq + k, doc.id)
            if entry is not None:
                doc.metadata.update(pylint_raw_score=entry["raw"], pylint_status=entry["status"])
            elif not known:
                todo.append(k)
        if todo:
            from cptkit.curate.sandbox import PylintSandbox

            if self._sandbox is None:
                s = self.stage
                self._sandbox = PylintSandbox(s.timeout_s, s.memory_mb, s.isolate_network, s.astroid_state)
            results = self._sandbox.rate([batch[k].text for k in todo])
            for k, res in zip(todo, results, strict=True):
                batch[k].metadata.update(pylint_raw_score=res.score, pylint_status=res.status)
            journal.add(
                [
                    {"seq": first_seq + k, "id": batch[k].id, "raw": r.score, "status": r.status}
                    for k, r in zip(todo, results, strict=True)
                ]
            )
        reasons = []
        for doc in batch:
            raw = doc.metadata["pylint_raw_score"]
            ratio = checks.comment_ratio(doc.text)
            score = None if raw is None else checks.apply_comment_penalty(raw, ratio)
            doc.metadata.update(comment_ratio=ratio, pylint_score=score, pylint_version=self.version)
            status = doc.metadata["pylint_status"]
            if status != "ok":
                reasons.append(f"pylint_{status.split(':')[0]}")
            elif score is None:
                reasons.append("pylint_no_score")
            else:
                reasons.append(None if score >= self.stage.threshold else "pylint_below_threshold")
        return reasons


_LANGUAGE_REASONS = {
    checks.LANG_OTHER: "language_not_ja_en",
    checks.LANG_TOKEN_ERROR: "language_token_error",
    checks.LANG_INDENT_ERROR: "language_indentation_error",
}


class LanguageStep(CurateStep):
    def decide(self, batch, first_seq, journal):
        reasons = []
        for doc in batch:
            label, issue = checks.language_check(doc.text)
            doc.metadata.update(language_type=label, language_issue=issue)
            reasons.append(_LANGUAGE_REASONS.get(label))
        return reasons


class SelectStep(CurateStep):
    def params(self):
        return {"field": self.stage.field, "min": self.stage.min, "max": self.stage.max}

    def decide(self, batch, first_seq, journal):
        s = self.stage
        reasons = []
        for doc in batch:
            value = doc.metadata.get(s.field)
            if not isinstance(value, int | float) or isinstance(value, bool):
                reasons.append(f"{s.field}_missing")
            elif (s.min is not None and value < s.min) or (s.max is not None and value > s.max):
                reasons.append(f"{s.field}_out_of_range")
            else:
                reasons.append(None)
        return reasons


STEP_CLASSES = {
    "syntax": SyntaxStep,
    "pylint": PylintStep,
    "language": LanguageStep,
    "select": SelectStep,
}


def build_step(stage, **kw) -> CurateStep:
    if stage.kind in STEP_CLASSES:
        return STEP_CLASSES[stage.kind](stage, **kw)
    from cptkit.curate.rewrite import REWRITE_CLASSES

    return REWRITE_CLASSES[stage.kind](stage, **kw)
