"""Stage 2, pylint in the sandbox: the same scores as the public tool (pylint run once per file), the hand-made
set kept and dropped as it should be, a file that makes pylint hang costs a timeout and nothing else, the memory
limit and the network cut hold.

Run on CPU: `.venv/bin/pytest tests/curate/test_pylint.py -q -m slow` (about 2-3 minutes on 2 busy cores).
"""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest
from curatehelp import HANG_CODE, cases, curate, read_shards, reference, write_jsonl, write_pipeline

from cptkit.curate.sandbox import PylintSandbox, _probe_isolation_supported
from cptkit.curate.steps import pylint_version

CASES = cases()
REF = reference()


def test_pylint_is_the_pinned_version_the_reference_was_made_with():
    assert REF["pylint"].split()[-1] == pylint_version()


@pytest.mark.slow
def test_pipeline_pylint_stage_matches_public_scores_and_survives_a_hanging_file(tmp_path):
    names = sorted(CASES)
    records = [{"id": n, "text": CASES[n]["code"]} for n in names]
    records.insert(len(records) // 2, {"id": "hang", "text": HANG_CODE})  # files after it must still be rated
    write_jsonl(tmp_path / "in" / "a.jsonl", records)
    stages = (
        "  - kind: syntax\n    action: annotate\n"  # let pylint see every file, as the public tool rates them all
        "  - kind: pylint\n    timeout_s: 60\n"
        "  - kind: language\n    action: annotate\n"
    )
    r = curate(str(write_pipeline(tmp_path, stages, extra="stats: {tokenizer: null}\n")))
    assert r.returncode == 0, r.stderr
    kept = {x["id"]: x for x in read_shards(tmp_path / "out" / "data")}
    rejected = {x["id"]: x for x in read_shards(tmp_path / "out" / "rejected")}
    rows = kept | rejected
    assert len(rows) == len(records) and not set(kept) & set(rejected)

    assert rejected["hang"]["drop_reason"] == "pylint_timeout" and rejected["hang"]["pylint_status"] == "timeout"
    for name, ref in REF["cases"].items():
        got = rows[name]["pylint_score"]
        assert (got is None) == (ref["pylint_score"] is None), name
        if got is not None:
            assert got == pytest.approx(ref["pylint_score"], abs=1e-9), name
        assert rows[name]["pylint_version"] == pylint_version()
    for name, case in CASES.items():
        if "pylint_keep" in case:
            assert (name in kept) == case["pylint_keep"], name
    assert rejected["empty"]["drop_reason"] == "pylint_no_score"
    assert rejected["python2_print"]["drop_reason"] == "pylint_no_score"  # pylint cannot rate what does not parse
    assert rejected["comment_heavy"]["pylint_raw_score"] >= 7.0 > rejected["comment_heavy"]["pylint_score"]

    stats = (tmp_path / "out" / "curate_stats.md").read_text()
    assert "pylint_timeout: 1" in stats and "pylint_below_threshold" in stats
    assert (tmp_path / "out" / "curate_hist.png").stat().st_size > 1000


@pytest.mark.slow
def test_memory_limit_costs_the_file_not_the_batch():
    # 40 MB is too little for Python + pylint: each file's worker dies, is marked, and the next file gets a new one
    results = PylintSandbox(timeout_s=20, memory_mb=40).rate(["x = 1\n", "y = 2\n"])
    # Where the limit bites decides whether pylint reports a MemoryError, the process dies, or it stalls until the
    # timeout: each drops the file, and the next file still gets its own attempt.
    assert all(r.status in ("memory", "crashed", "timeout") for r in results) and all(r.score is None for r in results)
    assert PylintSandbox(timeout_s=60).rate(["x = 1\n"])[0].status == "ok"  # not blind: without the limit it rates


@pytest.mark.skipif(not _probe_isolation_supported(), reason="user+network namespaces not allowed here")
def test_sandbox_has_no_network():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    probe = f"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=5); print('connected')"
    sandbox = PylintSandbox()
    inside = subprocess.run([sys.executable, "-c", probe], preexec_fn=sandbox._preexec, capture_output=True, text=True)
    outside = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    server.close()
    assert outside.stdout.strip() == "connected"  # the probe itself works: the check is not blind
    assert inside.returncode != 0 and "connected" not in inside.stdout
