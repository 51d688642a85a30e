"""A pipeline killed with SIGKILL in the middle of its pylint stage resumes: no record lost, none twice, no file
rated twice, nothing half-written under a final name.

Run on CPU: `.venv/bin/pytest tests/curate/test_resume.py -q -m slow` (about a minute).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest
from curatehelp import cases, curate, read_shards, write_jsonl, write_pipeline


@pytest.mark.slow
def test_killed_pipeline_resumes_without_duplicates_or_losses(tmp_path):
    good = cases()["good"]["code"]
    records = [{"id": f"f{i}", "text": good.replace("cheapest", f"cheapest_{i}")} for i in range(6)]
    records += [{"id": "py2", "text": 'print "x"\n'}, {"id": "empty", "text": ""}]
    write_jsonl(tmp_path / "in" / "a.jsonl", records[0::2])
    write_jsonl(tmp_path / "in" / "b.jsonl", records[1::2])
    stages = "  - kind: syntax\n  - kind: pylint\n    batch_size: 1\n  - kind: language\n"
    pipe = write_pipeline(tmp_path, stages, tasks=2, extra="stats: {tokenizer: null}\n")
    out = tmp_path / "out"
    journal = out / ".curate" / "journal" / "pylint" / "00000.jsonl"

    proc = subprocess.Popen(
        [sys.executable, "-m", "cptkit.cli", "curate", str(pipe)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if journal.exists() and len(journal.read_text().splitlines()) >= 2:
            break
        time.sleep(0.2)
    assert proc.poll() is None, "the pipeline ended before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    rated_before = len(journal.read_text().splitlines())
    assert 2 <= rated_before < 4
    assert not (out / "data").exists() and not (out / "rejected").exists()  # nothing under a final name yet

    r = curate(str(pipe))
    assert r.returncode == 0, r.stderr
    rows = read_shards(out / "data") + read_shards(out / "rejected")
    assert Counter(x["id"] for x in rows) == Counter(x["id"] for x in records)
    entries = [json.loads(line) for line in journal.read_text().splitlines()]
    assert Counter(e["seq"] for e in entries) == Counter(range(3))  # 3 files of shard 0 reach pylint, each rated once
    assert {x["id"]: x.get("drop_reason") for x in rows}["py2"] == "syntax_error"
    stats = json.loads((out / "curate_stats.json").read_text())
    assert stats["stages"][0]["counts"]["records_in"] == len(records)
