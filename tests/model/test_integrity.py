"""Checkpoint checksums (`cptkit.model.integrity`): every kind of damage is named; the pointer is rebuilt to the newest
intact checkpoint; a checkpoint without a manifest is reported as unverified, not as intact. Torch-free, fast."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from cptkit.errors import UserError
from cptkit.model.integrity import (
    MANIFEST,
    CheckpointDamaged,
    checkpoint_files,
    find_damage,
    hash_files,
    rebuild_pointer_to_newest_intact,
    status_checks,
    verify_checkpoint,
    write_manifest,
)


def _checkpoint(path, seed=0):
    (path / "hf_assets").mkdir(parents=True)
    (path / "__0_0.distcp").write_bytes(bytes(range(256)) * (64 + seed))
    (path / ".metadata").write_bytes(b"meta")
    (path / "cptkit_state.json").write_text('{"iteration": 1}')
    (path / "hf_assets" / "tokenizer.json").write_text("{}")
    write_manifest(path, hash_files(path, checkpoint_files(path)), iteration=1)
    return path


def test_manifest_covers_every_file_and_matches_sha256sum(tmp_path):
    ckpt = _checkpoint(tmp_path / "iter_0000001")
    doc = json.loads((ckpt / MANIFEST).read_text())
    assert set(doc["files"]) == {"__0_0.distcp", ".metadata", "cptkit_state.json", "hf_assets/tokenizer.json"}
    sha = subprocess.run(["sha256sum", str(ckpt / "__0_0.distcp")], capture_output=True, text=True).stdout.split()[0]
    assert doc["files"]["__0_0.distcp"]["sha256"] == sha
    assert find_damage(ckpt) is None and verify_checkpoint(ckpt) is True
    # Split over 3 "ranks", the shares cover every file once.
    parts = [hash_files(ckpt, checkpoint_files(ckpt), part=(r, 3)) for r in range(3)]
    assert sorted(k for p in parts for k in p) == checkpoint_files(ckpt)
    # A manifest that misses a file is a bug, refused at write time.
    (ckpt / "late.json").write_text("{}")
    with pytest.raises(RuntimeError, match="would miss"):
        write_manifest(ckpt, doc["files"], iteration=1)


@pytest.mark.parametrize("damage", ["flip", "truncate", "delete", "manifest"])
def test_each_kind_of_damage_is_named(tmp_path, damage):
    ckpt = _checkpoint(tmp_path / "iter_0000001")
    shard = ckpt / "__0_0.distcp"
    if damage == "flip":
        data = bytearray(shard.read_bytes())
        data[1000] ^= 1  # one bit: same size
        shard.write_bytes(bytes(data))
        expected = f"{shard}: sha256 mismatch"
    elif damage == "truncate":
        shard.write_bytes(shard.read_bytes()[:-1])
        expected = f"{shard}: size 16,383 bytes, 16,384 when saved"
    elif damage == "delete":
        shard.unlink()
        expected = f"{shard}: file missing"
    else:
        (ckpt / MANIFEST).write_text("{not json")
        expected = "checksum manifest is unreadable"
    assert expected in find_damage(ckpt)
    with pytest.raises(CheckpointDamaged, match="damaged checkpoint"):
        verify_checkpoint(ckpt)
    assert issubclass(CheckpointDamaged, UserError)  # one line, exit 2


def test_small_only_checks_small_files_and_parts_split_the_work(tmp_path):
    ckpt = _checkpoint(tmp_path / "iter_0000001", seed=4096)  # a 1 MiB+ shard
    data = bytearray((ckpt / "__0_0.distcp").read_bytes())
    data[5] ^= 1
    (ckpt / "__0_0.distcp").write_bytes(bytes(data))
    assert find_damage(ckpt, small_only=True) is None  # the big shard is left to the ranks
    found = [find_damage(ckpt, part=(r, 2)) for r in range(2)]
    assert sum(d is not None for d in found) == 1  # exactly one rank hashes the shard, and it finds the damage


def test_no_manifest_is_unverified_not_intact(tmp_path):
    ckpt = tmp_path / "converted"
    ckpt.mkdir()
    (ckpt / "common.pt").write_bytes(b"x")
    notes = []
    assert verify_checkpoint(ckpt, log=notes.append) is False and "not verified" in notes[0]
    with pytest.raises(CheckpointDamaged, match="no checksum manifest"):
        verify_checkpoint(ckpt, require_manifest=True)


def test_rebuild_pointer_and_status_verify(tmp_path, capsys):
    ckpts = tmp_path / "run" / "checkpoints"
    for i in (2, 4, 6):
        _checkpoint(ckpts / f"iter_{i:07d}", seed=i)
    (ckpts / "iter_0000006" / ".metadata").write_bytes(b"META")  # damaged: same size, other bytes
    assert rebuild_pointer_to_newest_intact(ckpts, log=lambda *_: None) == 4
    assert (ckpts / "latest_checkpointed_iteration.txt").read_text() == "4\n"
    assert status_checks(tmp_path / "run", verify=True, rebuild_pointer=False) == 1
    out = capsys.readouterr().out
    assert "iter_0000006: DAMAGED" in out and "iter_0000004 (latest): OK" in out and "iter_0000002: OK" in out
    with pytest.raises(UserError, match="no checkpoints/ directory"):
        status_checks(tmp_path, verify=True, rebuild_pointer=False)


def test_status_flags_do_not_import_torch(tmp_path):
    ckpts = tmp_path / "run" / "checkpoints"
    _checkpoint(ckpts / "iter_0000002")
    code = (
        "import sys; from cptkit.cli import main; "
        f"rc = main(['status', {str(tmp_path / 'run')!r}, '--verify', '--rebuild-pointer']); "
        "assert 'torch' not in sys.modules; sys.exit(rc)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "-> 2 (newest intact checkpoint)" in proc.stdout and "iter_0000002 (latest): OK" in proc.stdout
