"""Checksums of saved checkpoints: written with every save, verified before any checkpoint is used.

Every `iter_NNNNNNN/` the trainer saves holds `cptkit_checksums.json`: the size and sha256 of every other file in it
(torch_dist `.distcp` shards, `.metadata`, `common.pt`, `cptkit_state.json`, `cptkit_model.json`, `hf_assets/`). It
is written into `iter_N.partial/` before the directory is renamed to `iter_N/` and the `latest` pointer moves, so a
checkpoint the pointer names always has its manifest. Resume, `cptkit convert`, `cptkit eval` and
`cptkit status --verify` call `verify_checkpoint`, which names the first damaged file. sha256 is what `sha256sum`
prints, so a user can check a file by hand:

    python -c "from cptkit.model.integrity import verify_checkpoint as v; v('RUN/checkpoints/iter_0000100')"

Torch-free (the launcher's `status` imports it on login nodes). Hashing runs in threads (hashlib releases the GIL),
and the trainer spreads the files of one checkpoint over its ranks (`hash_files(..., part=(rank, world))`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from cptkit.errors import UserError
from cptkit.util.atomic import write_json, write_text

MANIFEST = "cptkit_checksums.json"
LATEST = "latest_checkpointed_iteration.txt"
ALGORITHM = "sha256"
_CHUNK = 8 << 20
SMALL_FILE = 1 << 20


class CheckpointDamaged(UserError):
    """A checkpoint whose files do not match its manifest (or that has none and is required to)."""


def iter_dir_name(iteration: int) -> str:
    return f"iter_{iteration:07d}"


def list_iterations(ckpt_dir: str | os.PathLike) -> list[int]:
    """The complete `iter_NNNNNNN/` directories (not `.partial` ones), sorted."""
    out = []
    for p in Path(ckpt_dir).glob("iter_*"):
        m = re.fullmatch(r"iter_(\d+)", p.name)
        if m and p.is_dir():
            out.append(int(m.group(1)))
    return sorted(out)


def checkpoint_files(directory: str | os.PathLike) -> list[str]:
    """Every regular file under `directory` (relative POSIX paths), except the manifest itself, sorted."""
    root = Path(directory)
    out = []
    for dirpath, _, files in os.walk(root):
        for name in files:
            rel = (Path(dirpath) / name).relative_to(root).as_posix()
            if rel != MANIFEST:
                out.append(rel)
    return sorted(out)


def _digest(path: Path) -> dict[str, Any]:
    h = hashlib.sha256()
    size = 0
    with open(path, "rb", buffering=0) as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
            size += len(chunk)
    return {"size": size, ALGORITHM: h.hexdigest()}


def hash_files(
    directory: str | os.PathLike, files: list[str], *, part: tuple[int, int] = (0, 1), threads: int = 4
) -> dict[str, dict[str, Any]]:
    """{relative path: {"size", "sha256"}} for this part's share of `files` (every `world`-th file from `rank`)."""
    rank, world = part
    root = Path(directory)
    mine = files[rank::world]
    with ThreadPoolExecutor(max(1, min(threads, len(mine)))) as pool:
        return dict(zip(mine, pool.map(lambda rel: _digest(root / rel), mine), strict=True))


def write_manifest(directory: str | os.PathLike, entries: dict[str, dict[str, Any]], iteration: int | None) -> Path:
    """The manifest of `directory`; `entries` must cover every file in it (checked: a file missed is a bug)."""
    missing = sorted(set(checkpoint_files(directory)) - set(entries))
    if missing:
        raise RuntimeError(f"checksum manifest would miss {missing[:3]} in {directory}")
    doc = {"algorithm": ALGORITHM, "iteration": iteration, "files": dict(sorted(entries.items()))}
    path = Path(directory) / MANIFEST
    write_json(path, doc)
    return path


def read_manifest(directory: str | os.PathLike) -> dict[str, Any] | None:
    """The manifest, None if the checkpoint has none; a manifest that is not valid JSON is damage."""
    path = Path(directory) / MANIFEST
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text())
        if not isinstance(doc.get("files"), dict) or doc.get("algorithm") != ALGORITHM:
            raise ValueError("no files / unknown algorithm")
        return doc
    except (ValueError, AttributeError) as e:
        raise CheckpointDamaged(f"checksum manifest is unreadable ({e})", file=str(path)) from None


def find_damage(
    directory: str | os.PathLike,
    *,
    part: tuple[int, int] | None = (0, 1),
    require_manifest: bool = True,
    small_only: bool = False,
) -> str | None:
    """None if the checkpoint matches its manifest; else a message naming the damaged file.

    The file list and every size are always checked (cheap). Contents: this `part`'s share of the files (every
    `world`-th from `rank`: the trainer's ranks split a checkpoint), or with `small_only` only files under 1 MiB
    (the JSON state, the DCP `.metadata`, common.pt: what a run reads before its ranks can share work)."""
    directory = Path(directory)
    if not directory.is_dir():
        return f"{directory}: checkpoint directory not found"
    try:
        doc = read_manifest(directory)
    except CheckpointDamaged as e:
        return str(e)
    if doc is None:
        if not require_manifest:
            return None
        return f"{directory / MANIFEST}: no checksum manifest, so the checkpoint cannot be verified"
    files: dict[str, dict[str, Any]] = doc["files"]
    for rel in sorted(files):
        path = directory / rel
        if not path.is_file():
            return f"{path}: file missing (listed in {MANIFEST})"
        if path.stat().st_size != files[rel]["size"]:
            return f"{path}: size {path.stat().st_size:,} bytes, {files[rel]['size']:,} when saved"
    names = sorted(rel for rel in files if not small_only or files[rel]["size"] < SMALL_FILE)
    got = hash_files(directory, names, part=part or (0, 1))
    for rel in sorted(got):
        if got[rel][ALGORITHM] != files[rel][ALGORITHM]:
            return f"{directory / rel}: {ALGORITHM} mismatch (contents changed since the save)"
    return None


def verify_checkpoint(directory: str | os.PathLike, *, require_manifest: bool = False, log=None) -> bool:
    """Check every file of a checkpoint against its manifest; raise `CheckpointDamaged` naming the damaged file.

    Returns True if verified, False if there is no manifest (a checkpoint from `convert hf-to-mcore` or an older
    cptkit: `log` is told so) and `require_manifest` is false. The one function convert, eval and status call."""
    damage = find_damage(directory, require_manifest=True)
    if damage is None:
        return True
    if not (Path(directory) / MANIFEST).exists() and Path(directory).is_dir() and not require_manifest:
        if log is not None:
            log(f"note: {directory} has no {MANIFEST} (not saved by cptkit train); its files are not verified")
        return False
    raise CheckpointDamaged(f"damaged checkpoint: {damage}", file=str(directory))


def read_pointer(ckpt_dir: str | os.PathLike) -> int | None:
    path = Path(ckpt_dir) / LATEST
    if not path.is_file():
        return None
    text = path.read_text().strip()
    if not text.isdigit():
        raise UserError(f"expected an iteration number, found {text!r}", file=str(path))
    return int(text)


def newest_intact(ckpt_dir: str | os.PathLike, below: int | None = None) -> int | None:
    """The newest iteration (< `below`, if given) whose checkpoint has a manifest and matches it."""
    for it in reversed(list_iterations(ckpt_dir)):
        if below is not None and it >= below:
            continue
        if find_damage(Path(ckpt_dir) / iter_dir_name(it)) is None:
            return it
    return None


def rebuild_pointer_to_newest_intact(ckpt_dir: str | os.PathLike, log=print) -> int:
    """Point `latest` at the newest intact checkpoint (for a run dir whose pointer was lost). Returns it."""
    ckpt_dir = Path(ckpt_dir)
    if not ckpt_dir.is_dir():
        raise UserError("no checkpoints directory", file=str(ckpt_dir))
    found = newest_intact(ckpt_dir)
    if found is None:
        raise UserError(
            f"no intact checkpoint (iter_* with a matching {MANIFEST}) to point at; start a new run_dir",
            file=str(ckpt_dir),
        )
    write_text(ckpt_dir / LATEST, f"{found}\n")
    log(f"{ckpt_dir / LATEST} -> {found} (newest intact checkpoint)")
    return found


def verify_run(ckpt_dir: str | os.PathLike) -> list[tuple[int, str | None]]:
    """(iteration, None if intact else the damage) for every checkpoint of a run, newest first."""
    out = []
    for it in reversed(list_iterations(ckpt_dir)):
        out.append((it, find_damage(Path(ckpt_dir) / iter_dir_name(it))))
    return out


def status_checks(run_dir: str | os.PathLike, *, verify: bool, rebuild_pointer: bool, log=print) -> int:
    """`cptkit status RUN --verify` (every checkpoint, newest first: exit 1 if one is damaged) and
    `--rebuild-pointer`. Returns the exit code."""
    ckpt_dir = Path(run_dir) / "checkpoints"
    if not ckpt_dir.is_dir():
        raise UserError("no checkpoints/ directory (not a run directory, or nothing saved yet)", file=str(run_dir))
    if rebuild_pointer:
        rebuild_pointer_to_newest_intact(ckpt_dir, log=log)
    if not verify:
        return 0
    pointer = read_pointer(ckpt_dir)
    damaged = 0
    for it, damage in verify_run(ckpt_dir):
        mark = " (latest)" if it == pointer else ""
        if damage is None:
            log(f"{iter_dir_name(it)}{mark}: OK ({ALGORITHM} of every file matches)")
        elif not (ckpt_dir / iter_dir_name(it) / MANIFEST).exists():
            log(f"{iter_dir_name(it)}{mark}: not verifiable (no {MANIFEST}; saved by an older cptkit or another tool)")
        else:
            damaged += 1
            log(f"{iter_dir_name(it)}{mark}: DAMAGED: {damage}")
    if not list_iterations(ckpt_dir):
        log("no checkpoints")
    return 1 if damaged else 0
