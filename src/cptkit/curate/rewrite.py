"""Stages 3-4 (SGCR, SCOR) and the SwallowMath rewrite: LLM rewriting, journaled per shard.

For each batch of `engine.batch_size` records, the records the stage's journal already answered are not asked
again; the others are sent to the engine in one `generate` call (vLLM's offline batch API, or transformers on CPU),
and their raw answers are appended to the journal (fsync'ed) before anything is routed. A killed task therefore
loses at most the batch in flight, and a rerun asks only for what no journal line holds.

What is kept follows the public scripts (see `cptkit.curate.prompts`):
- sgcr: the improved code of the answer's `### Improved Code:` section; none -> dropped `no_improved_code`.
- scor: the answer's first ``` block plus a final newline; answers <= 50 characters -> `short_output`, no block ->
  `no_code_block`.
- math_rewrite: the whole answer; prompts over `max_prompt_chars` -> `prompt_too_long` (not asked), answers <= 50
  characters -> `short_output`.
"""

from __future__ import annotations

from cptkit.curate import prompts
from cptkit.curate.steps import CurateStep


class RewriteStep(CurateStep):
    journaled = True
    rewrites = True

    def __init__(self, stage, **kw):
        super().__init__(stage, **kw)
        self.batch_size = stage.engine.batch_size
        self._engine = None

    def params(self):
        s = self.stage
        return {"model": s.engine.model, "backend": s.engine.backend, **s.sampling.model_dump()}

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_engine"] = None
        return state

    def engine(self):
        if self._engine is None:
            from cptkit.curate.engines import build_engine

            self._engine = build_engine(self.stage.engine)
        return self._engine

    def messages(self, text: str) -> list[dict[str, str]]:
        raise NotImplementedError

    def skip_reason(self, text: str) -> str | None:
        """A reason not to ask at all (checked before generation)."""
        return None

    def accept(self, doc, answer: str) -> str | None:
        """Apply the answer to `doc` (new text and fields); return a drop reason or None."""
        raise NotImplementedError

    def decide(self, batch, first_seq, journal):
        answers: dict[int, dict] = {}
        ask: list[int] = []
        for k, doc in enumerate(batch):
            entry = journal.get(first_seq + k, doc.id)
            if entry is not None:
                answers[k] = entry
            else:
                ask.append(k)
        if ask:
            new = []
            to_generate = []
            for k in ask:
                reason = self.skip_reason(batch[k].text)
                if reason is not None:
                    new.append({"seq": first_seq + k, "id": batch[k].id, "skipped": reason})
                else:
                    to_generate.append(k)
            if to_generate:
                outs = self.engine().generate([self.messages(batch[k].text) for k in to_generate], self.stage.sampling)
                new += [
                    {"seq": first_seq + k, "id": batch[k].id, "answer": out}
                    for k, out in zip(to_generate, outs, strict=True)
                ]
                self.counts["generated"] += len(to_generate)
            journal.add(new)
            for entry in new:
                answers[entry["seq"] - first_seq] = entry
        reasons = []
        for k, doc in enumerate(batch):
            entry = answers[k]
            if "skipped" in entry:
                reasons.append(entry["skipped"])
                continue
            reason = self.accept(doc, entry["answer"])
            if reason is None:
                doc.metadata[f"{self.label}_rewritten"] = True
            reasons.append(reason)
        return reasons


class SgcrStep(RewriteStep):
    own_fields = ("sgcr_score",)

    def messages(self, text):
        return prompts.sgcr_messages(text)

    def accept(self, doc, answer):
        parsed = prompts.parse_sgcr(answer)
        doc.metadata["sgcr_score"] = parsed.get("score", -1.0)
        code = parsed.get("improved_code")
        if not code:
            return "no_improved_code"
        if len(code) < self.stage.min_output_chars:
            return "short_output"
        doc.text = code
        return None


class ScorStep(RewriteStep):
    def messages(self, text):
        return prompts.scor_messages(text)

    def accept(self, doc, answer):
        if len(answer) < self.stage.min_output_chars:
            return "short_output"
        code = prompts.first_fenced_block(answer)
        if not code:
            return "no_code_block"
        doc.text = code if code.endswith("\n") else code + "\n"
        return None


class MathRewriteStep(RewriteStep):
    def messages(self, text):
        return prompts.math_messages(text)

    def skip_reason(self, text):
        if len(self.engine().render(self.messages(text))) > self.stage.max_prompt_chars:
            return "prompt_too_long"
        return None

    def accept(self, doc, answer):
        if len(answer) < self.stage.min_output_chars:
            return "short_output"
        doc.text = answer
        return None


REWRITE_CLASSES = {"sgcr": SgcrStep, "scor": ScorStep, "math_rewrite": MathRewriteStep}
