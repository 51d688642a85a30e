"""Per-shard journal of finished work, so a killed task resumes without asking pylint or the LLM twice.

One append-only JSON-lines file per (stage, rank): `{"seq": n, "id": ..., ...result}` where `seq` is the record's
position in the stage's input stream for that rank (deterministic: the reader, every filter and every journaled
stage before it give the same stream on a rerun). Lines are flushed and fsync'ed after each batch; a torn last
line (the process was killed mid-write) is cut off on open. A record whose `seq` is present but whose `id` differs
means the input changed under the journal: that is an error, never a silent mix.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from cptkit.errors import UserError


class Journal:
    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.done: dict[int, dict] = {}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        good = 0
        if self.path.exists():
            with open(self.path, "rb") as f:
                for line in f:
                    if not line.endswith(b"\n"):
                        break  # torn write
                    try:
                        entry = json.loads(line)
                    except json.JSONDecodeError:
                        break
                    self.done[entry["seq"]] = entry
                    good += len(line)
            with open(self.path, "r+b") as f:
                f.truncate(good)
        self._f = open(self.path, "ab")  # noqa: SIM115 - held open for the life of the task

    def get(self, seq: int, doc_id: str) -> dict | None:
        entry = self.done.get(seq)
        if entry is not None and entry["id"] != doc_id:
            raise UserError(
                f"record {seq} was {entry['id']!r} when the journal was written, now {doc_id!r}: the input changed; "
                "remove the output directory to start over",
                file=self.path,
            )
        return entry

    def add(self, entries: list[dict]) -> None:
        for entry in entries:
            self.done[entry["seq"]] = entry
            self._f.write(json.dumps(entry, ensure_ascii=False).encode("utf-8") + b"\n")
        self._f.flush()
        os.fsync(self._f.fileno())

    def close(self) -> None:
        self._f.close()
