"""Token counts for the statistics (tokens in/out per stage, as the paper reports them: Llama-3 tokens).

The count of a record is computed once and cached on the record (`token_count`, datatrove's own convention) until
a stage rewrites its text. `tokenizer: null` in the pipeline's `stats` turns counting off (all counts 0).
"""

from __future__ import annotations

from datatrove.data import Document


class TokenCounter:
    def __init__(self, spec: str | None):
        self.spec = spec
        self._tok = None

    def _tokenizer(self):
        if self._tok is None:
            from cptkit.tokenize.tokenizers import load_tokenizer

            self._tok = load_tokenizer(self.spec)
        return self._tok

    def __getstate__(self):  # datatrove ships steps to worker processes: load the tokenizer there
        return {"spec": self.spec, "_tok": None}

    def of(self, doc: Document) -> int:
        if self.spec is None:
            return 0
        n = doc.metadata.get("token_count")
        if not isinstance(n, int):
            n = len(self._tokenizer().encode_batch([doc.text])[0])
            doc.metadata["token_count"] = n
        return n

    def forget(self, doc: Document) -> None:
        doc.metadata.pop("token_count", None)
