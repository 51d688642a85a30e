"""OS errors are one-line errors naming the path, exit 2, in every command (issue #12, point 6): a read-only
directory, a full disk, a path through a file. Handled once, in `cptkit.cli.main`; writes through
`cptkit.util.atomic` name their file even when the OS does not (ENOSPC from write/fsync carries no file name).

Read-only and full file systems are real when the test may mount a tmpfs (root with CAP_SYS_ADMIN, as in the dev
container); a read-only directory falls back to chmod 555 (non-root), a full disk to fsync failing with ENOSPC (as
NFS reports it at close). Run on CPU: `.venv/bin/pytest tests/faults/test_fault_os_errors.py -q`.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cptkit.cli import main

sys.path.insert(0, str(Path(__file__).parents[1] / "tokenize"))
from tokhelp import MIXED  # the tokenize tests' sample corpus


def _mount_tmpfs(path: Path, options: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True)
    return r.returncode == 0


def _umount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True)


@pytest.fixture
def readonly_dir(tmp_path):
    d = tmp_path / "ro"
    if _mount_tmpfs(d, "ro,size=64k"):
        try:
            yield d
        finally:
            _umount(d)
    elif os.geteuid() != 0:
        d.mkdir(exist_ok=True)
        d.chmod(0o555)
        yield d
        d.chmod(0o755)
    else:
        pytest.skip("root without CAP_SYS_ADMIN: cannot make a read-only directory")


@pytest.fixture
def full_dir(tmp_path, monkeypatch):
    d = tmp_path / "full"
    if _mount_tmpfs(d, "size=256k"):
        try:
            fd = os.open(d / "filler", os.O_WRONLY | os.O_CREAT)
            try:  # fill it to the last block
                while os.write(fd, b"\0" * 4096):
                    pass
            except OSError as e:
                assert e.errno == errno.ENOSPC
            finally:
                os.close(fd)
            yield d
        finally:
            _umount(d)
    else:
        d.mkdir()
        real_fsync = os.fsync

        def fsync(fd):
            if os.readlink(f"/proc/self/fd/{fd}").startswith(str(d)):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return real_fsync(fd)

        monkeypatch.setattr(os, "fsync", fsync)
        yield d


@pytest.fixture
def through_a_file(tmp_path):
    f = tmp_path / "a_file"
    f.write_text("not a directory\n")
    return f / "sub"  # any path below a regular file: ENOTDIR


def _commands(out: Path) -> dict[str, list[str]]:
    """A writing command of every stage that writes without torch, each aimed at `out`."""
    return {
        "tokenize": [
            "tokenize",
            "--input",
            str(MIXED),
            "--output-prefix",
            str(out / "tok" / "p"),
            "--tokenizer",
            "llama3",
            "--workers",
            "1",
            "--no-progress",
        ],
        "train schema": ["train", "schema", "-o", str(out / "recipe.md")],
        "mix schema": ["mix", "schema", "-o", str(out / "mixture.md")],
    }


def _run(capsys, argv) -> tuple[int, str]:
    rc = main(argv)
    return rc, capsys.readouterr().err


@pytest.mark.parametrize("command", ["tokenize", "train schema", "mix schema"])
@pytest.mark.parametrize("fault", ["readonly_dir", "full_dir", "through_a_file"])
def test_os_error_is_one_line_naming_the_path(request, capsys, command, fault):
    where = request.getfixturevalue(fault)
    rc, err = _run(capsys, _commands(where)[command])
    lines = err.strip().splitlines()
    assert rc == 2, err
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"cptkit {command.split()[0]}: error: {where}"), lines[0]
    expected = {
        "readonly_dir": ("Read-only file system", "Permission denied"),
        "full_dir": ("No space left on device",),
        "through_a_file": ("Not a directory",),
    }[fault]
    assert any(e in lines[0] for e in expected), lines[0]


def test_the_same_commands_succeed_on_a_writable_dir(tmp_path, capsys):
    """The fault tests are not blind: aimed at a writable directory, every command works."""
    for command, argv in _commands(tmp_path).items():
        rc, err = _run(capsys, argv)
        assert rc == 0, (command, err)


def test_every_command_turns_an_os_error_into_one_line(monkeypatch, capsys):
    """Central handling in main(): whatever a stage's handler raises as OSError (EIO while reading a checkpoint,
    ENOSPC during a save) is one line with the path, for every registered command."""
    import argparse

    from cptkit.cli import build_parser

    parser = build_parser()
    names = list(next(a for a in parser._actions if a.dest == "command").choices)
    assert len(names) >= 6

    def boom(args):
        raise OSError(errno.EIO, os.strerror(errno.EIO), "/data/run/iter_0000010/__0_0.distcp")

    for name in names:
        monkeypatch.setattr(parser, "parse_args", lambda argv, name=name: argparse.Namespace(command=name, func=boom))
        monkeypatch.setattr("cptkit.cli.build_parser", lambda: parser)
        rc = main([name])
        err = capsys.readouterr().err
        assert rc == 2, (name, err)
        assert err == f"cptkit {name}: error: /data/run/iter_0000010/__0_0.distcp: Input/output error\n", err


def test_enospc_without_a_file_name_gets_the_output_path(tmp_path, monkeypatch):
    """write()/fsync() report ENOSPC without a file name; atomic_open adds the final path (the CLI prints it)."""
    from cptkit.util.atomic import write_text

    def fsync(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(OSError) as exc:
        write_text(tmp_path / "out.txt", "x")
    assert exc.value.filename == str(tmp_path / "out.txt")
    assert not (tmp_path / "out.txt").exists() and list(tmp_path.iterdir()) == []  # no temp file left either


def test_rerun_over_done_prefixes_on_read_only_data_is_fine(tmp_path, capsys):
    """Locking must not make finished, shared read-only data unusable: a rerun finds every prefix done, writes
    nothing and exits 0 (it only needs the lock when there is something to write)."""
    data = tmp_path / "data"
    argv = _commands(data)["tokenize"]
    rc, err = _run(capsys, argv)
    assert rc == 0, err
    for lock in data.rglob(".*.lock"):
        lock.unlink()  # as if the data was copied to the shared file system without them
    if subprocess.run(["mount", "--bind", str(data), str(data)], capture_output=True).returncode == 0:
        try:
            assert subprocess.run(["mount", "-o", "remount,ro,bind", str(data)], capture_output=True).returncode == 0
            with pytest.raises(OSError) as e:  # really read-only
                (data / "tok" / "x").write_text("x")
            assert e.value.errno == errno.EROFS
            rc, err = _run(capsys, argv)
            assert rc == 0, err
        finally:
            _umount(data)
    elif os.geteuid() != 0:
        (data / "tok").chmod(0o555)
        try:
            assert _run(capsys, argv)[0] == 0
        finally:
            (data / "tok").chmod(0o755)
    else:
        pytest.skip("root without CAP_SYS_ADMIN: cannot make a read-only directory")
