"""kill -9 at any moment, rerun: byte-identical to an uninterrupted run; finished shards are skipped; nothing
incomplete under a final name. Also: output independent of worker count and chunk size; scale-out + merge.

Run on CPU: `.venv/bin/pytest tests/tokenize/test_tokenize_resume.py -q` (about 30 s).
"""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tokhelp import corpus, read_prefix, tokenize

from cptkit.tokenize.pipeline import work_dir
from cptkit.tokenize.readers import ChunkScanner, expand_inputs

CHUNK = "8000"


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> list[str]:
    """~0.8 MB in three files (one gzip): about 100 chunks of 8 kB."""
    root = tmp_path_factory.mktemp("in")
    docs = corpus(1200, seed=1)
    lines = [json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in docs]
    (root / "a.jsonl").write_text("".join(lines[:400]), encoding="utf-8")
    (root / "b.jsonl.gz").write_bytes(gzip.compress("".join(lines[400:800]).encode()))
    (root / "c.jsonl").write_text("".join(lines[800:]), encoding="utf-8")
    return [str(root / "a.jsonl"), str(root / "b.jsonl.gz"), str(root / "c.jsonl")]


@pytest.fixture(scope="module")
def reference(inputs, tmp_path_factory, llama3_tokenizer):
    """An uninterrupted run: one worker, the default chunk size (1 chunk per file)."""
    out = tmp_path_factory.mktemp("ref") / "ref"
    r = tokenize(
        *_inputs_args(inputs), "--output-prefix", str(out), "--tokenizer", str(llama3_tokenizer), "--workers", "1"
    )
    assert r.returncode == 0, r.stderr
    return read_prefix(out)


def _inputs_args(inputs):
    return [a for p in inputs for a in ("--input", p)]


def _same_manifest(a: dict, b: dict) -> bool:
    drop = ("name", "prefix", "fingerprint", "options")  # chunk size is part of the fingerprint, not of the data
    return {k: v for k, v in a.items() if k not in drop} == {k: v for k, v in b.items() if k not in drop}


def _final_names_complete(out: Path, reference) -> None:
    """Whatever sits under a final name is complete: equal to the uninterrupted run's bytes."""
    ref_bin, ref_idx, _ = reference
    if Path(f"{out}.bin").exists():
        assert Path(f"{out}.bin").read_bytes() == ref_bin
    if Path(f"{out}.idx").exists():
        assert Path(f"{out}.idx").read_bytes() == ref_idx
    if Path(f"{out}.manifest.json").exists():
        assert Path(f"{out}.bin").exists() and Path(f"{out}.idx").exists()
    for meta in (work_dir(out) / "chunks").glob("*.json"):  # a shard's stats exist only beside complete shard files
        stats = json.loads(meta.read_text())
        assert os.path.getsize(meta.with_suffix(".bin")) == stats["bin_bytes"]


def test_kill_9_at_several_points_then_resume_is_byte_identical(inputs, reference, tmp_path, llama3_tokenizer):
    out = tmp_path / "killed"
    total_chunks = sum(len(list(ChunkScanner(f, "text", int(CHUNK)))) for f in expand_inputs(inputs))
    assert total_chunks > 60
    cmd = [
        sys.executable,
        "-m",
        "cptkit.cli",
        "tokenize",
        *_inputs_args(inputs),
        "--output-prefix",
        str(out),
        "--tokenizer",
        str(llama3_tokenizer),
        "--workers",
        "2",
        "--chunk-bytes",
        CHUNK,
    ]
    chunks_dir = work_dir(out) / "chunks"
    kills = 0
    kept: dict[str, int] = {}
    # Kill points: as soon as one shard is done, at about half, and once every shard is done (merge time).
    for threshold in (1, total_chunks // 2, total_chunks):
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        deadline = time.monotonic() + 90
        while proc.poll() is None and time.monotonic() < deadline:
            if chunks_dir.is_dir() and len(list(chunks_dir.glob("*.json"))) >= threshold:
                break
            time.sleep(0.01)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # the whole process group, workers included: a node dying
            kills += 1
        proc.wait()
        _final_names_complete(out, reference)
        # Shards finished before this kill were skipped, not redone: their stats files are untouched.
        for name, mtime in kept.items():
            path = chunks_dir / name
            assert not path.exists() or path.stat().st_mtime_ns == mtime, name
        kept = {p.name: p.stat().st_mtime_ns for p in chunks_dir.glob("*.json")} if chunks_dir.is_dir() else {}
    assert kills >= 2, "the run finished before it could be killed; grow the input"
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    b, i, m = read_prefix(out)
    assert (b, i) == reference[:2]
    assert _same_manifest(m, reference[2])
    assert not work_dir(out).exists()


def test_output_does_not_depend_on_workers_or_chunk_size(inputs, reference, tmp_path, llama3_tokenizer):
    # Threads sharing one tokenizer and processes with their own give the same bytes as the one-worker reference.
    for kind, workers in (("process", "2"), ("thread", "3")):
        kout = tmp_path / kind
        r = tokenize(*_inputs_args(inputs), "--output-prefix", str(kout), "--tokenizer", str(llama3_tokenizer),
                     "--workers", workers, "--worker-kind", kind, "--chunk-bytes", "5000")  # fmt: skip
        assert r.returncode == 0, r.stderr
        b, i, m = read_prefix(kout)
        assert (b, i) == reference[:2] and _same_manifest(m, reference[2]), kind
    out = tmp_path / "w2"
    r = tokenize(
        *_inputs_args(inputs),
        "--output-prefix",
        str(out),
        "--tokenizer",
        str(llama3_tokenizer),
        "--workers",
        "2",
        "--chunk-bytes",
        "5000",
    )
    assert r.returncode == 0, r.stderr
    b, i, m = read_prefix(out)
    assert (b, i) == reference[:2] and _same_manifest(m, reference[2])
    # Rerun: already tokenized, nothing redone; a changed input is refused without --overwrite.
    r = tokenize(
        *_inputs_args(inputs),
        "--output-prefix",
        str(out),
        "--tokenizer",
        str(llama3_tokenizer),
        "--chunk-bytes",
        "5000",
    )
    assert r.returncode == 0 and " done " in r.stdout
    r = tokenize(*_inputs_args(inputs[:2]), "--output-prefix", str(out), "--tokenizer", str(llama3_tokenizer))
    assert r.returncode == 2 and "--overwrite" in r.stderr
    r = tokenize(
        *_inputs_args(inputs[:2]), "--output-prefix", str(out), "--tokenizer", str(llama3_tokenizer), "--overwrite"
    )
    assert r.returncode == 0
    assert read_prefix(out)[2]["documents"] == 800


def test_scale_out_shards_then_merge(inputs, reference, tmp_path, llama3_tokenizer):
    out = tmp_path / "so"
    common = [
        *_inputs_args(inputs),
        "--output-prefix",
        str(out),
        "--tokenizer",
        str(llama3_tokenizer),
        "--workers",
        "1",
        "--chunk-bytes",
        "60000",
    ]
    for i in (0, 2):
        assert tokenize(*common, "--shard-index", str(i), "--num-shards", "3").returncode == 0
    r = tokenize(*common, "--merge")  # shard 1 has not run
    assert r.returncode == 2 and "not tokenized yet" in r.stderr, r.stderr
    assert not Path(f"{out}.bin").exists() and not Path(f"{out}.idx").exists()
    done = {p.name: p.stat().st_mtime_ns for p in (work_dir(out) / "chunks").glob("*.json")}
    assert tokenize(*common, "--shard-index", "1", "--num-shards", "3").returncode == 0
    assert tokenize(*common, "--shard-index", "0", "--num-shards", "3").returncode == 0  # rerun: nothing to redo
    assert all((work_dir(out) / "chunks" / n).stat().st_mtime_ns == t for n, t in done.items())
    r = tokenize(*common, "--merge")
    assert r.returncode == 0, r.stderr
    b, i, m = read_prefix(out)
    assert (b, i) == reference[:2] and _same_manifest(m, reference[2])
    r = tokenize(*common, "--shard-index", "3", "--num-shards", "3")
    assert r.returncode == 2 and "--shard-index" in r.stderr


def test_array_tasks_started_at_once_then_merge(inputs, reference, tmp_path, llama3_tokenizer):
    """Array tasks start at the same moment on a shared file system: none may discard another's fresh shards."""
    out = tmp_path / "arr"
    common = [sys.executable, "-m", "cptkit.cli", "tokenize", *_inputs_args(inputs), "--output-prefix", str(out),
              "--tokenizer", str(llama3_tokenizer), "--workers", "1", "--chunk-bytes", "30000"]  # fmt: skip
    procs = [
        subprocess.Popen([*common, "--shard-index", str(i), "--num-shards", "2"], stderr=subprocess.PIPE)
        for i in (0, 1)
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0], [p.stderr.read() for p in procs]
    r = subprocess.run([*common, "--merge"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert read_prefix(out)[:2] == reference[:2]


def test_progress_bar_and_summary(inputs, tmp_path, llama3_tokenizer):
    r = tokenize(*_inputs_args(inputs), "--output-prefix", str(tmp_path / "p"), "--tokenizer", str(llama3_tokenizer),
                 "--workers", "1", "--chunk-bytes", "100000", "--progress")  # fmt: skip
    assert r.returncode == 0, r.stderr
    bar = r.stderr.replace("\r", "\n").splitlines()
    last = [line for line in bar if " docs, " in line][-1]
    assert "100%" in last and "1,200 docs" in last and " tokens/s" in last and "<00:00" in last  # ETA by input bytes
    header, _, row = r.stdout.splitlines()[:3]
    assert header.split() == ["source", "status", "documents", "skipped", "tokens", "input", "seconds", "tokens/s"]
    assert row.split()[:4] == ["p", "tokenized", "1,200", "0"]


def test_a_killed_worker_is_a_one_line_error_and_a_rerun_resumes(inputs, reference, tmp_path, llama3_tokenizer):
    import psutil

    out = tmp_path / "oom"
    cmd = [sys.executable, "-m", "cptkit.cli", "tokenize", *_inputs_args(inputs), "--output-prefix", str(out),
           "--tokenizer", str(llama3_tokenizer), "--workers", "2", "--worker-kind", "process",
           "--chunk-bytes", CHUNK]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    chunks_dir = work_dir(out) / "chunks"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and not (chunks_dir.is_dir() and any(chunks_dir.glob("*.json"))):
        time.sleep(0.01)
    workers = [c for c in psutil.Process(proc.pid).children() if "resource_tracker" not in " ".join(c.cmdline())]
    assert workers, "no worker process found"
    workers[0].kill()  # what the kernel's OOM killer does
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2 and "worker process died" in err and "rerun" in err, err
    assert len(err.strip().splitlines()) == 1, err
    _final_names_complete(out, reference)
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert read_prefix(out)[:2] == reference[:2]


def test_a_shard_damaged_on_disk_is_found_at_merge_and_redone(inputs, reference, tmp_path, llama3_tokenizer):
    """Shards are not fsync'ed; a machine crash can leave one with the right size but wrong bytes (zeros on XFS).
    The merge checks each shard's CRC-32, removes the damaged ones and says to rerun; the rerun redoes exactly those.
    """
    out = tmp_path / "dmg"
    common = [*_inputs_args(inputs), "--output-prefix", str(out), "--tokenizer", str(llama3_tokenizer),
              "--workers", "1", "--chunk-bytes", "60000"]  # fmt: skip
    assert tokenize(*common, "--shard-index", "0", "--num-shards", "1").returncode == 0  # every chunk, no merge
    chunks = work_dir(out) / "chunks"
    bins = sorted(chunks.glob("*.bin"))
    assert len(bins) > 4
    zeroed, flipped_len = bins[1], sorted(chunks.glob("*.len"))[3]
    zeroed.write_bytes(bytes(zeroed.stat().st_size))  # same size: the size check alone would miss it
    data = bytearray(flipped_len.read_bytes())
    data[0] ^= 1
    flipped_len.write_bytes(bytes(data))
    untouched = {p.name: p.stat().st_mtime_ns for p in chunks.glob("*.json")}

    r = tokenize(*common)
    assert r.returncode == 2 and "2 tokenized chunk(s) were damaged" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not Path(f"{out}.bin").exists() and not Path(f"{out}.idx").exists()
    assert not list(Path(out).parent.glob("*.tmp"))
    assert not zeroed.with_suffix(".json").exists() and not flipped_len.with_suffix(".json").exists()

    damaged = {zeroed.with_suffix(".json").name, flipped_len.with_suffix(".json").name}
    assert tokenize(*common, "--shard-index", "0", "--num-shards", "1").returncode == 0  # redo, no merge yet
    now = {p.name: p.stat().st_mtime_ns for p in chunks.glob("*.json")}
    assert now.keys() == untouched.keys()
    assert {n for n in now if now[n] != untouched[n]} == damaged  # exactly the damaged chunks were redone
    r = tokenize(*common, "--merge")
    assert r.returncode == 0, r.stderr
    b, i, m = read_prefix(out)
    assert (b, i) == reference[:2] and _same_manifest(m, reference[2])
