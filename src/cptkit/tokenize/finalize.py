"""Finishing a prefix: check every chunk is done, merge the shards, write the manifest, remove the work directory.

The manifest (`P.manifest.json`, written last: a prefix is complete exactly when it exists) records documents, tokens,
skipped records per reason with file:line of the first few, each input file with size, sha256, record count and
skipped records per reason, the input files left out as truncated or corrupt (`damaged_inputs`), the
tokenizer file and its sha256, the options, the cptkit version, and the fingerprint a rerun compares to skip the prefix.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from cptkit import __version__
from cptkit.errors import UserError
from cptkit.tokenize.indexed import DamagedShards, merge_shards
from cptkit.tokenize.worker import MAX_EXAMPLES
from cptkit.util.atomic import write_json

MANIFEST_FORMAT = "cptkit.tokenized/1"


@dataclass
class Totals:
    documents: int
    skipped: int
    tokens: int
    skipped_by_reason: dict
    input_bytes: int
    damaged_inputs: list  # files left out whole as truncated/corrupt (--on-bad-file skip)


def work_dir(prefix: Path) -> Path:
    return prefix.with_name(prefix.name + ".cptkit-work")


def manifest_path(prefix: Path) -> Path:
    return prefix.with_name(prefix.name + ".manifest.json")


def finalize(job, files, fp: str, wdir: Path, tok, tokenizer_spec: str, options: dict, dtype: str) -> Totals:
    """Merge the finished shards of `job` into its prefix and write the manifest; UserError if any is missing."""
    file_records = []
    missing_files = []
    for f_idx in range(len(files)):
        rec = wdir / "files" / f"{f_idx:05d}.json"
        if rec.is_file():
            file_records.append(read_json(rec))
        else:
            missing_files.append(files[f_idx].path)
    shards: list[Path] = []
    stats: list[dict] = []
    missing_chunks = 0
    per_file_skipped: list[dict[str, int]] = []
    for f_idx, rec in enumerate(file_records):
        per_file_skipped.append({})
        for c in range(rec["chunks"]):
            shard = wdir / "chunks" / f"{f_idx:05d}-{c:06d}"
            s = shard_stats(shard)
            if s is None:
                missing_chunks += 1
            else:
                shards.append(shard)
                stats.append(s)
                for reason, n in s["skipped"].items():
                    per_file_skipped[f_idx][reason] = per_file_skipped[f_idx].get(reason, 0) + n
    if missing_files or missing_chunks:
        raise UserError(
            f"cannot merge: {len(missing_files)} input file(s) not read to the end and {missing_chunks} chunk(s) "
            "not tokenized yet; run every --shard-index first (reruns resume)",
            file=job.where,
            field=job.name,
        )
    read = sum(s["read"] for s in stats)
    written = sum(s["written"] for s in stats)
    by_reason: dict[str, int] = {}
    examples: list[dict] = []
    for s in stats:
        for reason, n in s["skipped"].items():
            by_reason[reason] = by_reason.get(reason, 0) + n
        examples.extend(s["examples"][: MAX_EXAMPLES - len(examples)])
    skipped = sum(by_reason.values())
    if read != written + skipped or read != sum(r["records"] for r in file_records):
        raise RuntimeError(f"{job.prefix}: documents read {read} != written {written} + skipped {skipped}")
    tokens = sum(s["tokens"] for s in stats)
    if written == 0:
        raise UserError("no document could be tokenized (all records were skipped)", file=job.where, field=job.name)
    damaged = [{"path": r["path"], **r["damaged"]} for r in file_records if "damaged" in r]
    mpath = manifest_path(job.prefix)
    mpath.unlink(missing_ok=True)  # --overwrite: the old manifest must not vouch for the new files
    try:
        merge_shards(shards, job.prefix, dtype, written, [s.get("crc32") for s in stats])
    except OSError as e:  # a full disk while merging: free the partial output, name it (write() names no file)
        for suffix in (".bin.tmp", ".idx.tmp"):
            job.prefix.with_name(job.prefix.name + suffix).unlink(missing_ok=True)
        if e.filename is None:
            e.filename = f"{job.prefix}.{{bin,idx}}"
        raise
    except DamagedShards as e:
        for shard in e.shards:  # the next run redoes exactly these chunks
            shard.with_name(shard.name + ".json").unlink(missing_ok=True)
        raise UserError(
            f"{len(e.shards)} tokenized chunk(s) were damaged on disk (a machine crash before they were written "
            f"out?), e.g. {e.shards[0].name}; they were removed: run the same command again to redo them",
            file=job.where,
            field=job.name,
        ) from None
    manifest = {
        "format": MANIFEST_FORMAT,
        "cptkit_version": __version__,
        "name": job.name,
        "prefix": str(job.prefix),
        "documents": written,
        "tokens": tokens,
        "dtype": dtype,
        "documents_read": read,
        "documents_skipped": skipped,
        "skipped": dict(sorted(by_reason.items())),
        "skipped_examples": examples,
        "damaged_inputs": damaged,
        "tokenizer": {"spec": tokenizer_spec, **tok.describe()},
        "options": options,
        "inputs": [
            {
                "path": r["path"],
                "format": r["format"],
                "size_bytes": r["size_bytes"],
                "sha256": r["sha256"],
                "records": r["records"],
                "skipped": dict(sorted(per_file_skipped[i].items())),
                **({"damaged": r["damaged"]} if "damaged" in r else {}),
            }
            for i, r in enumerate(file_records)
        ],
        "fingerprint": fp,
    }
    write_json(mpath, manifest)  # atomic_open gives it the umask mode, as readable as the .bin/.idx
    shutil.rmtree(wdir, ignore_errors=True)
    return Totals(written, skipped, tokens, by_reason, sum(r["size_bytes"] for r in file_records), damaged)


def read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def shard_stats(shard: Path) -> dict | None:
    """The stats of a finished shard, or None if it is missing or its files do not match them."""
    meta = shard.with_name(shard.name + ".json")
    if not meta.is_file():
        return None
    try:
        stats = read_json(meta)
        ok = (
            os.path.getsize(shard.with_name(shard.name + ".bin")) == stats["bin_bytes"]
            and os.path.getsize(shard.with_name(shard.name + ".len")) == 4 * stats["written"]
        )
    except (OSError, ValueError, KeyError):
        ok = False
    return stats if ok else None
