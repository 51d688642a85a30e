"""Damaged inputs of `cptkit tokenize` are never read short: truncation and corruption of every compressed and columnar
format stop the run naming the file (or, with --on-bad-file skip, leave the file out whole, listed in the manifest);
bad records are skipped and counted per file; a UTF-8 BOM is not a bad record; a huge document is skipped and counted
without being held in memory (issue #12, points 1 and 7).

Run on CPU: `.venv/bin/pytest tests/faults/test_fault_inputs.py -q`.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from cptkit.cli import main
from cptkit.tokenize.integrity import DamagedInput, ZstdFrameChecker
from cptkit.tokenize.readers import ChunkScanner, InputFile

DOCS = [
    f"document {i} {hashlib.sha256(str(i).encode()).hexdigest()}: " + "naïve café 日本語 " * (i % 7)
    for i in range(2000)
]


def _jsonl(docs=DOCS) -> bytes:
    return b"".join(json.dumps({"text": t}, ensure_ascii=False).encode() + b"\n" for t in docs)


def _tokenize(capsys, *inputs: Path, out: Path, extra=()) -> tuple[int, str, str]:
    args = ["tokenize", "--output-prefix", str(out), "--tokenizer", "llama3", "--workers", "1", "--no-progress"]
    for p in inputs:
        args += ["--input", str(p)]
    rc = main([*args, "--chunk-bytes", "20000", *extra])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def _manifest(out: Path) -> dict:
    return json.loads(Path(f"{out}.manifest.json").read_text())


def _one_line_error(err: str, *needles: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    for n in needles:
        assert n in lines[0], lines[0]


# -- zstd ---------------------------------------------------------------------------------------------------------
def test_truncated_zstd_is_fatal_not_read_short(tmp_path, capsys):
    """The reported fault: a .jsonl.zst cut at a third read as 648 of 2,000 documents with exit 0."""
    whole = zstandard.ZstdCompressor(level=3).compress(_jsonl())
    good, cut = tmp_path / "good.jsonl.zst", tmp_path / "cut.jsonl.zst"
    good.write_bytes(whole)
    cut.write_bytes(whole[: len(whole) // 3])
    # The decompressor alone is blind to it (this is why a frame check exists): it returns a clean, short EOF.
    reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(cut.read_bytes()), read_across_frames=True)
    short = b"".join(iter(lambda: reader.read(1 << 20), b""))
    assert short.count(b"\n") < len(DOCS)

    rc, _, err = _tokenize(capsys, cut, out=tmp_path / "cut")
    assert rc == 2
    _one_line_error(err, str(cut), "truncated", "--on-bad-file skip")
    assert not Path(f"{tmp_path / 'cut'}.manifest.json").exists()

    rc, _, err = _tokenize(capsys, good, out=tmp_path / "good")  # the same content, whole, passes
    assert rc == 0, err
    assert _manifest(tmp_path / "good")["documents"] == len(DOCS)


def _frames(level_checksum: bool) -> tuple[bytes, set[int]]:
    """Three frames (one with a skippable frame before it); the byte offsets where a frame ends."""
    c = zstandard.ZstdCompressor(level=1, write_checksum=level_checksum, write_content_size=level_checksum)
    parts = [c.compress(_jsonl(DOCS[:300])), c.compress(b""), c.compress(_jsonl(DOCS[300:400]))]
    skippable = (0x184D2A53).to_bytes(4, "little") + (5).to_bytes(4, "little") + b"12345"
    parts.insert(1, skippable)
    boundaries, at = {0}, 0
    for p in parts:
        at += len(p)
        boundaries.add(at)
    return b"".join(parts), boundaries


@pytest.mark.parametrize("checksum", [True, False], ids=["checksum", "no-checksum"])
def test_zstd_frame_check_flags_every_cut_inside_a_frame(checksum):
    """Every prefix of a multi-frame file: whole exactly at frame boundaries, truncated anywhere else."""
    data, boundaries = _frames(checksum)
    assert len(boundaries) == 5
    wrong = []
    for n in range(len(data) + 1):
        checker = ZstdFrameChecker("x.zst")
        checker.feed(data[: n // 2])  # in two pieces, as reads would come
        checker.feed(data[n // 2 : n])
        try:
            checker.finish()
            whole = True
        except DamagedInput as e:
            assert e.kind == "truncated"
            whole = False
        if whole != (n in boundaries):
            wrong.append(n)
    assert wrong == []


@pytest.mark.parametrize("tool", ["zstd", "pzstd"])
def test_zstd_frame_check_on_the_reference_tools_output(tmp_path, tool):
    """Files made by the zstd CLI (content checksum on) and pzstd (several frames, each behind a skippable frame),
    concatenated as `cat a.zst b.zst` does: whole, they pass; cut anywhere but between frames, they are truncated."""
    import shutil

    if shutil.which(tool) is None:
        pytest.skip(f"{tool} is not installed")
    src = tmp_path / "in.jsonl"
    src.write_bytes(_jsonl(DOCS[:400]))
    made = []
    for k, extra in enumerate([[], ["-1"]]):
        out = tmp_path / f"{k}.zst"
        args = [tool, "-q", "-f", *extra, str(src), "-o", str(out)]
        if tool == "pzstd":
            args[1:1] = ["-p", "2", "-B", "4096"] if "-B" in _help(tool) else ["-p", "2"]
        subprocess.run(args, check=True)
        made.append(out.read_bytes())
    data = made[0] + made[1]
    cuts = set(range(0, len(data), 97)) - {0, len(made[0])}
    for n in [len(made[0]), len(data), *sorted(cuts)]:
        checker = ZstdFrameChecker("x.zst")
        checker.feed(data[:n])
        if n in (len(made[0]), len(data)):
            checker.finish()
        else:
            with pytest.raises(DamagedInput):
                checker.finish()


def _help(tool: str) -> str:
    r = subprocess.run([tool, "--help"], capture_output=True, text=True)
    return r.stdout + r.stderr


def test_corrupt_zstd_is_fatal(tmp_path, capsys):
    data = bytearray(zstandard.ZstdCompressor(write_checksum=True).compress(_jsonl()))
    data[len(data) // 2] ^= 0x55
    bad = tmp_path / "bad.jsonl.zst"
    bad.write_bytes(bytes(data))
    rc, _, err = _tokenize(capsys, bad, out=tmp_path / "o")
    assert rc == 2
    _one_line_error(err, str(bad), "corrupt")


def test_not_zstd_data_is_corrupt(tmp_path, capsys):
    bad = tmp_path / "plain.jsonl.zst"
    bad.write_bytes(_jsonl(DOCS[:10]))  # named .zst, but not compressed
    rc, _, err = _tokenize(capsys, bad, out=tmp_path / "o")
    assert rc == 2
    _one_line_error(err, str(bad), "corrupt")


# -- gzip ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("damage", ["truncated", "corrupt"])
def test_damaged_gzip_is_fatal(tmp_path, capsys, damage):
    member = gzip.compress(_jsonl(DOCS[:1000]))
    data = bytearray(member + gzip.compress(_jsonl(DOCS[1000:])))  # two members, as `cat a.gz b.gz` makes
    if damage == "truncated":
        data = data[: len(member) + 100]
    else:
        data[-6] ^= 0x01  # inside the last member's CRC-32
    bad = tmp_path / f"{damage}.jsonl.gz"
    bad.write_bytes(bytes(data))
    rc, _, err = _tokenize(capsys, bad, out=tmp_path / "o")
    assert rc == 2
    _one_line_error(err, str(bad), damage)


# -- parquet and Arrow ----------------------------------------------------------------------------------------------
def _parquet(path: Path) -> bytes:
    pq.write_table(pa.table({"text": DOCS}), path, row_group_size=500)
    return path.read_bytes()


def test_truncated_parquet_footer_is_fatal(tmp_path, capsys):
    data = _parquet(tmp_path / "good.parquet")
    bad = tmp_path / "cut.parquet"
    bad.write_bytes(data[:-100])
    rc, _, err = _tokenize(capsys, bad, out=tmp_path / "o")
    assert rc == 2
    _one_line_error(err, str(bad), "truncated")


def test_corrupt_parquet_page_is_fatal(tmp_path, capsys):
    data = bytearray(_parquet(tmp_path / "good.parquet"))
    mid = len(data) // 2
    data[mid : mid + 64] = bytes(64)
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(bytes(data))
    rc, _, err = _tokenize(capsys, bad, out=tmp_path / "o")
    assert rc == 2
    _one_line_error(err, str(bad), "corrupt")


def _saved_dataset(root: Path, cut_after_batches: int | None = None) -> Path:
    """A `datasets.save_to_disk` folder (state.json + one Arrow stream file), optionally cut after N batches."""
    root.mkdir()
    arrow = root / "data-00000-of-00001.arrow"
    table = pa.table({"text": DOCS})
    ends = []
    with pa.OSFile(str(arrow), "wb") as f:
        writer = pa.ipc.new_stream(f, table.schema)
        for batch in table.to_batches(max_chunksize=500):
            writer.write_batch(batch)
            ends.append(f.tell())
        writer.close()
    if cut_after_batches is not None:
        with open(arrow, "r+b") as f:
            f.truncate(ends[cut_after_batches - 1])
    (root / "state.json").write_text(json.dumps({"_data_files": [{"filename": arrow.name}]}))
    return root


def test_arrow_stream_cut_at_a_batch_boundary_is_fatal(tmp_path, capsys):
    good = _saved_dataset(tmp_path / "good")
    cut = _saved_dataset(tmp_path / "cut", cut_after_batches=2)
    # pyarrow alone reads the cut stream as a valid, shorter one:
    assert pa.ipc.open_stream(pa.memory_map(str(cut / "data-00000-of-00001.arrow"))).read_all().num_rows == 1000
    rc, _, err = _tokenize(capsys, cut, out=tmp_path / "cut_out")
    assert rc == 2
    _one_line_error(err, "data-00000-of-00001.arrow", "truncated", "end-of-stream")
    rc, _, err = _tokenize(capsys, good, out=tmp_path / "good_out")
    assert rc == 0, err
    assert _manifest(tmp_path / "good_out")["documents"] == len(DOCS)


# -- skip mode, counts per file, BOM --------------------------------------------------------------------------------
def test_on_bad_file_skip_leaves_the_damaged_file_out_whole_and_lists_it(tmp_path, capsys):
    good = tmp_path / "a.jsonl"
    good.write_bytes(_jsonl(DOCS[:50]))
    whole = zstandard.ZstdCompressor().compress(_jsonl(DOCS))
    cut = tmp_path / "b.jsonl.zst"
    cut.write_bytes(whole[: len(whole) // 2])
    out = tmp_path / "o"
    rc, stdout, err = _tokenize(capsys, good, cut, out=out, extra=["--on-bad-file", "skip"])
    assert rc == 0, err
    m = _manifest(out)
    assert m["documents"] == 50  # none of the cut file's documents, not even those read before the cut
    assert [d["path"] for d in m["damaged_inputs"]] == [str(cut)]
    assert m["damaged_inputs"][0]["kind"] == "truncated"
    by_path = {i["path"]: i for i in m["inputs"]}
    assert by_path[str(cut)]["records"] == 0 and by_path[str(cut)]["damaged"]["kind"] == "truncated"
    assert "LEFT OUT truncated input" in stdout and str(cut) in stdout


def test_bad_json_records_are_skipped_and_counted_per_file(tmp_path, capsys):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl.gz"
    a.write_bytes(_jsonl(DOCS[:20]) + b'{"text": "unterminated\n' + _jsonl(DOCS[20:30]))
    b.write_bytes(gzip.compress(b"not json at all\n" + _jsonl(DOCS[:5]) + b'{"id": 1}\n'))
    out = tmp_path / "o"
    rc, _, err = _tokenize(capsys, a, b, out=out)
    assert rc == 0, err
    m = _manifest(out)
    assert m["documents"] == 35 and m["documents_skipped"] == 3
    per_file = {Path(i["path"]).name: i["skipped"] for i in m["inputs"]}
    assert per_file == {"a.jsonl": {"malformed_json": 1}, "b.jsonl.gz": {"malformed_json": 1, "missing_text": 1}}


@pytest.mark.parametrize("suffix", ["jsonl", "jsonl.gz", "jsonl.zst"])
def test_utf8_bom_at_file_start_is_not_a_bad_record(tmp_path, capsys, suffix):
    body = b"\xef\xbb\xbf" + _jsonl(DOCS[:10])
    pack = {"jsonl": bytes, "jsonl.gz": gzip.compress, "jsonl.zst": zstandard.ZstdCompressor().compress}[suffix]
    src = tmp_path / f"bom.{suffix}"
    src.write_bytes(pack(body))
    rc, _, err = _tokenize(capsys, src, out=tmp_path / "o")
    assert rc == 0, err
    m = _manifest(tmp_path / "o")
    assert (m["documents"], m["documents_skipped"]) == (10, 0)
    # A BOM anywhere else is still a bad record (the check is not blind to it):
    mid = tmp_path / f"mid.{suffix}"
    mid.write_bytes(pack(_jsonl(DOCS[:5]) + b"\xef\xbb\xbf" + _jsonl(DOCS[5:10])))
    rc, _, err = _tokenize(capsys, mid, out=tmp_path / "m")
    assert rc == 0, err
    assert _manifest(tmp_path / "m")["skipped"] == {"malformed_json": 1}


# -- documents over the bound -----------------------------------------------------------------------------------------
def test_oversized_documents_are_skipped_and_counted(tmp_path, capsys):
    big_line = json.dumps({"text": "x" * 5_000_000}).encode() + b"\n"  # over 3x the bound: dropped while reading
    medium = json.dumps({"text": "y" * 1_500_000}).encode() + b"\n"  # over the bound as text: the worker skips it
    src = tmp_path / "big.jsonl.zst"
    src.write_bytes(zstandard.ZstdCompressor().compress(_jsonl(DOCS[:3]) + big_line + _jsonl(DOCS[3:6]) + medium))
    out = tmp_path / "o"
    rc, stdout, err = _tokenize(capsys, src, out=out, extra=["--max-document-bytes", "1000000"])
    assert rc == 0, err
    m = _manifest(out)
    assert m["documents"] == 6 and m["skipped"] == {"document_too_large": 2}
    assert [e["where"] for e in m["skipped_examples"]] == [f"{src}:4", f"{src}:8"]
    assert "document_too_large 2" in stdout
    # parquet: the value is dropped by the reader and counted the same way
    pq.write_table(pa.table({"text": [*DOCS[:4], "z" * 2_000_000]}), tmp_path / "big.parquet")
    rc, _, err = _tokenize(
        capsys, tmp_path / "big.parquet", out=tmp_path / "p", extra=["--max-document-bytes", "1000000"]
    )
    assert rc == 0, err
    assert _manifest(tmp_path / "p")["skipped"] == {"document_too_large": 1}


# Peak RSS from VmHWM, this process's own high-water mark (ru_maxrss would include the forking pytest process).
_SCAN = """
import re, sys
from cptkit.tokenize.readers import ChunkScanner, InputFile
path, bound = sys.argv[1], int(sys.argv[2])
s = ChunkScanner(InputFile(path, "jsonl.zst", 0, 0), "text", 1 << 20, max_document_bytes=bound)
n = sum(len(c.oversized) for c in s)
hwm_kib = int(re.search(r"VmHWM:\\s+(\\d+)", open("/proc/self/status").read()).group(1))
print(n, s.records, hwm_kib // 1024)
"""


def test_a_huge_document_never_sits_in_memory(tmp_path):
    """A 212 MB one-line document (a few kB as zstd) is read past with the default 10 MB bound: the reader's peak RSS
    stays far below the document's size. With the bound lifted, the same read holds it whole (the measure can fail)."""
    src = tmp_path / "huge.jsonl.zst"
    with open(src, "wb") as f, zstandard.ZstdCompressor(level=1).stream_writer(f) as w:
        w.write(_jsonl(DOCS[:2]) + b'{"text": "')
        block = b"abcdefgh " * (1 << 17)  # 1.1 MB
        for _ in range(180):
            w.write(block)
        w.write(b'"}\n' + _jsonl(DOCS[2:4]))
    assert src.stat().st_size < 10_000_000

    def scan(bound: int) -> tuple[int, int, int]:
        r = subprocess.run([sys.executable, "-c", _SCAN, str(src), str(bound)], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        return tuple(int(x) for x in r.stdout.split())

    dropped, records, rss_mib = scan(10_000_000)
    assert (dropped, records) == (1, 5)
    assert rss_mib < 130, rss_mib  # the document alone is 202 MiB
    dropped, records, rss_mib = scan(10**12)
    assert (dropped, records) == (0, 5)
    assert rss_mib > 202, rss_mib


def test_scanner_counts_and_line_numbers_survive_a_dropped_line(tmp_path):
    lines = [b'{"text": "a"}', b'{"text": "' + b"b" * 5000 + b'"}', b'{"text": "c"}', b'{"text": "' + b"d" * 9000]
    src = tmp_path / "x.jsonl"
    src.write_bytes(b"\n".join(lines))  # the last long line has no newline
    f = InputFile(str(src), "jsonl", src.stat().st_size, 0)
    chunks = list(ChunkScanner(f, "text", 8, max_document_bytes=1000))
    oversized = [c.first_record + o for c in chunks for o in c.oversized]
    assert oversized == [2, 4]
    assert sum(c.payload.count(b"\n") + (not c.payload.endswith(b"\n")) for c in chunks) == 4
