"""Write files so that a reader never sees a half-written one.

Everything cptkit writes under a final name goes through here: the data goes to a temporary name in the same
directory, is flushed and fsync'ed, and is then renamed over the final name (rename is atomic on POSIX within one
file system). A crash leaves either the old file or the new one, plus at worst a stray `*.tmp-*` file.

`durable=False` skips the fsyncs, for scratch files whose content the caller verifies before use (the tokenizer's
chunk shards carry a CRC checked at merge): a killed process still never leaves a partial file under the final name,
only a machine crash can, and on Lustre/GPFS an fsync per small file costs more than the work it protects.

An OSError while writing (a full disk: ENOSPC from write or fsync, which name no file) is given the final path as
its `filename`, so the CLI's one-line error says which output could not be written.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", *, durable: bool = True, **kwargs: Any) -> Iterator[IO]:
    """Open a temporary file beside `path`; on a clean exit fsync it (if `durable`) and rename it to `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    # mkstemp creates 0600; a file under its final name gets the usual umask-derived mode, so a group can read it.
    os.chmod(tmp, 0o666 & ~process_umask())
    try:
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(e, OSError) and e.filename is None:  # write/fsync errors (ENOSPC, EIO) name no file
            e.filename = str(path)
        raise
    if durable:
        fsync_dir(path.parent)


def process_umask() -> int:
    """The umask, read once: reading it means setting it, and a thread creating a file meanwhile (the tokenizer's
    worker threads) would get the temporary value."""
    global _UMASK
    if _UMASK is None:
        _UMASK = os.umask(0)
        os.umask(_UMASK)
    return _UMASK


_UMASK: int | None = None
process_umask()  # at import, before any worker thread exists


def fsync_dir(directory: str | os.PathLike) -> None:
    """Make a rename inside `directory` durable."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_text(path: str | os.PathLike, text: str, *, durable: bool = True) -> None:
    with atomic_open(path, "w", durable=durable, encoding="utf-8") as f:
        f.write(text)


def write_json(path: str | os.PathLike, obj: Any, *, durable: bool = True) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n", durable=durable)
