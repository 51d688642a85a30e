"""One writer per output: an advisory `flock` on a lock file beside it, released when the process ends (even by
SIGKILL: the kernel drops the lock with the last descriptor), so a stale lock cannot exist.

    with output_lock(prefix_path, what=str(prefix)):          # exclusive: the one run that writes PREFIX
        ...
    with output_lock(prefix_path, shared=True): ...            # many cooperating writers (scale-out array tasks)

The loser gets `UserError("another run holds WHAT ...")` at once (exit 2), never a wait: two runs on one prefix are a
mistake to report, not a queue. The lock file `.NAME.lock` stays (deleting it would let a third run lock a new
inode while a second still holds the old one).

On a file system without `flock` (Lustre mounted without `-o flock`, some FUSE mounts) locking is skipped with a
warning on stderr: cptkit's outputs are still written under temporary names and renamed, so a race there can waste
work but not leave a half-written file. NFS (v4, or v3 with lockd) emulates flock with POSIX locks across clients.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from cptkit.errors import UserError

_UNSUPPORTED = {errno.ENOSYS, errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL}
_warned: set[str] = set()


def lock_path(output: str | os.PathLike) -> Path:
    output = Path(output)
    return output.with_name(f".{output.name}.lock")


@contextlib.contextmanager
def output_lock(
    output: str | os.PathLike, *, what: str | None = None, shared: bool = False, hint: str = ""
) -> Iterator[Path]:
    """Hold the lock of `output` (a file or directory that may not exist yet) for the `with` block."""
    path = lock_path(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    try:
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            raise UserError(
                f"another run holds {what or output}{f' ({holder})' if holder else ''}; wait for it to finish or "
                f"stop it{hint}",
                file=str(path),
            ) from None
        except OSError as e:
            if e.errno not in _UNSUPPORTED:
                raise
            if str(path.parent) not in _warned:
                _warned.add(str(path.parent))
                print(f"cptkit: warning: {path.parent} does not support flock; runs are not locked", file=sys.stderr)
        if not shared:  # who holds it, for the loser's message (several sharers would overwrite each other)
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"pid {os.getpid()} on {os.uname().nodename}".encode(), 0)
        yield path
    finally:
        # Unlock before closing: processes forked meanwhile (tokenizer workers) share this open file description,
        # and a plain close would leave the lock held until the last of them exits.
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _read_holder(fd: int) -> str:
    try:
        return os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
    except OSError:
        return ""
