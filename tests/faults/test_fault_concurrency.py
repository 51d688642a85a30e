"""Two runs on one output (issue #12, point 6): two tokenize runs on one prefix, two merges, a merge during an array
task, two conversions into one directory: the loser says "another run holds ..." and exits 2, the holder is not
disturbed; and a killed `convert hf-to-mcore` leaves no `.partial-*` directory after the next run.

The other run is a real second process holding the lock (`cptkit.util.lock.output_lock`), so the test does not
depend on timing. Run on CPU: `.venv/bin/pytest tests/faults/test_fault_concurrency.py -q`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from cptkit.cli import main

sys.path.insert(0, str(Path(__file__).parents[1] / "tokenize"))
sys.path.insert(0, str(Path(__file__).parents[1] / "convert"))
from tokhelp import MIXED  # the tokenize tests' sample corpus

_HOLD = """
import sys
from cptkit.util.lock import output_lock
with output_lock(sys.argv[1], shared=sys.argv[2] == "shared"):
    print("held", flush=True)
    sys.stdin.read()  # until the test closes our stdin
"""


@contextmanager
def held(output: Path, shared: bool = False):
    """Another process holds the lock of `output` for the `with` block."""
    p = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(output), "shared" if shared else "exclusive"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert p.stdout.readline().strip() == "held"
        yield p.pid
    finally:
        p.stdin.close()
        p.wait(timeout=30)


def _tokenize(capsys, prefix: Path, *extra: str) -> tuple[int, str]:
    rc = main(
        [
            "tokenize",
            "--input",
            str(MIXED),
            "--output-prefix",
            str(prefix),
            "--tokenizer",
            "llama3",
            "--workers",
            "1",
            "--no-progress",
            "--chunk-bytes",
            "2000",
            *extra,
        ]
    )
    return rc, capsys.readouterr().err


def test_second_tokenize_run_on_a_prefix_loses(tmp_path, capsys):
    prefix = tmp_path / "tok" / "ja_text_document"
    with held(prefix) as pid:
        rc, err = _tokenize(capsys, prefix)
        assert rc == 2
        assert err.count("\n") == 1 and f"another run holds {prefix} (pid {pid} on " in err, err
        assert not (tmp_path / "tok" / "ja_text_document.cptkit-work").exists()  # the loser wrote nothing
    rc, err = _tokenize(capsys, prefix)  # once it is released, the same command works
    assert rc == 0, err
    assert Path(f"{prefix}.manifest.json").is_file()


def test_scale_out_tasks_share_a_prefix_but_merges_and_duplicates_lose(tmp_path, capsys):
    prefix = tmp_path / "p"
    with held(prefix, shared=True), held(tmp_path / "p.shard-0-of-2"):  # array task 0 is running
        rc, err = _tokenize(capsys, prefix, "--merge")  # a merge now would read half-written shards
        assert rc == 2 and f"another run holds {prefix}" in err, err
        rc, err = _tokenize(capsys, prefix, "--shard-index", "0", "--num-shards", "2")  # task 0 submitted twice
        assert rc == 2 and f"another run holds {prefix} shard 0/2" in err, err
        rc, err = _tokenize(capsys, prefix, "--shard-index", "1", "--num-shards", "2")  # task 1 runs beside it
        assert rc == 0, err
    rc, err = _tokenize(capsys, prefix, "--shard-index", "0", "--num-shards", "2")
    assert rc == 0, err
    with held(prefix):  # a merge is running: a second merge loses
        rc, err = _tokenize(capsys, prefix, "--merge")
        assert rc == 2 and f"another run holds {prefix}" in err, err
    rc, err = _tokenize(capsys, prefix, "--merge")
    assert rc == 0, err
    assert Path(f"{prefix}.manifest.json").is_file()


def test_a_killed_lock_holder_leaves_no_stale_lock(tmp_path, capsys):
    """flock dies with its process: after `kill -9` of the holder the next run proceeds (no stale lock file)."""
    prefix = tmp_path / "p"
    p = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(prefix), "exclusive"], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert p.stdout.readline().strip() == b"held"
    rc, err = _tokenize(capsys, prefix)
    assert rc == 2, err  # held: the check sees it
    p.kill()
    p.wait()
    rc, err = _tokenize(capsys, prefix)
    assert rc == 0, err


# -- convert hf-to-mcore ---------------------------------------------------------------------------------------------
@pytest.fixture
def tiny_hf(tmp_path):
    from convhelp import make_hf_model

    return make_hf_model(tmp_path / "llama-hf")


def test_second_conversion_into_one_dir_loses(tmp_path, tiny_hf, capsys):
    out = tmp_path / "mcore"
    with held(out):
        rc = main(["convert", "hf-to-mcore", str(tiny_hf), str(out)])
        err = capsys.readouterr().err
        assert rc == 2 and f"another run holds {out}" in err, err
        assert not out.exists()


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_killed_conversion_leaves_no_partial_dir_after_the_next_run(tmp_path, tiny_hf, capsys):
    out = tmp_path / "mcore"
    # A real `kill -9` mid-write, when the partial directory is caught in time (the tiny model converts in < 1 s) ...
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    p = subprocess.Popen(
        [sys.executable, "-m", "cptkit.cli", "convert", "hf-to-mcore", str(tiny_hf), str(out)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    killed_mid_write = False
    deadline = time.monotonic() + 120
    while p.poll() is None and time.monotonic() < deadline:
        if list(tmp_path.glob(".mcore.partial-*")):
            os.kill(p.pid, signal.SIGKILL)
            killed_mid_write = True
            break
        time.sleep(0.002)
    p.wait()
    if not killed_mid_write or out.exists():  # it finished first: start over with a clean slate
        import shutil

        shutil.rmtree(out, ignore_errors=True)
        killed_mid_write = False
    # ... and always one left by a writer that is certainly dead (a real exited process's pid), with content.
    stale = tmp_path / f".mcore.partial-{_dead_pid()}"
    (stale / "hf_assets").mkdir(parents=True)
    (stale / "__0_0.distcp").write_bytes(b"\0" * 1000)
    partials = sorted(tmp_path.glob(".mcore.partial-*"))
    assert stale in partials and (len(partials) == 2) == killed_mid_write

    rc = main(["convert", "hf-to-mcore", str(tiny_hf), str(out)])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert list(tmp_path.glob(".mcore.partial-*")) == []
    assert all(f"removed {p}" in captured.out for p in partials)
    assert (out / "cptkit_model.json").is_file()


def test_partial_dir_of_a_live_writer_is_kept(tmp_path, tiny_hf, capsys):
    """Only dead writers' partials go: one whose process is alive on this host (e.g. mcore-to-hf writing a folder of
    the same name) is left alone."""
    out = tmp_path / "mcore"
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        live = tmp_path / f".mcore.partial-{sleeper.pid}"
        live.mkdir()
        rc = main(["convert", "hf-to-mcore", str(tiny_hf), str(out)])
        assert rc == 0, capsys.readouterr().err
        assert live.is_dir()
    finally:
        sleeper.kill()
        sleeper.wait()


def test_lock_is_released_although_a_forked_worker_still_runs(tmp_path, capsys):
    """Tokenizer workers forked while a prefix was locked share the lock's file descriptor; leaving the prefix must
    release the lock anyway (one pool serves every prefix of a mixture), not when the last worker exits."""
    from cptkit.util.lock import output_lock

    prefix = tmp_path / "p"
    with output_lock(prefix):
        child = os.fork()
        if child == 0:  # a long-lived worker holding the inherited descriptor
            time.sleep(30)
            os._exit(0)
    try:
        rc, err = _tokenize(capsys, prefix)  # in this process: a fresh open of the lock file
        assert rc == 0, err
        with held(prefix):  # and another process can take it too
            pass
    finally:
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)
